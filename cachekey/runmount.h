/* RUN --mount: one flag value parsed as BuildKit's Dockerfile frontend
 * (1.7+) parses it.
 *
 * The value is one CSV record ("type=cache,target=/root/.cache,id=go";
 * a field in double quotes may hold commas, "" is a quote). Each field is
 * key=value (keys case-insensitive), except the booleans ro, readonly,
 * rw, readwrite and required, which may stand alone. Keys:
 *   type          bind (default), cache, tmpfs, secret, ssh
 *   target, dst, destination   the mount point in the container
 *   source, src   path in `from` (bind, cache); the secret's id (secret)
 *   from          stage or image (bind, cache); never variable-expanded
 *   ro, readonly, rw, readwrite   default: read-only for bind, secret and
 *                 ssh; writable for cache and tmpfs
 *   id            cache id, secret id, ssh id
 *   sharing       shared (default), private, locked (cache only)
 *   required      secret and ssh only
 *   mode, uid, gid  secret, ssh and cache only (mode octal)
 *   size          tmpfs only, bytes with an optional k/m/g/t suffix
 *                 (binary units, as Docker's RAMInBytes)
 * Values other than `from` are expanded through the caller's function (the
 * stage's ARG and ENV), as BuildKit does. Targets are returned as written;
 * the plan makes them absolute against WORKDIR.
 *
 * Thread-safe (no shared state).
 */
#ifndef CAIRN_CACHEKEY_RUNMOUNT_H
#define CAIRN_CACHEKEY_RUNMOUNT_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

/* Longest --mount value accepted, and longest single field after
 * expansion. */
#define CK_MOUNT_MAX_TEXT 8192

enum ck_mount_type {
    CK_MOUNT_BIND,
    CK_MOUNT_CACHE,
    CK_MOUNT_TMPFS,
    CK_MOUNT_SECRET,
    CK_MOUNT_SSH,
};

enum ck_mount_sharing {
    CK_SHARING_SHARED,
    CK_SHARING_PRIVATE,
    CK_SHARING_LOCKED,
};

/* One parsed mount. Strings are malloc'd and owned by the struct (NULL when
 * not given); free with ck_mount_clear. */
struct ck_mount {
    enum ck_mount_type type;
    char *target;
    char *source;
    char *from;
    char *id;
    bool readonly;
    enum ck_mount_sharing sharing;
    bool sharing_set;
    bool required;
    bool has_mode, has_uid, has_gid;
    uint32_t mode, uid, gid;
    uint64_t size; /* tmpfs; 0: the kernel's default */
};

/* Expands one value (as a Dockerfile word); *out is malloc'd. Returns 0 or
 * an error with err set. */
typedef int (*ck_mount_expand_fn)(void *arg, const char *value, char **out,
                                  struct cairn_err *err);

/* Parses text (one --mount value). expand may be NULL (values taken as
 * written). Returns 0 and fills *out, or CAIRN_E_PARSE with err saying
 * what is wrong in BuildKit's words ("unexpected key 'foo' in 'foo=1'",
 * "unsupported mount type \"nfs\"", "mode not allowed for \"bind\" type
 * mounts", ...), CAIRN_E_TOOBIG past CK_MOUNT_MAX_TEXT, CAIRN_E_NOMEM, or
 * the expander's error. *out is written only on success. */
int ck_mount_parse(const char *text, ck_mount_expand_fn expand, void *arg,
                   struct ck_mount *out, struct cairn_err *err);

/* Frees the strings of m (not m) and zeroes it. Accepts NULL. */
void ck_mount_clear(struct ck_mount *m);

/* "bind", "cache", ... (static). */
const char *ck_mount_type_name(enum ck_mount_type type);

/* Parses a size as Docker's RAMInBytes: a decimal number (a fraction is
 * allowed) with an optional b, k, kb, m, mb, g, gb, t, tb, p, pb suffix in
 * any case, binary multiples. Returns 0 and *out, or CAIRN_E_PARSE. */
int ck_mount_parse_size(const char *s, uint64_t *out);

#endif
