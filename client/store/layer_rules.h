/* The rules a layer's entries must follow to be unpacked (docs/security.md,
 * "Cache entries and fetched layers"): one implementation, used by the
 * unpacker before it writes each entry, by the check of a layer fetched
 * from a shared cache before its hit counts, and by ADD on the entries it
 * writes from a local archive. So a layer that passes the check is a layer
 * the unpacker accepts, and ADD never writes one it would refuse.
 *
 * Refused: empty, absolute or oversize names, ".." components, a path
 * through a symlink this layer made (link-then-file), a hard link whose
 * target is not a file, symlink or device that an earlier entry of this
 * layer made (outside, missing, a directory, or reached through a
 * symlink), bad whiteout names, whiteouts under a symlink or file, more
 * than CAIRN_LAYER_RULES_MAX_ENTRIES entries or CAIRN_LAYER_RULES_MAX_NAMES
 * bytes of paths. Each entry is checked against the layer as the earlier
 * entries left it: a later entry may replace an earlier one (a directory
 * replaces a symlink), as it does on disk.
 *
 * Thread-safety: a rules object is used by one thread.
 */
#ifndef CAIRN_CLIENT_LAYER_RULES_H
#define CAIRN_CLIENT_LAYER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CAIRN_LAYER_RULES_MAX_ENTRIES ((size_t)1 << 21)
/* The paths of non-directories are kept (a later hard link may name any of
 * them), so their total is capped: 256 MiB is a few million long paths. */
#define CAIRN_LAYER_RULES_MAX_NAMES ((size_t)256 << 20)

struct cairn_layer_rules;

/* NULL when out of memory. free accepts NULL. */
struct cairn_layer_rules *cairn_layer_rules_new(void);
void cairn_layer_rules_free(struct cairn_layer_rules *r);

enum cairn_layer_rule_kind {
    CAIRN_LAYER_RULE_ENTRY,    /* an ordinary entry: write it */
    CAIRN_LAYER_RULE_WHITEOUT, /* ".wh.<name>": delete dir/name */
    CAIRN_LAYER_RULE_OPAQUE,   /* ".wh..wh..opq": dir hides lower layers */
    CAIRN_LAYER_RULE_SKIP,     /* nothing to write (socket, aufs marker) */
};

/* What an accepted entry is. Pointers point into the name and hardlink
 * arguments of the call (valid as long as they are). */
struct cairn_layer_rule_view {
    enum cairn_layer_rule_kind kind;
    const char *rel; /* path without leading "./" */
    size_t len;      /* without trailing '/' */
    size_t dirlen;   /* length of rel's parent directory ("" = 0) */
    const char *wh_name; /* WHITEOUT: the deleted name, wh_len bytes */
    size_t wh_len;
    const char *hard_rel; /* hard links: the target without "./" */
};

/* Checks the next entry of a layer: name as stored in the tar, type the
 * S_IF* bits of its mode, hardlink its hard link target or NULL. On
 * success fills *out and records the entry; a refusal returns
 * CAIRN_E_CORRUPT (CAIRN_E_TOOBIG for the caps, CAIRN_E_NOMEM) with the
 * reason in why (without the entry's name, which the caller shows), and
 * records nothing. */
int cairn_layer_rules_check(struct cairn_layer_rules *r, const char *name,
                            mode_t type, const char *hardlink,
                            struct cairn_layer_rule_view *out, char *why,
                            size_t whylen);

/* Entries accepted so far. */
size_t cairn_layer_rules_count(const struct cairn_layer_rules *r);

#endif
