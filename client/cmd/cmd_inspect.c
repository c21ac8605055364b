/* cairn history and cairn inspect: read-only views of a stored image, laid
 * out as Docker users know them.
 *
 * Both read the manifest and config blobs (verified against their digests
 * by the store) and never unpack anything. Layer sizes are the sum of the
 * regular files' sizes in the layer tar, which is what Docker's layer store
 * reports for the same layer (`docker history`, inspect's Size): it
 * counts unpacked content, not the compressed blob. Getting it means
 * reading the layer's tar headers (decompressing it), so each layer is
 * read once per command.
 */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"
#include "client/store/json.h"

#include "client/store/image.h"
#include "client/store/index.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Docker's history column width for CREATED BY (docker/cli). */
#define HISTORY_TRUNC 45

struct img {
    struct cairn_image_row row; /* row.tags owned (image_row_clear) */
    struct cairn_manifest m;
    char *config_json;
    size_t config_len;
    struct cairn_image_config cfg;
    json_t *raw; /* the config as written, for fields the struct skips */
};

static void img_clear(struct img *im)
{
    cairn_store_image_row_clear(&im->row);
    cairn_manifest_clear(&im->m);
    free(im->config_json);
    cairn_image_config_clear(&im->cfg);
    json_decref(im->raw);
    memset(im, 0, sizeof *im);
}


/* Finds name in the store and reads its manifest and config. */
static int img_load(struct cairn_store *st, const char *name, struct img *im,
                    struct cairn_err *err)
{
    memset(im, 0, sizeof *im);
    cairn_image_config_init(&im->cfg);
    char *mjson = NULL;
    size_t mlen;
    int rc = cairn_store_image_find(st, name, &im->row, err);
    if (rc)
        goto fail;
    if ((rc =
             cairn_store_blob_read(st, im->row.manifest_digest,
                                   CAIRN_IMAGE_MAX_JSON, &mjson, &mlen, err)) ||
        (rc = cairn_manifest_parse(mjson, mlen, &im->m, err)) ||
        (rc = cairn_store_blob_read(st, im->m.config_digest,
                                    CAIRN_IMAGE_MAX_JSON, &im->config_json,
                                    &im->config_len, err)) ||
        (rc = cairn_image_config_parse(im->config_json, im->config_len,
                                       &im->cfg, err)))
        goto fail;
    json_error_t jerr;
    im->raw = json_loadb(im->config_json, im->config_len, 0, &jerr);
    if (im->raw == NULL) {
        rc = CAIRN_E_NOMEM;
        goto fail;
    }
    free(mjson);
    return 0;
fail:
    free(mjson);
    if (rc != CAIRN_E_NOTFOUND) /* the store names it already */
        cairn_err_prefix(err, "%s", name);
    img_clear(im);
    return rc;
}

/* Sum of regular-file sizes in a layer blob (see the top comment). */
static int layer_content_size(const struct cairn_store *st,
                              const struct cairn_layer_desc *d, int64_t *out,
                              struct cairn_err *err)
{
    char path[PATH_MAX];
    if (cairn_store_blob_path(st, d->digest, path, sizeof path) != 0)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "store path too long");
    struct archive *a = archive_read_new();
    if (a == NULL)
        return CAIRN_E_NOMEM;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = 0;
    int64_t sum = 0;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "layer %s: %s", d->digest,
                           archive_error_string(a));
        goto out;
    }
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        if (archive_entry_filetype(e) == AE_IFREG &&
            archive_entry_hardlink(e) == NULL)
            sum += archive_entry_size(e);
        if (archive_read_data_skip(a) != ARCHIVE_OK) {
            r = ARCHIVE_FATAL;
            break;
        }
    }
    /* An empty tar has no header at all; libarchive calls that EOF too. */
    if (r != ARCHIVE_EOF) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "layer %s: %s", d->digest,
                           archive_error_string(a));
        goto out;
    }
    *out = sum;
out:
    archive_read_free(a);
    return rc;
}



/* Display width, counted in code points (no East Asian wide forms). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

/* Docker's formatter.Ellipsis: at most max columns, the last one "…". */
static char *ellipsis(const char *s, size_t max)
{
    if (text_width(s) <= max)
        return strdup(s);
    size_t w = 0, i = 0;
    while (s[i]) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (w == max - 1)
                break;
            w++;
        }
        i++;
    }
    char *out = malloc(i + 4);
    if (out == NULL)
        return NULL;
    memcpy(out, s, i);
    memcpy(out + i, "\xe2\x80\xa6", 4);
    return out;
}

#define HCOLS 5

/* Prints rows like Go's tabwriter(minwidth 10, padding 3) as docker/cli
 * sets it up: every column but the last is padded to its widest cell plus
 * three spaces. */
static void print_table(char *(*cells)[HCOLS], size_t nrows)
{
    size_t width[HCOLS] = {0};
    for (size_t r = 0; r < nrows; r++)
        for (int c = 0; c < HCOLS - 1; c++) {
            size_t w = text_width(cells[r][c]) + 3;
            if (w < 10)
                w = 10;
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < nrows; r++) {
        for (int c = 0; c < HCOLS - 1; c++)
            printf("%s%*s", cells[r][c],
                   (int)(width[c] - text_width(cells[r][c])), "");
        printf("%s\n", cells[r][HCOLS - 1]);
    }
}

static void history_usage(FILE *out)
{
    fprintf(out, "Usage: cairn history [OPTIONS] IMAGE\n\n"
                 "Show the history of an image, newest first.\n\n"
                 "Options:\n"
                 "  -H, --human=false  print times (RFC 3339) and sizes "
                 "(bytes) raw\n"
                 "      --no-trunc     do not truncate output\n"
                 "  -q, --quiet        only show image IDs\n");
}

/* What `cairn history` is asked. */
struct history_opts {
    bool no_trunc, quiet, human;
    const char *name;
};

/* Reads the command line into *o. Returns -1 to go on, else the exit
 * status (0 after --help, 2 for bad usage). */
static int history_args(int argc, char **argv, struct history_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            history_usage(stdout);
            return 0;
        } else if (strcmp(a, "--no-trunc") == 0) {
            o->no_trunc = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "--human=false") == 0 ||
                   strcmp(a, "-H=false") == 0) {
            o->human = false;
        } else if (strcmp(a, "--human") == 0 ||
                   strcmp(a, "--human=true") == 0 || strcmp(a, "-H") == 0) {
            o->human = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn history: unknown option \"%s\"\n\n", a);
            history_usage(stderr);
            return 2;
        } else if (o->name == NULL) {
            o->name = a;
        } else {
            fprintf(stderr, "cairn history: takes exactly one IMAGE\n");
            return 2;
        }
    }
    if (o->name == NULL) {
        history_usage(stderr);
        return 2;
    }
    return -1;
}

/* The cells of one history row: id, created and size as given, the
 * entry's command (tabs and newlines as spaces, as Docker shows them;
 * cut short unless no_trunc) and comment. CAIRN_E_NOMEM leaves what was
 * made in row for the caller to free. */
static int history_row_fill(char *row[HCOLS], const struct cairn_history *e,
                            const char *id, const char *created,
                            const char *size, bool no_trunc)
{
    char *by = strdup(e->created_by ? e->created_by : "");
    if (by == NULL)
        return CAIRN_E_NOMEM;
    for (char *p = by; *p; p++)
        if (*p == '\t' || *p == '\n')
            *p = ' ';
    row[0] = strdup(id);
    row[1] = strdup(created);
    row[2] = no_trunc ? by : ellipsis(by, HISTORY_TRUNC);
    if (!no_trunc)
        free(by);
    row[3] = strdup(size);
    row[4] = strdup(e->comment ? e->comment : "");
    for (int k = 0; k < HCOLS; k++)
        if (row[k] == NULL)
            return CAIRN_E_NOMEM;
    return 0;
}

int cairn_cmd_history(int argc, char **argv)
{
    struct history_opts ho = {false, false, true, NULL};
    int arc = history_args(argc, argv, &ho);
    if (arc >= 0)
        return arc;
    bool no_trunc = ho.no_trunc, human = ho.human;

    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    struct img im;
    memset(&im, 0, sizeof im);
    int status = 1;
    size_t nrows = 0, ncells = 0;
    char *(*cells)[HCOLS] = NULL;
    if (cairn_cli_store_open(&st, &err) || img_load(st, ho.name, &im, &err)) {
        fprintf(stderr, "cairn history: %s\n", err.msg);
        goto out;
    }
    const struct cairn_image_config *c = &im.cfg;
    cells = calloc(c->nhistory + 1, sizeof *cells);
    if (cells == NULL)
        goto nomem;
    ncells = c->nhistory + 1;
    int64_t now = (int64_t)time(NULL);
    size_t nlayer = 0;
    /* History runs oldest first; the table is newest first, so rows are
     * filled from the bottom. Non-empty entries take layers in order. */
    for (size_t h = 0; h < c->nhistory; h++) {
        const struct cairn_history *e = &c->history[h];
        char *(*row)[HCOLS] = &cells[c->nhistory - h];
        char id[CAIRN_DIGEST_STR_LEN], created[64], size[32];
        if (h + 1 == c->nhistory) {
            /* The image ID: the whole digest, or 12 hex digits. */
            const char *d = no_trunc ? im.row.config_digest
                                     : im.row.config_digest + 7;
            size_t n = strnlen(d, no_trunc ? sizeof id - 1 : 12);
            memcpy(id, d, n);
            id[n] = '\0';
        } else {
            snprintf(id, sizeof id, "<missing>");
        }
        int64_t bytes = 0;
        if (!e->empty_layer && nlayer < im.m.nlayers) {
            if (layer_content_size(st, &im.m.layers[nlayer], &bytes, &err)) {
                fprintf(stderr, "cairn history: %s\n", err.msg);
                goto out;
            }
            nlayer++;
        }
        if (human) {
            cairn_cli_human_ago(e->created, now, created, sizeof created);
            cairn_cli_human_size((uint64_t)(bytes > 0 ? bytes : 0), 3, size, sizeof size);
        } else {
            if (e->created < 0 ||
                cairn_image_time_format(e->created, created) != 0)
                snprintf(created, sizeof created, "N/A");
            snprintf(size, sizeof size, "%lld", (long long)bytes);
        }
        /* Tabs would break the columns; Docker replaces them too. */
        int frc = history_row_fill(*row, e, id, created, size, no_trunc);
        nrows++;
        if (frc)
            goto nomem;
    }
    if (ho.quiet) {
        for (size_t r = 1; r <= nrows; r++)
            printf("%s\n", cells[r][0]);
    } else {
        const char *hdr[HCOLS] = {"IMAGE", "CREATED", "CREATED BY", "SIZE",
                                  "COMMENT"};
        for (int k = 0; k < HCOLS; k++)
            if ((cells[0][k] = strdup(hdr[k])) == NULL)
                goto nomem;
        print_table(cells, nrows + 1);
    }
    status = 0;
    goto out;
nomem:
    fprintf(stderr, "cairn history: %s\n", cairn_strerror(CAIRN_E_NOMEM));
out:
    for (size_t r = 0; r < ncells; r++)
        for (int k = 0; k < HCOLS; k++)
            free(cells[r][k]);
    free(cells);
    img_clear(&im);
    cairn_store_close(st);
    return status;
}

/* A value of the raw config, or a default when it is missing. */
/* Docker's RepoDigests: "name@sha256:..." of a pulled image. */
static json_t *repo_digests_json(const struct cairn_image_row *row)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < row->nrepo_digests; i++)
        if (json_array_append_new(a, cairn_json_string(row->repo_digests[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *raw_or(json_t *raw, const char *key, json_t *dflt)
{
    json_t *v = json_object_get(raw, key);
    if (v != NULL && !json_is_null(v)) {
        json_decref(dflt);
        return json_incref(v);
    }
    return dflt;
}

static int add(json_t *o, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        return CAIRN_E_NOMEM;
    return 0;
}

static json_t *blob_desc(const char *digest, const char *media, int64_t size)
{
    /* "s+": jansson joins the path's two parts; no buffer to size. */
    return json_pack("{s:s, s:s, s:I, s:s+}", "Digest", digest, "MediaType",
                     media, "Size", (json_int_t)size, "Path", "blobs/sha256/",
                     digest + 7);
}

/* One element of inspect's array. Keys are inserted in Docker's order
 * (jansson keeps insertion order), then cairn's own "Store". */
static json_t *inspect_one(struct cairn_store *st, const struct img *im,
                           struct cairn_err *err)
{
    json_t *o = json_object();
    json_t *tags = json_array();
    json_t *diffs = json_array();
    json_t *layers = json_array();
    json_t *store = NULL;
    int rc = (o && tags && diffs && layers) ? 0 : CAIRN_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < im->row.ntags; i++)
        rc = json_array_append_new(tags, cairn_json_string(im->row.tags[i]))
                 ? CAIRN_E_NOMEM
                 : 0;
    char created[CAIRN_IMAGE_TIME_LEN] = "";
    if (im->cfg.created >= 0)
        cairn_image_time_format(im->cfg.created, created);
    int64_t total = 0;
    for (size_t i = 0; rc == 0 && i < im->m.nlayers; i++) {
        const struct cairn_layer_desc *d = &im->m.layers[i];
        int64_t bytes;
        if ((rc = layer_content_size(st, d, &bytes, err)))
            break;
        total += bytes;
        json_t *l = blob_desc(d->digest, d->media_type, d->size);
        const char *diff_id = i < im->cfg.ndiff_ids ? im->cfg.diff_ids[i] : "";
        char snap[PATH_MAX];
        struct stat sb;
        json_t *snapj = json_null();
        if (diff_id[0] != '\0') {
            snprintf(snap, sizeof snap, "%s/snapshots/%s", cairn_store_root(st),
                     diff_id + 7);
            if (stat(snap, &sb) == 0 && S_ISDIR(sb.st_mode)) {
                snprintf(snap, sizeof snap, "snapshots/%s", diff_id + 7);
                snapj = cairn_json_string(snap);
            }
        }
        if (l == NULL || add(l, "DiffID", cairn_json_string(diff_id)) ||
            add(l, "UnpackedSize", json_integer(bytes)) ||
            add(l, "Snapshot", snapj) || json_array_append_new(layers, l))
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; rc == 0 && i < im->cfg.ndiff_ids; i++)
        if (json_array_append_new(diffs, cairn_json_string(im->cfg.diff_ids[i])))
            rc = CAIRN_E_NOMEM;
    if (rc)
        goto fail;
    store = json_object();
    if (store == NULL ||
        add(store, "Root", cairn_json_string(cairn_store_root(st))) ||
        add(store, "Manifest",
            blob_desc(im->row.manifest_digest,
                      im->m.media_type ? im->m.media_type
                                       : CAIRN_MEDIA_MANIFEST,
                      (int64_t)0)) ||
        add(store, "Config",
            blob_desc(im->m.config_digest,
                      im->m.config_media_type ? im->m.config_media_type
                                              : CAIRN_MEDIA_CONFIG,
                      im->m.config_size)) ||
        add(store, "Layers", json_incref(layers)))
        goto nomem;
    /* The manifest's own size is not in the row; the blob file has it. */
    char mpath[PATH_MAX];
    struct stat sb;
    if (cairn_store_blob_path(st, im->row.manifest_digest, mpath,
                              sizeof mpath) == 0 &&
        stat(mpath, &sb) == 0)
        json_object_set_new(json_object_get(store, "Manifest"), "Size",
                            json_integer(sb.st_size));

    json_t *rootfs = json_pack("{s:s, s:O}", "Type", "layers", "Layers", diffs);
    if (add(o, "Id", cairn_json_string(im->row.config_digest)) ||
        add(o, "RepoTags", json_incref(tags)) ||
        add(o, "RepoDigests", repo_digests_json(&im->row)) ||
        add(o, "Parent", cairn_json_string("")) ||
        add(o, "Comment", raw_or(im->raw, "comment", cairn_json_string(""))) ||
        add(o, "Created", cairn_json_string(created)) ||
        add(o, "DockerVersion",
            raw_or(im->raw, "docker_version", cairn_json_string(""))) ||
        add(o, "Author", raw_or(im->raw, "author", cairn_json_string(""))) ||
        add(o, "Config", raw_or(im->raw, "config", json_object())) ||
        add(o, "Architecture",
            raw_or(im->raw, "architecture", cairn_json_string(""))) ||
        (im->cfg.variant && add(o, "Variant", cairn_json_string(im->cfg.variant))) ||
        add(o, "Os", raw_or(im->raw, "os", cairn_json_string(""))) ||
        add(o, "Size", json_integer(total)) || add(o, "RootFS", rootfs) ||
        add(o, "History", raw_or(im->raw, "history", json_array())) ||
        add(o, "Store", store))
        goto nomem;
    json_decref(tags);
    json_decref(diffs);
    json_decref(layers);
    return o;
nomem:
    rc = cairn_err_set(err, CAIRN_E_NOMEM, "%s", cairn_strerror(CAIRN_E_NOMEM));
fail:
    json_decref(o);
    json_decref(tags);
    json_decref(diffs);
    json_decref(layers);
    return NULL;
}

static void inspect_usage(FILE *out)
{
    fprintf(out, "Usage: cairn inspect IMAGE [IMAGE...]\n\n"
                 "Print a JSON array describing each image, as docker "
                 "inspect does,\nplus a \"Store\" section with the blobs and "
                 "snapshots of each layer.\n");
}

int cairn_cmd_inspect(int argc, char **argv)
{
    int first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            inspect_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--") == 0) {
            first = i + 1;
            break;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "cairn inspect: unknown option \"%s\"\n\n",
                    argv[i]);
            inspect_usage(stderr);
            return 2;
        }
    }
    if (first >= argc) {
        inspect_usage(stderr);
        return 2;
    }
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    if (cairn_cli_store_open(&st, &err)) {
        fprintf(stderr, "cairn inspect: %s\n", err.msg);
        return 1;
    }
    json_t *arr = json_array();
    int status = arr ? 0 : 1;
    /* Like docker: print what was found, name what was not, fail at the
     * end if anything was missing. */
    for (int i = first; arr && i < argc; i++) {
        struct img im;
        json_t *one = NULL;
        if (img_load(st, argv[i], &im, &err) == 0) {
            one = inspect_one(st, &im, &err);
            img_clear(&im);
        }
        if (one == NULL || json_array_append_new(arr, one) != 0) {
            fprintf(stderr, "cairn inspect: %s\n", err.msg);
            status = 1;
        }
    }
    char *s = arr ? json_dumps(arr, JSON_INDENT(4)) : NULL;
    if (s) {
        printf("%s\n", s);
        free(s);
    } else {
        status = 1;
    }
    json_decref(arr);
    cairn_store_close(st);
    return status;
}
