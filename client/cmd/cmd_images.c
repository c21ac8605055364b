/* The image commands over the local store: images, tag, rmi, prune, du.
 * Output follows Docker's (`docker images`, `docker tag`, `docker rmi`,
 * `docker image prune`, `docker system df`): the same columns, the same
 * human units, the same messages, so scripts and eyes trained on Docker
 * read it without surprise. */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"

#include "client/store/index.h"
#include "client/engine/runmount.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ID_SHORT 12

/* ------------------------------------------------------------------ */
/* shared helpers                                                       */


/* Opens the store; on failure prints Docker-style and returns -1. */
static int images_store_open(const char *cmd, struct cairn_store **out)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    if (cairn_cli_store_open(out, &err) != 0) {
        fprintf(stderr, "cairn %s: %s\n", cmd, err.msg);
        return -1;
    }
    return 0;
}

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}



/* A table printed like Go's tabwriter(minwidth 10, padding 3), which
 * docker uses: every column but the last is max(10, widest + 3) wide. */
#define TABLE_MAX_COLS 8

struct table {
    size_t ncols;
    struct cairn_strvec cells; /* row-major */
};

static void table_init(struct table *t, size_t ncols)
{
    t->ncols = ncols;
    cairn_strvec_init(&t->cells);
}

static int table_row(struct table *t, const char *const *cells)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (cairn_strvec_push(&t->cells, cells[i]))
            return CAIRN_E_NOMEM;
    return 0;
}

static void table_print(struct table *t, FILE *out)
{
    size_t w[TABLE_MAX_COLS] = {0};
    size_t nrows = t->cells.n / t->ncols;
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = strlen(t->cells.v[r * t->ncols + c]) + 3;
            if (n > w[c])
                w[c] = n;
        }
    for (size_t c = 0; c < t->ncols; c++)
        if (w[c] < 10)
            w[c] = 10;
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells.v[r * t->ncols + c];
            if (c + 1 == t->ncols)
                fprintf(out, "%s\n", s);
            else
                fprintf(out, "%-*s", (int)w[c], s);
        }
    }
}

static void table_free(struct table *t)
{
    cairn_strvec_free(&t->cells);
}

/* Splits a stored ref "repo:tag" at the tag's colon. */
static void ref_split(const char *ref, char *repo, size_t rlen,
                      const char **tag)
{
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    size_t n = colon ? (size_t)(colon - ref) : strlen(ref);
    snprintf(repo, rlen, "%.*s", (int)n, ref);
    *tag = colon ? colon + 1 : "";
}

static void short_id(const char *id, bool no_trunc, char *buf, size_t len)
{
    if (no_trunc)
        snprintf(buf, len, "%s", id);
    else
        snprintf(buf, len, "%.*s", ID_SHORT, id + 7);
}

/* ------------------------------------------------------------------ */
/* cairn images                                                         */

static void images_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn images [OPTIONS] [REPOSITORY[:TAG]]\n\n"
            "List images in the local store.\n\n"
            "Options:\n"
            "  -a, --all             show all images (the store keeps no "
            "intermediate\n"
            "                        images, so this is the default list)\n"
            "  -f, --filter FILTER   filter output: dangling=true|false, "
            "reference=PATTERN\n"
            "      --digests         show repo digests\n"
            "      --no-trunc        show full image IDs\n"
            "  -q, --quiet           only show image IDs\n");
}

struct images_opts {
    bool quiet, no_trunc, digests;
    int dangling;             /* -1: any; 0: tagged only; 1: untagged only */
    struct cairn_strvec refs; /* reference patterns: all must match */
    int64_t now;
    struct table table;
    struct cairn_strvec ids; /* -q: printed IDs, for uniqueness */
};

/* Docker's reference filter: "repo" or "repo:tag" patterns (shell
 * globs), matched against the familiar name. */
static bool ref_matches(const char *pattern, const char *ref)
{
    char prepo[512], rrepo[512];
    const char *ptag, *rtag;
    ref_split(pattern, prepo, sizeof prepo, &ptag);
    ref_split(ref, rrepo, sizeof rrepo, &rtag);
    if (fnmatch(prepo, rrepo, FNM_PATHNAME) != 0)
        return false;
    return ptag[0] == '\0' || fnmatch(ptag, rtag, 0) == 0;
}

static int images_row(void *arg, const struct cairn_image_row *row)
{
    struct images_opts *o = arg;
    bool dangling = row->ntags == 0;
    if ((o->dangling == 1 && !dangling) || (o->dangling == 0 && dangling))
        return 0;
    /* With a reference filter, dangling images have no name to match. */
    if (o->refs.n > 0 && dangling)
        return 0;
    char id[CAIRN_DIGEST_STR_LEN], created[64], size[32], repo[512];
    short_id(row->config_digest, o->no_trunc, id, sizeof id);
    cairn_cli_human_ago(row->created > 0 ? row->created : -1, o->now, created,
                        sizeof created);
    cairn_cli_human_size((uint64_t)(row->size > 0 ? row->size : 0), 3, size, sizeof size);
    size_t n = dangling ? 1 : row->ntags;
    for (size_t i = 0; i < n; i++) {
        const char *tag = "<none>";
        if (!dangling) {
            bool ok = true;
            for (size_t p = 0; p < o->refs.n && ok; p++)
                ok = ref_matches(o->refs.v[p], row->tags[i]);
            if (!ok)
                continue;
            ref_split(row->tags[i], repo, sizeof repo, &tag);
        } else if (row->nrepo_digests > 0) {
            /* Pulled by digest: Docker shows the repository, no tag. */
            const char *rd = row->repo_digests[0];
            const char *at = strchr(rd, '@');
            snprintf(repo, sizeof repo, "%.*s",
                     at ? (int)(at - rd) : (int)strlen(rd), rd);
        } else {
            snprintf(repo, sizeof repo, "<none>");
        }
        if (o->quiet) {
            bool seen = false;
            for (size_t k = 0; k < o->ids.n && !seen; k++)
                seen = strcmp(o->ids.v[k], id) == 0;
            if (!seen && cairn_strvec_push(&o->ids, id))
                return CAIRN_E_NOMEM;
            continue;
        }
        /* --digests: the repo digest of this row's repository. */
        const char *digest = "<none>";
        for (size_t k = 0; k < row->nrepo_digests; k++) {
            const char *at = strchr(row->repo_digests[k], '@');
            if (at && (size_t)(at - row->repo_digests[k]) == strlen(repo) &&
                strncmp(row->repo_digests[k], repo, strlen(repo)) == 0)
                digest = at + 1;
        }
        const char *cells[] = {repo, tag, digest, id, created, size};
        const char *plain[] = {repo, tag, id, created, size};
        if (table_row(&o->table, o->digests ? cells : plain))
            return CAIRN_E_NOMEM;
    }
    return 0;
}

int cairn_cmd_images(int argc, char **argv)
{
    struct images_opts o;
    memset(&o, 0, sizeof o);
    o.dangling = -1;
    cairn_strvec_init(&o.refs);
    cairn_strvec_init(&o.ids);
    struct cairn_store *st = NULL;
    int status = 2;
    const char *arg = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *f = NULL;
        if (is_help(a)) {
            images_usage(stdout);
            status = 0;
            goto out;
        } else if (strcmp(a, "-a") == 0 || strcmp(a, "--all") == 0) {
            /* accepted for compatibility; see the usage text */
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o.quiet = true;
        } else if (strcmp(a, "--no-trunc") == 0) {
            o.no_trunc = true;
        } else if (strcmp(a, "--digests") == 0) {
            o.digests = true;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--filter") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "cairn images: %s needs a value\n", a);
                goto out;
            }
            f = argv[++i];
        } else if (strncmp(a, "--filter=", 9) == 0) {
            f = a + 9;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn images: unknown option %s\n", a);
            images_usage(stderr);
            goto out;
        } else if (arg == NULL) {
            arg = a;
        } else {
            fprintf(stderr, "cairn images: at most one REPOSITORY[:TAG] may "
                            "be given\n");
            goto out;
        }
        if (f == NULL)
            continue;
        if (strcmp(f, "dangling=true") == 0 || strcmp(f, "dangling=1") == 0) {
            o.dangling = 1;
        } else if (strcmp(f, "dangling=false") == 0 ||
                   strcmp(f, "dangling=0") == 0) {
            o.dangling = 0;
        } else if (strncmp(f, "reference=", 10) == 0 && f[10] != '\0') {
            if (cairn_strvec_push(&o.refs, f + 10))
                goto out;
        } else {
            fprintf(stderr,
                    "Error: invalid filter '%s' (supported: "
                    "dangling=true|false, reference=PATTERN)\n",
                    f);
            goto out;
        }
    }
    /* The positional argument is a reference filter too; "name" alone
     * matches every tag of the repository, as in docker. */
    if (arg && cairn_strvec_push(&o.refs, arg))
        goto out;
    status = 1;
    if (images_store_open("images", &st))
        goto out;
    o.now = (int64_t)time(NULL);
    const char *hdr[] = {"REPOSITORY", "TAG", "DIGEST", "IMAGE ID",
                         "CREATED", "SIZE"};
    const char *hdr_plain[] = {"REPOSITORY", "TAG", "IMAGE ID", "CREATED",
                               "SIZE"};
    table_init(&o.table, o.digests ? 6 : 5);
    if (table_row(&o.table, o.digests ? hdr : hdr_plain))
        goto out;
    int rc = cairn_store_image_each(st, images_row, &o);
    if (rc) {
        fprintf(stderr, "Error: cannot list images: %s\n", cairn_strerror(rc));
        goto out;
    }
    if (o.quiet) {
        for (size_t i = 0; i < o.ids.n; i++)
            printf("%s\n", o.ids.v[i]);
    } else {
        table_print(&o.table, stdout);
    }
    status = 0;
out:
    cairn_store_close(st);
    table_free(&o.table);
    cairn_strvec_free(&o.refs);
    cairn_strvec_free(&o.ids);
    return status;
}

/* ------------------------------------------------------------------ */
/* cairn tag                                                            */

static void tag_usage(FILE *out)
{
    fprintf(out, "Usage: cairn tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]\n\n"
                 "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.\n");
}

int cairn_cmd_tag(int argc, char **argv)
{
    const char *args[2];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            tag_usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "cairn tag: unknown option %s\n", argv[i]);
            tag_usage(stderr);
            return 2;
        }
        if (n == 2) {
            n = 3;
            break;
        }
        args[n++] = argv[i];
    }
    if (n != 2) {
        fprintf(stderr, "\"cairn tag\" requires exactly 2 arguments.\n");
        tag_usage(stderr);
        return 2;
    }
    struct cairn_store *st = NULL;
    if (images_store_open("tag", &st))
        return 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_image_row row;
    int status = 1;
    int rc = cairn_store_image_find(st, args[0], &row, &err);
    if (rc == 0) {
        rc = cairn_store_tag(st, args[1], row.manifest_digest, &err);
        cairn_store_image_row_clear(&row);
    }
    if (rc)
        fprintf(stderr, "Error: %s\n", err.msg);
    else
        status = 0;
    cairn_store_close(st);
    return status;
}

/* ------------------------------------------------------------------ */
/* cairn rmi                                                            */

static void rmi_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn rmi [OPTIONS] IMAGE [IMAGE...]\n\n"
            "Remove one or more images. Their blobs are freed by the next\n"
            "'cairn prune'.\n\n"
            "Options:\n"
            "  -f, --force   remove an image even when it is referenced in "
            "several\n"
            "                repositories\n");
}

/* True when every tag is in one repository: docker then removes an image
 * named by ID without -f. */
static bool one_repository(const struct cairn_image_row *row)
{
    char first[512], repo[512];
    const char *tag;
    for (size_t i = 0; i < row->ntags; i++) {
        ref_split(row->tags[i], i ? repo : first, sizeof repo, &tag);
        if (i && strcmp(repo, first) != 0)
            return false;
    }
    return true;
}

static int rmi_one(struct cairn_store *st, const char *name, bool force)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_image_row row;
    int rc = cairn_store_image_find(st, name, &row, &err);
    if (rc) {
        fprintf(stderr, "Error: %s\n", err.msg);
        return rc;
    }
    /* Named by one of its tags: remove that tag; the image goes with
     * its last tag. */
    char norm[512];
    bool by_tag = false;
    if (cairn_store_ref_normalize(name, norm, sizeof norm, NULL) == 0)
        for (size_t i = 0; i < row.ntags && !by_tag; i++)
            by_tag = strcmp(row.tags[i], norm) == 0;
    if (by_tag) {
        rc = cairn_store_untag(st, norm, &err);
        if (rc == 0)
            printf("Untagged: %s\n", norm);
        if (rc == 0 && row.ntags == 1) {
            rc = cairn_store_image_remove(st, row.manifest_digest, &err);
            if (rc == 0)
                printf("Deleted: %s\n", row.config_digest);
        }
    } else if (!force && row.ntags > 1 && !one_repository(&row)) {
        rc = cairn_err_set(&err, CAIRN_E_EXISTS,
                           "conflict: unable to delete %.*s (must be "
                           "forced) - image is referenced in multiple "
                           "repositories",
                           ID_SHORT, row.config_digest + 7);
    } else {
        rc = cairn_store_image_remove(st, row.manifest_digest, &err);
        for (size_t i = 0; rc == 0 && i < row.ntags; i++)
            printf("Untagged: %s\n", row.tags[i]);
        if (rc == 0)
            printf("Deleted: %s\n", row.config_digest);
    }
    if (rc)
        fprintf(stderr, "Error: %s\n", err.msg);
    cairn_store_image_row_clear(&row);
    return rc;
}

int cairn_cmd_rmi(int argc, char **argv)
{
    bool force = false;
    int first = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            rmi_usage(stdout);
            return 0;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0) {
            force = true;
        } else if (strcmp(a, "--") == 0) {
            first = first ? first : i + 1;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn rmi: unknown option %s\n", a);
            rmi_usage(stderr);
            return 2;
        } else if (first == 0) {
            first = i;
        }
    }
    if (first == 0 || first >= argc) {
        fprintf(stderr, "\"cairn rmi\" requires at least 1 argument.\n");
        rmi_usage(stderr);
        return 2;
    }
    struct cairn_store *st = NULL;
    if (images_store_open("rmi", &st))
        return 1;
    int status = 0;
    bool opts_done = false;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && a[0] == '-' && a[1] != '\0')
            continue;
        if (rmi_one(st, a, force))
            status = 1;
    }
    cairn_store_close(st);
    return status;
}

/* ------------------------------------------------------------------ */
/* cairn prune                                                          */

static void prune_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn prune [OPTIONS]\n\n"
            "Remove dangling images, then every blob no remaining image "
            "uses, the\n"
            "cache keys of layers that are gone, and snapshots no remaining "
            "layer\n"
            "has. Waits for running builds to finish.\n\n"
            "Options:\n"
            "  -f, --force   do not prompt for confirmation\n");
}

struct prune_out {
    bool any;
};

static void prune_on_image(void *arg, const char *id)
{
    struct prune_out *po = arg;
    if (!po->any)
        printf("Deleted Images:\n");
    po->any = true;
    printf("deleted: %s\n", id);
}

int cairn_cmd_prune(int argc, char **argv)
{
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            prune_usage(stdout);
            return 0;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0) {
            force = true;
        } else {
            fprintf(stderr, "cairn prune: unknown argument %s\n", a);
            prune_usage(stderr);
            return 2;
        }
    }
    if (!force) {
        printf("WARNING! This will remove all dangling images and the "
               "layers, snapshots\n"
               "and cache keys that no remaining image uses.\n"
               "Are you sure you want to continue? [y/N] ");
        fflush(stdout);
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL) {
            printf("\n");
            return 0;
        }
        if (line[0] != 'y' && line[0] != 'Y')
            return 0;
    }
    struct cairn_store *st = NULL;
    if (images_store_open("prune", &st))
        return 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    struct prune_out po = {false};
    uint64_t freed = 0;
    int rc = cairn_store_prune_with(st, prune_on_image, &po, &freed, &err);
    cairn_store_close(st);
    if (po.any)
        printf("\n");
    if (rc) {
        fprintf(stderr, "Error: %s\n", err.msg);
        return 1;
    }
    char size[32];
    cairn_cli_human_size(freed, 4, size, sizeof size);
    printf("Total reclaimed space: %s\n", size);
    return 0;
}

/* ------------------------------------------------------------------ */
/* cairn du                                                             */

static void du_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn du\n\n"
            "Show the disk usage of the local store, like 'docker system "
            "df':\n"
            "  Images      image records and the blobs they use\n"
            "  Layers      layer blobs (the local build cache)\n"
            "  Snapshots   unpacked layers (overlay lower directories)\n"
            "  Key index   cache keys; SIZE is the LMDB file\n"
            "  Build cache RUN --mount=type=cache directories\n"
            "ACTIVE counts what 'cairn prune' keeps; RECLAIMABLE is what it "
            "frees.\n"
            "For the build cache, ACTIVE counts the caches a build holds now "
            "and\nRECLAIMABLE what 'cairn builder prune' frees.\n");
}

static int du_row(struct table *t, const char *type, uint64_t total,
                  uint64_t active, uint64_t size, uint64_t reclaim)
{
    char tot[32], act[32], sz[32], rec[64], rs[32];
    snprintf(tot, sizeof tot, "%llu", (unsigned long long)total);
    snprintf(act, sizeof act, "%llu", (unsigned long long)active);
    cairn_cli_human_size(size, 4, sz, sizeof sz);
    cairn_cli_human_size(reclaim, 4, rs, sizeof rs);
    if (size > 0)
        snprintf(rec, sizeof rec, "%s (%llu%%)", rs,
                 (unsigned long long)(reclaim * 100 / size));
    else
        snprintf(rec, sizeof rec, "%s", rs);
    const char *cells[] = {type, tot, act, sz, rec};
    return table_row(t, cells);
}

/* Totals of the store's cache mounts, for du's "Build cache" row. */
struct du_caches {
    uint64_t n, in_use, bytes, idle_bytes;
};

static int du_cache(void *arg, const struct cairn_cachemount_info *info)
{
    struct du_caches *c = arg;
    c->n++;
    c->bytes += info->bytes;
    if (info->in_use)
        c->in_use++;
    else
        c->idle_bytes += info->bytes;
    return 0;
}

int cairn_cmd_du(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            du_usage(stdout);
            return 0;
        }
        fprintf(stderr, "cairn du: unknown argument %s\n", argv[i]);
        du_usage(stderr);
        return 2;
    }
    struct cairn_store *st = NULL;
    if (images_store_open("du", &st))
        return 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store_usage u;
    int rc = cairn_store_usage_get(st, &u, &err);
    cairn_store_close(st);
    struct du_caches caches = {0};
    char root[4096];
    if (!rc && cairn_root_path(root, sizeof root) != 0)
        rc = cairn_err_set(&err, CAIRN_E_INVAL, "cannot find the store");
    if (!rc)
        rc = cairn_cachemounts_each(root, du_cache, &caches, &err);
    if (rc) {
        fprintf(stderr, "Error: %s\n", err.msg);
        return 1;
    }
    struct table t;
    table_init(&t, 5);
    const char *hdr[] = {"TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"};
    rc = table_row(&t, hdr);
    if (!rc)
        rc = du_row(&t, "Images", u.images, u.images_active, u.images_bytes,
                    u.images_reclaimable);
    if (!rc)
        rc = du_row(&t, "Layers", u.layers, u.layers_active, u.layer_bytes,
                    u.layers_reclaimable);
    if (!rc)
        rc = du_row(&t, "Snapshots", u.snapshots, u.snapshots_active,
                    u.snapshot_bytes, u.snapshots_reclaimable);
    /* LMDB never shrinks its file; pages freed by prune are reused. */
    if (!rc)
        rc = du_row(&t, "Key index", u.keys, u.keys_active, u.index_bytes, 0);
    /* RUN --mount=type=cache directories: `cairn builder prune` frees
     * those no build holds (as Docker's "Build Cache" row and `docker
     * builder prune`); `cairn prune` leaves them. */
    if (!rc)
        rc = du_row(&t, "Build cache", caches.n, caches.in_use, caches.bytes,
                    caches.idle_bytes);
    if (!rc)
        table_print(&t, stdout);
    table_free(&t);
    return rc ? 1 : 0;
}
