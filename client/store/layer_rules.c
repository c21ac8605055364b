#include "client/store/layer_rules.h"

#include "common/error.h"

#include <search.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Linux's PATH_MAX: longer paths cannot be created anyway. */
#define RULES_PATH_MAX 4096
#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* A non-directory the layer has made so far, by normalised path. */
struct rule_node {
    mode_t type;
    char path[];
};

/* A key for lookups without an allocation. */
struct rule_key {
    mode_t type;
    char path[RULES_PATH_MAX];
};

struct cairn_layer_rules {
    /* tsearch tree of struct rule_node: a balanced tree, so a hostile
     * layer cannot make lookups slow the way it could flood a hash
     * table with colliding names. */
    void *tree;
    size_t entries;
    size_t name_bytes;
};

struct cairn_layer_rules *cairn_layer_rules_new(void)
{
    return calloc(1, sizeof(struct cairn_layer_rules));
}

void cairn_layer_rules_free(struct cairn_layer_rules *r)
{
    if (r == NULL)
        return;
    tdestroy(r->tree, free);
    free(r);
}

size_t cairn_layer_rules_count(const struct cairn_layer_rules *r)
{
    return r->entries;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rule_node *)a)->path,
                  ((const struct rule_node *)b)->path);
}

static const struct rule_node *node_find(const struct cairn_layer_rules *r,
                                         struct rule_key *k)
{
    void *const *p = tfind(k, &r->tree, node_cmp);
    return p ? *(struct rule_node *const *)p : NULL;
}

static void node_drop(struct cairn_layer_rules *r, struct rule_key *k)
{
    void **p = tfind(k, &r->tree, node_cmp);
    if (p == NULL)
        return;
    struct rule_node *n = *(struct rule_node **)p;
    tdelete(k, &r->tree, node_cmp);
    r->name_bytes -= strlen(n->path) + 1;
    free(n);
}

static int node_put(struct cairn_layer_rules *r, const char *path, mode_t type)
{
    size_t len = strlen(path);
    struct rule_node *n = malloc(sizeof *n + len + 1);
    if (n == NULL)
        return CAIRN_E_NOMEM;
    n->type = type;
    memcpy(n->path, path, len + 1);
    void **p = tsearch(n, &r->tree, node_cmp);
    if (p == NULL) {
        free(n);
        return CAIRN_E_NOMEM;
    }
    if (*(struct rule_node **)p != n) {
        (*(struct rule_node **)p)->type = type;
        free(n);
        return 0;
    }
    r->name_bytes += len + 1;
    return 0;
}

static int refuse(char *why, size_t whylen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(char *why, size_t whylen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return code;
}

/* name without leading "./" or "/" (into *rel), and its normalised form
 * (no empty or "." components, no trailing '/') into out. An absolute name
 * means the same path under the layer's root, as Docker's and containerd's
 * unpackers read it (umoci writes "/" for the root); ".." components and
 * oversize names are refused with a reason. */
static const char *normalise(const char *name, const char **rel,
                             struct rule_key *out)
{
    if (name == NULL || name[0] == '\0')
        return "entry without a name";
    if (strnlen(name, RULES_PATH_MAX) >= RULES_PATH_MAX)
        return "name too long";
    const char *p = name;
    while (p[0] == '/' || (p[0] == '.' && p[1] == '/'))
        p += p[0] == '/' ? 1 : 2;
    if (strcmp(p, ".") == 0)
        p += 1;
    size_t n = 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.')
            return "escapes with '..'";
        if (len > 0 && !(len == 1 && s[0] == '.')) {
            if (n)
                out->path[n++] = '/';
            memcpy(out->path + n, s, len);
            n += len;
        }
        s += len;
        while (*s == '/')
            s++;
    }
    out->path[n] = '\0';
    *rel = p;
    return NULL;
}

/* The first proper prefix of k->path (or, with self, k->path too) that
 * an earlier entry made a non-directory, as its type; 0 when none.
 * drop_files: a regular file (or device, fifo) in the way is forgotten,
 * because the unpacker replaces it with the directory. *at gets the
 * prefix's length. */
static mode_t parent_check(struct cairn_layer_rules *r, struct rule_key *k,
                           bool self, bool drop_files, size_t *at)
{
    size_t len = strlen(k->path);
    for (size_t i = 1; i <= len; i++) {
        if (i < len ? k->path[i] != '/' : !self)
            continue;
        char c = k->path[i];
        k->path[i] = '\0';
        const struct rule_node *n = node_find(r, k);
        mode_t t = n ? n->type : 0;
        if (t != 0 && t != S_IFLNK && drop_files) {
            node_drop(r, k);
            t = 0;
        }
        k->path[i] = c;
        if (t != 0) {
            *at = i;
            return t;
        }
    }
    return 0;
}

static int check_whiteout(struct cairn_layer_rules *r, struct rule_key *k,
                          size_t dirlen, char *why, size_t whylen)
{
    /* The unpacker opens the directory without following symlinks and
     * refuses a file in the way (docs: open_beneath). */
    char keep = k->path[dirlen];
    k->path[dirlen] = '\0';
    size_t at = 0;
    mode_t t = dirlen ? parent_check(r, k, true, false, &at) : 0;
    k->path[dirlen] = keep;
    if (t != 0)
        return refuse(why, whylen, CAIRN_E_CORRUPT,
                      "whiteout under %s %.*s of this layer",
                      t == S_IFLNK ? "the symlink" : "the file", (int)at,
                      k->path);
    return 0;
}

int cairn_layer_rules_check(struct cairn_layer_rules *r, const char *name,
                            mode_t type, const char *hardlink,
                            struct cairn_layer_rule_view *out, char *why,
                            size_t whylen)
{
    if (r->entries >= CAIRN_LAYER_RULES_MAX_ENTRIES)
        return refuse(why, whylen, CAIRN_E_TOOBIG,
                      "the layer has more than %zu entries",
                      CAIRN_LAYER_RULES_MAX_ENTRIES);
    struct rule_key k;
    const char *rel = NULL;
    const char *bad = normalise(name, &rel, &k);
    if (bad != NULL)
        return refuse(why, whylen, CAIRN_E_CORRUPT, "%s", bad);
    struct cairn_layer_rule_view v;
    memset(&v, 0, sizeof v);
    v.rel = rel;
    v.len = strlen(rel);
    while (v.len > 0 && rel[v.len - 1] == '/')
        v.len--;
    size_t base = v.len;
    while (base > 0 && rel[base - 1] != '/')
        base--;
    v.dirlen = base > 0 ? base - 1 : 0;
    const char *bn = rel + base;
    size_t bl = v.len - base;
    size_t klen = strlen(k.path);
    size_t kdir = klen;
    while (kdir > 0 && k.path[kdir - 1] != '/')
        kdir--;
    kdir = kdir > 0 ? kdir - 1 : 0;
    int rc = 0;

    if (bl >= 4 && memcmp(bn, WH_PREFIX, 4) == 0) {
        if (bl == strlen(WH_OPAQUE) && memcmp(bn, WH_OPAQUE, bl) == 0) {
            v.kind = CAIRN_LAYER_RULE_OPAQUE;
            rc = check_whiteout(r, &k, kdir, why, whylen);
        } else if (bl >= 8 && memcmp(bn, WH_PREFIX WH_PREFIX, 8) == 0) {
            v.kind = CAIRN_LAYER_RULE_SKIP; /* aufs bookkeeping */
        } else {
            v.kind = CAIRN_LAYER_RULE_WHITEOUT;
            v.wh_name = bn + 4;
            v.wh_len = bl - 4;
            if (v.wh_len == 0 || v.wh_len >= 256 ||
                (v.wh_len == 1 && v.wh_name[0] == '.') ||
                (v.wh_len == 2 && v.wh_name[0] == '.' && v.wh_name[1] == '.'))
                return refuse(why, whylen, CAIRN_E_CORRUPT, "bad whiteout");
            rc = check_whiteout(r, &k, kdir, why, whylen);
            if (rc == 0) {
                /* The deleted path becomes a 0/0 device on disk. */
                char keep[RULES_PATH_MAX];
                snprintf(keep, sizeof keep, "%.*s%s%.*s", (int)kdir, k.path,
                         kdir ? "/" : "", (int)v.wh_len, v.wh_name);
                rc = node_put(r, keep, S_IFCHR);
            }
        }
        if (rc == 0)
            r->entries++;
        if (rc == 0)
            *out = v;
        return rc;
    }
    if (type == S_IFSOCK && hardlink == NULL) {
        v.kind = CAIRN_LAYER_RULE_SKIP; /* tar cannot hold sockets */
        r->entries++;
        *out = v;
        return 0;
    }
    v.kind = CAIRN_LAYER_RULE_ENTRY;
    if (k.path[0] == '\0' && (type != S_IFDIR || hardlink != NULL))
        return refuse(why, whylen, CAIRN_E_CORRUPT,
                      "the layer root is not a directory");
    size_t at = 0;
    if (parent_check(r, &k, false, false, &at) == S_IFLNK)
        return refuse(why, whylen, CAIRN_E_CORRUPT,
                      "a parent directory is a symlink of this layer: %.*s",
                      (int)at, k.path);
    mode_t t = type;
    if (hardlink != NULL) {
        struct rule_key h;
        const char *hrel = NULL;
        bad = normalise(hardlink, &hrel, &h);
        if (bad != NULL)
            return refuse(why, whylen, CAIRN_E_CORRUPT,
                          "hard link target %.200s: %s", hardlink, bad);
        v.hard_rel = hrel;
        if (strcmp(h.path, k.path) == 0)
            return refuse(why, whylen, CAIRN_E_CORRUPT,
                          "hard link to itself");
        if (parent_check(r, &h, false, false, &at) == S_IFLNK)
            return refuse(why, whylen, CAIRN_E_CORRUPT,
                          "hard link target %.200s is reached through the "
                          "symlink %.*s of this layer",
                          h.path, (int)at, h.path);
        const struct rule_node *n = node_find(r, &h);
        if (n == NULL)
            return refuse(why, whylen, CAIRN_E_CORRUPT,
                          "hard link target %.200s is not a file of this "
                          "layer (outside it, missing, or a directory)",
                          h.path);
        t = n->type; /* a hard link to a symlink is a symlink */
    }
    /* Files in the way of a parent become directories on disk. */
    parent_check(r, &k, false, true, &at);
    if (t == S_IFDIR) {
        node_drop(r, &k);
    } else {
        if (r->name_bytes + klen + 1 > CAIRN_LAYER_RULES_MAX_NAMES)
            return refuse(why, whylen, CAIRN_E_TOOBIG,
                          "the layer's paths total more than %zu MiB",
                          CAIRN_LAYER_RULES_MAX_NAMES >> 20);
        if ((rc = node_put(r, k.path, t)) != 0)
            return refuse(why, whylen, rc, "out of memory");
    }
    r->entries++;
    *out = v;
    return 0;
}
