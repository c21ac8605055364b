/* cairn save, import and load: images in and out of tar archives.
 *
 * save writes what Docker 25+ writes: an OCI image layout (oci-layout,
 * index.json, blobs/sha256/...) and, in the same tar, Docker's
 * manifest.json whose Config and Layers point into blobs/sha256/. So one
 * file is both a docker-archive (docker load, skopeo docker-archive:) and
 * an oci-archive (skopeo oci-archive:, umoci after extraction). Blobs are
 * copied byte for byte from the store, so manifest and layer digests
 * survive the round trip; Docker and skopeo both decompress gzip layers
 * named in manifest.json, so the layers need no re-encoding.
 *
 * load reads either kind of archive. The archive is streamed once into
 * temporary files in the store's tmp/ (hashing each file on the way), then
 * every digest is checked -- blob names, config diff_ids against the
 * decompressed layers -- before anything enters the store, so a bad
 * archive leaves the store as it was.
 *
 * import turns a rootfs tarball into a one-layer image as `docker import`
 * does. The uncompressed tar bytes are kept exactly (Docker keeps them
 * too, so the diff_id is the same as Docker's for the same file); a gzip
 * input is stored as it is, anything else is gzipped.
 */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"
#include "client/store/json.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "cachekey/dockerfile.h"
#include "cachekey/expand.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Caps on what an archive may hold (STYLE.md 7): entry count and path
 * length; file contents are bounded by the disk, JSON by
 * CAIRN_IMAGE_MAX_JSON. */
#define ARCHIVE_MAX_ENTRIES 100000
#define ARCHIVE_MAX_PATH 4096
#define ARCHIVE_MAX_LINKS 16
#define COPY_CHUNK (1 << 16)

#define ANNOT_REF_NAME "org.opencontainers.image.ref.name"
#define ANNOT_CONTAINERD_NAME "io.containerd.image.name"

/* ------------------------------------------------------------------ */
/* shared helpers                                                     */


/* Adds the stored form of a name found in an archive (skopeo writes
 * "docker.io/x/y:t", Docker "x/y:t"; both become "x/y:t"). */
static int push_ref(struct cairn_strvec *tags, const char *ref,
                    struct cairn_err *err)
{
    char buf[ARCHIVE_MAX_PATH];
    int rc = cairn_store_ref_normalize(ref, buf, sizeof buf, err);
    if (rc) {
        cairn_err_prefix(err, "image name \"%.200s\" in the archive", ref);
        return rc;
    }
    for (size_t i = 0; i < tags->n; i++)
        if (strcmp(tags->v[i], buf) == 0)
            return 0;
    return cairn_strvec_push(tags, buf);
}

/* The fully qualified name containerd and Docker 25 write into
 * io.containerd.image.name: a first component without '.', ':' or
 * "localhost" is on Docker Hub, and one-component names are "library/". */
static int ref_qualify(const char *ref, struct cairn_buf *out)
{
    const char *slash = strchr(ref, '/');
    bool has_domain = false;
    if (slash) {
        size_t n = (size_t)(slash - ref);
        has_domain = memchr(ref, '.', n) || memchr(ref, ':', n) ||
                     (n == 9 && strncmp(ref, "localhost", 9) == 0);
    }
    if (has_domain)
        return cairn_buf_puts(out, ref);
    return cairn_buf_printf(out, "docker.io/%s%s", slash ? "" : "library/",
                            ref);
}

/* The tag part of "name:tag" (after the last ':' of the last component). */
static const char *ref_tag(const char *ref)
{
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    return colon ? colon + 1 : "latest";
}

/* The OCI platform names of this machine (Go's GOARCH values). A machine
 * missing from the table keeps uname's name, in static storage: the
 * strings stay valid for the life of the process. */
static void host_platform(const char **arch, const char **variant)
{
    static const struct {
        const char *machine, *arch, *variant;
    } map[] = {
        {"x86_64", "amd64", NULL},    {"aarch64", "arm64", "v8"},
        {"armv7l", "arm", "v7"},      {"armv6l", "arm", "v6"},
        {"i686", "386", NULL},        {"i386", "386", NULL},
        {"ppc64le", "ppc64le", NULL}, {"s390x", "s390x", NULL},
        {"riscv64", "riscv64", NULL},
    };
    static struct utsname u; /* outlives the call: see above */
    *arch = "amd64";
    *variant = NULL;
    if (uname(&u) != 0)
        return;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(u.machine, map[i].machine) == 0) {
            *arch = map[i].arch;
            *variant = map[i].variant;
            return;
        }
    }
    *arch = u.machine;
}

/* Media type of a layer file from its first bytes. */
static const char *layer_media_sniff(const char *path)
{
    unsigned char m[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, m, sizeof m);
        (void)n;
        close(fd);
    }
    if (m[0] == 0x1f && m[1] == 0x8b)
        return CAIRN_MEDIA_LAYER_GZIP;
    if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
        return CAIRN_MEDIA_LAYER_ZSTD;
    return CAIRN_MEDIA_LAYER_TAR;
}

/* A new empty file in dir; *path malloc'd. */
static int tmp_create(const char *dir, const char *prefix, char **path, int *fd,
                      struct cairn_err *err)
{
    struct cairn_buf b;
    cairn_buf_init(&b, PATH_MAX);
    if (cairn_buf_printf(&b, "%s/%sXXXXXX", dir, prefix))
        return cairn_err_set(err, CAIRN_E_TOOBIG, "temporary path too long");
    int f = mkostemp(b.data, O_CLOEXEC);
    if (f < 0) {
        int e = errno;
        cairn_err_set(err, -e, "creating a file in %s: %s", dir, strerror(e));
        cairn_buf_free(&b);
        return -e;
    }
    *fd = f;
    *path = cairn_buf_take(&b);
    return 0;
}

/* Reads a whole small file (at most max bytes). */
static int read_small(const char *path, size_t max, char **data, size_t *len,
                      struct cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct cairn_buf b;
    cairn_buf_init(&b, max);
    int rc = 0;
    for (;;) {
        if ((rc = cairn_buf_reserve(&b, COPY_CHUNK)) != 0) {
            rc = cairn_err_set(err, rc, "%s: larger than %zu bytes", path, max);
            break;
        }
        ssize_t n = read(fd, b.data + b.len, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "%s: larger than %zu bytes",
                               path, max);
            break;
        }
        b.len += (size_t)n;
        b.data[b.len] = '\0';
    }
    close(fd);
    if (rc) {
        cairn_buf_free(&b);
        return rc;
    }
    *len = b.len;
    *data = cairn_buf_take(&b);
    return *data ? 0 : CAIRN_E_NOMEM;
}

/* Copies fd `in` to fd `out`, hashing what passes; writes "sha256:<hex>"
 * and the byte count. */
static int copy_hash(int in, int out, char digest[CAIRN_DIGEST_STR_LEN],
                     int64_t *size, struct cairn_err *err)
{
    struct ck_sha256 *h = NULL;
    char *buf = malloc(COPY_CHUNK);
    int rc = ck_sha256_new(&h);
    int64_t total = 0;
    if (rc == 0 && buf == NULL)
        rc = CAIRN_E_NOMEM;
    while (rc == 0) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "reading: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((rc = ck_sha256_update(h, buf, (size_t)n)) != 0)
            break;
        if ((rc = cairn_write_all(out, buf, (size_t)n)) != 0) {
            cairn_err_set(err, rc, "writing: %s", strerror(-rc));
            break;
        }
        total += n;
    }
    if (rc == 0) {
        uint8_t bin[CK_SHA256_LEN];
        char hex[CK_SHA256_HEX_LEN + 1];
        if ((rc = ck_sha256_final(h, bin)) == 0) {
            ck_hex_encode(bin, hex);
            snprintf(digest, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
            *size = total;
        }
    }
    ck_sha256_free(h);
    free(buf);
    return rc;
}

/* Stores an image whose blobs are all in the store: manifest and config
 * as bytes, then the record and its tags. */
static int image_commit(struct cairn_store *st, const char *manifest_json,
                        size_t manifest_len, const struct cairn_manifest *m,
                        int64_t created, char *const *tags, size_t ntags,
                        char manifest_digest[CAIRN_DIGEST_STR_LEN],
                        struct cairn_err *err)
{
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    int rc = cairn_store_blob_add_data(st, manifest_json, manifest_len,
                                       row.manifest_digest, err);
    if (rc)
        return rc;
    snprintf(row.config_digest, sizeof row.config_digest, "%s",
             m->config_digest);
    row.created = created < 0 ? 0 : created;
    for (size_t i = 0; i < m->nlayers; i++)
        row.size += m->layers[i].size;
    if ((rc = cairn_store_image_add(st, &row, err)))
        return rc;
    for (size_t i = 0; i < ntags; i++)
        if ((rc = cairn_store_tag(st, tags[i], row.manifest_digest, err)))
            return rc;
    snprintf(manifest_digest, CAIRN_DIGEST_STR_LEN, "%s", row.manifest_digest);
    return 0;
}


/* ------------------------------------------------------------------ */
/* save                                                               */

struct save_image {
    char manifest_digest[CAIRN_DIGEST_STR_LEN];
    int64_t manifest_size;
    struct cairn_manifest m;
    char *tag; /* "name:tag" this image was asked for by, or NULL */
};

/* Adds one tar entry header for a regular file or directory. Times and
 * owners are fixed so that saving the same images twice gives the same
 * bytes. */
static int tar_header(struct archive *a, const char *path, bool dir,
                      int64_t size, struct cairn_err *err)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return CAIRN_E_NOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    archive_entry_set_size(e, dir ? 0 : size);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return cairn_err_set(err, CAIRN_E_ARCHIVE, "writing %s: %s", path,
                             archive_error_string(a));
    return 0;
}

static int tar_data(struct archive *a, const char *path, const void *p,
                    size_t n, struct cairn_err *err)
{
    int rc = tar_header(a, path, false, (int64_t)n, err);
    if (rc == 0 && n > 0 && archive_write_data(a, p, n) != (la_ssize_t)n)
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "writing %s: %s", path,
                           archive_error_string(a));
    return rc;
}

/* Streams a blob from the store into the tar, checking its digest on the
 * way: a store file that rotted must not leave as a valid-looking
 * archive. */
static int tar_blob(struct archive *a, struct cairn_store *st,
                    const char *digest, struct cairn_err *err)
{
    char path[PATH_MAX], name[CAIRN_DIGEST_STR_LEN + 16];
    if (cairn_store_blob_path(st, digest, path, sizeof path) != 0)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "store path too long");
    snprintf(name, sizeof name, "blobs/sha256/%s", digest + 7);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "blob %s: %s", digest,
                             strerror(errno));
    struct stat sb;
    struct ck_sha256 *h = NULL;
    char *buf = malloc(COPY_CHUNK);
    int rc = buf ? ck_sha256_new(&h) : CAIRN_E_NOMEM;
    if (rc == 0 && fstat(fd, &sb) != 0)
        rc = cairn_err_set(err, -errno, "blob %s: %s", digest, strerror(errno));
    if (rc == 0)
        rc = tar_header(a, name, false, sb.st_size, err);
    int64_t left = rc == 0 ? sb.st_size : 0;
    while (rc == 0 && left > 0) {
        ssize_t n = read(fd, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = cairn_err_set(err, CAIRN_E_IO, "blob %s: short read", digest);
            break;
        }
        if ((rc = ck_sha256_update(h, buf, (size_t)n)) != 0)
            break;
        if (archive_write_data(a, buf, (size_t)n) != n) {
            rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "writing %s: %s", name,
                               archive_error_string(a));
            break;
        }
        left -= n;
    }
    if (rc == 0) {
        uint8_t bin[CK_SHA256_LEN];
        char hex[CK_SHA256_HEX_LEN + 1];
        if ((rc = ck_sha256_final(h, bin)) == 0) {
            ck_hex_encode(bin, hex);
            if (strcmp(hex, digest + 7) != 0)
                rc = cairn_err_set(err, CAIRN_E_DIGEST,
                                   "blob %s in the store is corrupt (its "
                                   "content hashes to sha256:%s)",
                                   digest, hex);
        }
    }
    ck_sha256_free(h);
    free(buf);
    close(fd);
    return rc;
}

/* index.json and manifest.json for the images, in the order given. */
static int save_indexes(struct save_image *imgs, size_t n, char **index,
                        char **manifest)
{
    json_t *idx = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
                            CAIRN_MEDIA_INDEX, "manifests");
    json_t *man = json_array();
    int rc = (idx && man) ? 0 : CAIRN_E_NOMEM;
    json_t *descs = json_object_get(idx, "manifests");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct save_image *im = &imgs[i];
        char cfg[CAIRN_DIGEST_STR_LEN + 16];
        snprintf(cfg, sizeof cfg, "blobs/sha256/%s", im->m.config_digest + 7);
        json_t *layers = json_array();
        json_t *tags = json_array();
        json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType",
                              im->m.media_type ? im->m.media_type
                                               : CAIRN_MEDIA_MANIFEST,
                              "digest", im->manifest_digest, "size",
                              (json_int_t)im->manifest_size);
        if (layers == NULL || tags == NULL || d == NULL)
            rc = CAIRN_E_NOMEM;
        for (size_t l = 0; rc == 0 && l < im->m.nlayers; l++) {
            char lp[CAIRN_DIGEST_STR_LEN + 16];
            snprintf(lp, sizeof lp, "blobs/sha256/%s",
                     im->m.layers[l].digest + 7);
            if (json_array_append_new(layers, cairn_json_string(lp)))
                rc = CAIRN_E_NOMEM;
        }
        if (rc == 0 && im->tag) {
            /* Docker 25 names the manifest both ways: containerd reads
             * the qualified name, OCI tools (umoci, skopeo oci:) the
             * ref.name, which Docker sets to the bare tag. */
            struct cairn_buf q;
            cairn_buf_init(&q, ARCHIVE_MAX_PATH);
            if (ref_qualify(im->tag, &q) ||
                json_array_append_new(tags, cairn_json_string(im->tag)) ||
                json_object_set_new(
                    d, "annotations",
                    json_pack("{s:s, s:s}", ANNOT_CONTAINERD_NAME, q.data,
                              ANNOT_REF_NAME, ref_tag(im->tag))))
                rc = CAIRN_E_NOMEM;
            cairn_buf_free(&q);
        }
        if (rc == 0 && json_array_append(descs, d))
            rc = CAIRN_E_NOMEM;
        json_t *item = NULL;
        if (rc == 0)
            item = json_pack("{s:s, s:O, s:O}", "Config", cfg, "RepoTags", tags,
                             "Layers", layers);
        if (rc == 0 && (item == NULL || json_array_append_new(man, item)))
            rc = CAIRN_E_NOMEM;
        json_decref(d);
        json_decref(layers);
        json_decref(tags);
    }
    if (rc == 0) {
        *index = json_dumps(idx, JSON_SORT_KEYS | JSON_COMPACT);
        *manifest = json_dumps(man, JSON_COMPACT);
        if (*index == NULL || *manifest == NULL) {
            free(*index);
            free(*manifest);
            rc = CAIRN_E_NOMEM;
        }
    }
    json_decref(idx);
    json_decref(man);
    return rc;
}

static bool seen_add(struct cairn_strvec *seen, const char *digest, int *rc)
{
    for (size_t i = 0; i < seen->n; i++)
        if (strcmp(seen->v[i], digest) == 0)
            return false;
    *rc = cairn_strvec_push(seen, digest);
    return *rc == 0;
}

static int save_write(struct archive *a, struct cairn_store *st,
                      struct save_image *imgs, size_t n, struct cairn_err *err)
{
    static const char oci_layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    struct cairn_strvec seen;
    cairn_strvec_init(&seen);
    char *index = NULL, *manifest = NULL;
    int rc;
    if ((rc = tar_header(a, "blobs/", true, 0, err)) ||
        (rc = tar_header(a, "blobs/sha256/", true, 0, err)))
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct save_image *im = &imgs[i];
        if (seen_add(&seen, im->manifest_digest, &rc) &&
            (rc = tar_blob(a, st, im->manifest_digest, err)))
            goto out;
        if (seen_add(&seen, im->m.config_digest, &rc) &&
            (rc = tar_blob(a, st, im->m.config_digest, err)))
            goto out;
        for (size_t l = 0; l < im->m.nlayers; l++)
            if (seen_add(&seen, im->m.layers[l].digest, &rc) &&
                (rc = tar_blob(a, st, im->m.layers[l].digest, err)))
                goto out;
        if (rc)
            goto out;
    }
    if ((rc = save_indexes(imgs, n, &index, &manifest)) ||
        (rc = tar_data(a, "index.json", index, strlen(index), err)) ||
        (rc = tar_data(a, "manifest.json", manifest, strlen(manifest), err)) ||
        (rc = tar_data(a, "oci-layout", oci_layout, strlen(oci_layout), err)))
        goto out;
    if (archive_write_close(a) != ARCHIVE_OK)
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "writing the archive: %s",
                           archive_error_string(a));
out:
    if (rc == CAIRN_E_NOMEM && err && err->code == 0)
        cairn_err_set(err, rc, "%s", cairn_strerror(rc));
    free(index);
    free(manifest);
    cairn_strvec_free(&seen);
    return rc;
}

/* Resolves one IMAGE argument: the manifest, and the tag to record when
 * the argument named the image by a tag (saving by ID records none, as
 * docker does). */
static int save_resolve(struct cairn_store *st, const char *name,
                        struct save_image *im, struct cairn_err *err)
{
    struct cairn_image_row row;
    char *json = NULL;
    size_t len;
    memset(im, 0, sizeof *im);
    memset(&row, 0, sizeof row);
    int rc = cairn_store_image_find(st, name, &row, err);
    if (rc == 0) {
        char full[ARCHIVE_MAX_PATH];
        /* A name that does not normalise is an ID or a digest. */
        bool is_ref =
            cairn_store_ref_normalize(name, full, sizeof full, NULL) == 0;
        for (size_t i = 0; is_ref && i < row.ntags && row.tags; i++) {
            if (strcmp(row.tags[i], full) == 0) {
                if ((im->tag = strdup(full)) == NULL)
                    rc = CAIRN_E_NOMEM;
                break;
            }
        }
        cairn_store_image_row_clear(&row);
        snprintf(im->manifest_digest, sizeof im->manifest_digest, "%s",
                 row.manifest_digest);
        if (rc == 0)
            rc = cairn_store_blob_read(st, im->manifest_digest,
                                       CAIRN_IMAGE_MAX_JSON, &json, &len, err);
    }
    if (rc == 0 && (rc = cairn_manifest_parse(json, len, &im->m, err)) == 0)
        im->manifest_size = (int64_t)len;
    free(json);
    if (rc) {
        if (rc != CAIRN_E_NOTFOUND) /* the store names it already */
            cairn_err_prefix(err, "%s", name);
        free(im->tag);
        im->tag = NULL;
    }
    return rc;
}

static void save_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn save [-o FILE] IMAGE [IMAGE...]\n\n"
            "Write images to a tar archive that docker load, skopeo "
            "(docker-archive: and\noci-archive:) and umoci read. Without "
            "-o, writes to standard output\nwhen that is not a terminal.\n\n"
            "Options:\n"
            "  -o, --output FILE   write to FILE (replaced only when "
            "complete)\n");
}

int cairn_cmd_save(int argc, char **argv)
{
    const char *output = NULL;
    struct cairn_strvec names;
    cairn_strvec_init(&names);
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            save_usage(stdout);
            cairn_strvec_free(&names);
            return 0;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--output", "-o",
                                  &missing))) {
            output = v;
        } else if (missing || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            fprintf(stderr, "cairn save: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            save_usage(stderr);
            cairn_strvec_free(&names);
            return 2;
        } else if (cairn_strvec_push(&names, argv[i])) {
            cairn_strvec_free(&names);
            return 1;
        }
    }
    if (names.n == 0) {
        save_usage(stderr);
        cairn_strvec_free(&names);
        return 2;
    }
    if ((output == NULL || strcmp(output, "-") == 0) && isatty(1)) {
        fprintf(stderr, "cairn save: refusing to write an archive to a "
                        "terminal; use -o FILE or redirect\n");
        cairn_strvec_free(&names);
        return 2;
    }

    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    struct save_image *imgs = calloc(names.n, sizeof *imgs);
    struct archive *a = NULL;
    char *tmp = NULL;
    int fd = -1, status = 1, rc;
    if (imgs == NULL)
        goto out;
    if ((rc = cairn_cli_store_open(&st, &err)))
        goto fail;
    for (size_t i = 0; i < names.n; i++)
        if ((rc = save_resolve(st, names.v[i], &imgs[i], &err)))
            goto fail;

    if (output && strcmp(output, "-") != 0) {
        /* Written next to the target and renamed at the end, so a failed
         * save never leaves a truncated archive under the final name. */
        char *dir = strdup(output);
        if (dir == NULL)
            goto out;
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : dir) : ".";
        if (slash && slash != dir)
            *slash = '\0';
        rc = tmp_create(d, ".cairn-save-", &tmp, &fd, &err);
        free(dir);
        if (rc)
            goto fail;
        /* mkostemp makes 0600; the archive the user asked for gets the
         * mode any new file of theirs gets (0666 less the umask), as the
         * store's privacy is no reason to hide what they exported. */
        mode_t um = umask(0);
        umask(um);
        if (fchmod(fd, 0666 & ~um) != 0) {
            rc = cairn_err_set(&err, -errno, "%s: %s", tmp, strerror(errno));
            goto fail;
        }
    } else {
        fd = 1;
    }
    if ((a = archive_write_new()) == NULL)
        goto out;
    /* pax_restricted writes plain ustar headers unless a field needs an
     * extension: what docker and skopeo read without surprises. */
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_add_filter_none(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open_fd(a, fd) != ARCHIVE_OK) {
        rc =
            cairn_err_set(&err, CAIRN_E_ARCHIVE, "%s", archive_error_string(a));
        goto fail;
    }
    if ((rc = save_write(a, st, imgs, names.n, &err)))
        goto fail;
    if (tmp) {
        if (fsync(fd) != 0 || close(fd) != 0) {
            fd = -1;
            rc = cairn_err_set(&err, -errno, "%s: %s", output, strerror(errno));
            goto fail;
        }
        fd = -1;
        if (rename(tmp, output) != 0) {
            rc = cairn_err_set(&err, -errno, "%s: %s", output, strerror(errno));
            goto fail;
        }
        free(tmp);
        tmp = NULL;
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "cairn save: %s\n",
            err.msg[0] ? err.msg : cairn_strerror(rc));
out:
    if (a)
        archive_write_free(a);
    if (fd > 1)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    for (size_t i = 0; imgs && i < names.n; i++) {
        cairn_manifest_clear(&imgs[i].m);
        free(imgs[i].tag);
    }
    free(imgs);
    cairn_store_close(st);
    cairn_strvec_free(&names);
    return status;
}

/* ------------------------------------------------------------------ */
/* import                                                             */

/* Lookup of $VAR in the config's Env for --change expansion. */
static const char *env_lookup(void *ctx, const char *name, size_t len)
{
    const struct cairn_image_config *c = ctx;
    for (size_t i = c->nenv; i-- > 0;)
        if (strncmp(c->env[i], name, len) == 0 && c->env[i][len] == '=')
            return c->env[i] + len + 1;
    return NULL;
}

static int strv_set(char ***v, size_t *n, char **words, size_t nwords)
{
    char **copy = cairn_strv_dup(words, nwords);
    if (copy == NULL)
        return CAIRN_E_NOMEM;
    cairn_strv_free(*v, *n);
    *v = copy;
    *n = nwords;
    return 0;
}

/* Adds s to a set kept sorted (ExposedPorts, Volumes). */
static int set_add(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return 0;
    struct cairn_strvec sv = {.v = *v, .n = *n, .alloc = *n + 1};
    if (sv.v == NULL)
        sv.alloc = 0;
    int rc = cairn_strvec_push(&sv, s);
    if (rc == 0) {
        cairn_strvec_sort(&sv);
        *v = sv.v;
        *n = sv.n;
    }
    return rc;
}

/* CMD/ENTRYPOINT argv: exec form as written, shell form through the
 * image's SHELL (default /bin/sh -c), as the Dockerfile builder does. */
static int change_argv(const struct cairn_image_config *c,
                       const struct ck_instr *in, char ***v, size_t *n)
{
    if (in->json)
        return strv_set(v, n, in->args, in->nargs);
    static char *const dflt[] = {"/bin/sh", "-c"};
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    char *const *sh = c->nshell ? c->shell : dflt;
    size_t nsh = c->nshell ? c->nshell : 2;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nsh; i++)
        rc = cairn_strvec_push(&sv, sh[i]);
    if (rc == 0)
        rc = cairn_strvec_push(&sv, in->nargs ? in->args[0] : "");
    size_t nn;
    char **arr = rc == 0 ? cairn_strvec_take(&sv, &nn) : NULL;
    if (arr == NULL) {
        cairn_strvec_free(&sv);
        return CAIRN_E_NOMEM;
    }
    cairn_strv_free(*v, *n);
    *v = arr;
    *n = nn;
    return 0;
}

/* EXPOSE word: "80", "80/udp", "8000-8002/tcp" (ranges expand, as
 * Docker's nat.ParsePortSpecs does). */
static int change_expose(struct cairn_image_config *c, const char *w,
                         struct cairn_err *err)
{
    const char *slash = strchr(w, '/');
    const char *proto = slash ? slash + 1 : "tcp";
    char *end;
    errno = 0;
    unsigned long lo = strtoul(w, &end, 10), hi = lo;
    if (*end == '-') {
        const char *h = end + 1;
        hi = strtoul(h, &end, 10);
        if (end == h)
            hi = 0;
    }
    if (errno || end == w || (*end != '\0' && *end != '/') || lo == 0 ||
        hi > 65535 || hi < lo || hi - lo > 1024 ||
        (strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "sctp")))
        return cairn_err_set(err, CAIRN_E_PARSE, "invalid port \"%s\"", w);
    for (unsigned long p = lo; p <= hi; p++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lu/%s", p, proto);
        int rc = set_add(&c->exposed_ports, &c->nexposed_ports, buf);
        if (rc)
            return rc;
    }
    return 0;
}

/* Applies one --change line to the config. */
static int change_apply(struct cairn_image_config *c, const char *text,
                        struct cairn_err *err)
{
    struct ck_dockerfile *df = NULL;
    int rc = ck_dockerfile_parse("--change", text, strlen(text), &df, err);
    if (rc)
        return rc;
    char *one = NULL;
    char **words = NULL;
    size_t nwords = 0;
    for (size_t k = 0; rc == 0 && k < df->ninstrs; k++) {
        const struct ck_instr *in = &df->instrs[k];
        char esc = df->escape;
        switch (in->kind) {
        case CK_INSTR_CMD:
            rc = change_argv(c, in, &c->cmd, &c->ncmd);
            c->has_cmd = true;
            break;
        case CK_INSTR_ENTRYPOINT:
            rc = change_argv(c, in, &c->entrypoint, &c->nentrypoint);
            c->has_entrypoint = true;
            break;
        case CK_INSTR_ENV:
        case CK_INSTR_LABEL:
            for (size_t i = 0; rc == 0 && i + 1 < in->nargs; i += 2) {
                char *key = NULL;
                rc = ck_expand_word(in->args[i], esc, env_lookup, c, &key, err);
                if (rc == 0)
                    rc = ck_expand_word(in->args[i + 1], esc, env_lookup, c,
                                        &one, err);
                if (rc == 0)
                    rc = in->kind == CK_INSTR_ENV
                             ? cairn_image_config_set_env(c, key, one)
                             : cairn_image_config_set_label(c, key, one);
                free(key);
                free(one);
                one = NULL;
            }
            break;
        case CK_INSTR_EXPOSE:
        case CK_INSTR_VOLUME:
            for (size_t i = 0; rc == 0 && i < in->nargs; i++) {
                rc = ck_expand_words(in->args[i], esc, env_lookup, c, &words,
                                     &nwords, err);
                for (size_t j = 0; rc == 0 && j < nwords; j++)
                    rc = in->kind == CK_INSTR_EXPOSE
                             ? change_expose(c, words[j], err)
                             : set_add(&c->volumes, &c->nvolumes, words[j]);
                ck_expand_words_free(words, nwords);
                words = NULL;
            }
            break;
        case CK_INSTR_ONBUILD:
            /* docker import accepts ONBUILD: the trigger is stored as
             * written and runs when a build uses this image. */
            if (in->sub == NULL || in->sub->original == NULL) {
                rc = cairn_err_set(err, CAIRN_E_PARSE,
                                   "ONBUILD needs an instruction");
                break;
            } else {
                /* In order, unlike the sets above: triggers run in turn. */
                struct cairn_strvec sv = {.v = c->onbuild, .n = c->nonbuild,
                                          .alloc = c->nonbuild + 1};
                if (sv.v == NULL)
                    sv.alloc = 0;
                rc = cairn_strvec_push(&sv, in->sub->original);
                c->onbuild = sv.v;
                c->nonbuild = sv.n;
            }
            break;
        case CK_INSTR_USER:
        case CK_INSTR_WORKDIR:
        case CK_INSTR_STOPSIGNAL:
            rc = ck_expand_word(in->nargs ? in->args[0] : "", esc, env_lookup,
                                c, &one, err);
            if (rc)
                break;
            if (in->kind == CK_INSTR_USER) {
                free(c->user);
                c->user = one;
            } else if (in->kind == CK_INSTR_STOPSIGNAL) {
                free(c->stop_signal);
                c->stop_signal = one;
            } else if (one[0] == '/' || c->workdir == NULL) {
                /* A relative WORKDIR continues from the previous one. */
                free(c->workdir);
                if (one[0] == '/') {
                    c->workdir = one;
                } else {
                    struct cairn_buf b;
                    cairn_buf_init(&b, ARCHIVE_MAX_PATH);
                    rc = cairn_buf_printf(&b, "/%s", one);
                    c->workdir = rc ? NULL : cairn_buf_take(&b);
                    cairn_buf_free(&b);
                    free(one);
                }
            } else {
                struct cairn_buf b;
                cairn_buf_init(&b, ARCHIVE_MAX_PATH);
                size_t wl = strlen(c->workdir);
                rc = cairn_buf_printf(
                    &b, "%s%s%s", c->workdir,
                    wl && c->workdir[wl - 1] == '/' ? "" : "/", one);
                free(one);
                if (rc == 0) {
                    free(c->workdir);
                    c->workdir = cairn_buf_take(&b);
                }
                cairn_buf_free(&b);
            }
            one = NULL;
            break;
        default:
            rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                               "%s cannot be changed on import (CMD, "
                               "ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, "
                               "USER, VOLUME, WORKDIR can)",
                               ck_instr_name(in->kind));
        }
    }
    if (rc == CAIRN_E_NOMEM)
        cairn_err_set(err, rc, "%s", cairn_strerror(rc));
    cairn_err_prefix(err, "--change \"%s\"", text);
    ck_dockerfile_free(df);
    return rc;
}

/* Reads the tarball through: it must be a tar (after any compression
 * libarchive knows) whose every entry stays inside the root, and it must
 * read to its end without error. Done before anything is stored, so a
 * corrupt tarball is refused up front. */
static int import_check_tar(const char *path, const char *shown,
                            struct cairn_err *err)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return CAIRN_E_NOMEM;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = 0, r;
    size_t n = 0;
    if (archive_read_open_filename(a, path, COPY_CHUNK) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT, "%s: not a tar archive: %s",
                           shown, archive_error_string(a));
        goto out;
    }
    struct archive_entry *e;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        const char *p = archive_entry_pathname(e);
        n++;
        if (p == NULL || p[0] == '/' || strcmp(p, "..") == 0 ||
            strncmp(p, "../", 3) == 0 || strstr(p, "/../") != NULL ||
            (strlen(p) >= 3 && strcmp(p + strlen(p) - 3, "/..") == 0)) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "%s: entry \"%s\" is outside the root "
                               "file system",
                               shown, p ? p : "");
            goto out;
        }
        if (archive_read_data_skip(a) != ARCHIVE_OK) {
            r = ARCHIVE_FATAL;
            break;
        }
    }
    if (r != ARCHIVE_EOF)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "%s: corrupt tarball after %zu entries: %s", shown,
                           n, archive_error_string(a));
out:
    archive_read_free(a);
    return rc;
}

/* gzip-compresses src into a new file in dir, byte-exact content (raw
 * format in, raw format out: no tar re-encoding). The gzip header carries
 * no time, so the same input always gives the same blob. */
static int import_gzip(const char *src, const char *dir, char **out,
                       struct cairn_err *err)
{
    char *dst = NULL;
    int fd = -1;
    int rc = tmp_create(dir, "import-gz-", &dst, &fd, err);
    if (rc)
        return rc;
    struct archive *in = archive_read_new();
    struct archive *w = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    char *buf = malloc(COPY_CHUNK);
    if (!in || !w || !e || !buf) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    archive_read_support_filter_all(in);
    archive_read_support_format_raw(in);
    struct archive_entry *ie;
    if (archive_read_open_filename(in, src, COPY_CHUNK) != ARCHIVE_OK ||
        archive_read_next_header(in, &ie) != ARCHIVE_OK) {
        rc =
            cairn_err_set(err, CAIRN_E_ARCHIVE, "%s", archive_error_string(in));
        goto out;
    }
    if (archive_write_add_filter_gzip(w) != ARCHIVE_OK ||
        archive_write_set_filter_option(w, "gzip", "timestamp", NULL) !=
            ARCHIVE_OK ||
        archive_write_set_format_raw(w) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w, 0) != ARCHIVE_OK ||
        archive_write_open_fd(w, fd) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "%s", archive_error_string(w));
        goto out;
    }
    archive_entry_set_pathname(e, "layer.tar");
    archive_entry_set_filetype(e, AE_IFREG);
    if (archive_write_header(w, e) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "%s", archive_error_string(w));
        goto out;
    }
    for (;;) {
        la_ssize_t n = archive_read_data(in, buf, COPY_CHUNK);
        if (n < 0) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT, "%s",
                               archive_error_string(in));
            goto out;
        }
        if (n == 0)
            break;
        if (archive_write_data(w, buf, (size_t)n) != n) {
            rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "%s",
                               archive_error_string(w));
            goto out;
        }
    }
    if (archive_write_close(w) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "%s", archive_error_string(w));
        goto out;
    }
out:
    archive_entry_free(e);
    archive_read_free(in);
    archive_write_free(w);
    free(buf);
    close(fd);
    if (rc) {
        unlink(dst);
        free(dst);
        return rc;
    }
    *out = dst;
    return 0;
}

static void import_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn import [OPTIONS] FILE|- [REPOSITORY[:TAG]]\n\n"
            "Make a one-layer image from a root file system tarball "
            "(plain, gzip, zstd,\nxz, bzip2). Prints the image ID.\n\n"
            "Options:\n"
            "  -c, --change LINE   apply a Dockerfile instruction (CMD, "
            "ENTRYPOINT, ENV,\n"
            "                      EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, "
            "WORKDIR)\n"
            "  -m, --message TEXT  history comment (default \"Imported "
            "from FILE\")\n");
}

int cairn_cmd_import(int argc, char **argv)
{
    struct cairn_strvec changes, pos;
    cairn_strvec_init(&changes);
    cairn_strvec_init(&pos);
    const char *message = NULL;
    int status = 2;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            import_usage(stdout);
            status = 0;
            goto args_out;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--change", "-c",
                                  &missing))) {
            if (cairn_strvec_push(&changes, v))
                goto args_out;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--message", "-m",
                                  &missing))) {
            message = v;
        } else if (missing || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            fprintf(stderr, "cairn import: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            import_usage(stderr);
            goto args_out;
        } else if (cairn_strvec_push(&pos, argv[i])) {
            goto args_out;
        }
    }
    if (pos.n < 1 || pos.n > 2) {
        import_usage(stderr);
        goto args_out;
    }
    const char *src = pos.v[0];
    const char *ref = pos.n > 1 ? pos.v[1] : NULL;

    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    struct cairn_image_config cfg;
    cairn_image_config_init(&cfg);
    struct cairn_manifest m;
    memset(&m, 0, sizeof m);
    struct cairn_layer_desc desc;
    memset(&desc, 0, sizeof desc);
    char *tmp = NULL, *blob = NULL, *cjson = NULL, *mjson = NULL;
    char tagbuf[ARCHIVE_MAX_PATH], *tag = NULL;
    size_t clen, mlen;
    int fd = -1, in = -1, rc;
    status = 1;

    /* Changes first: a typo should fail before a large file is read. */
    const char *arch, *variant;
    host_platform(&arch, &variant);
    /* SOURCE_DATE_EPOCH makes imports reproducible, as it does builds. */
    int64_t now = (int64_t)time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde != NULL && sde[0] != '\0') {
        char *end = NULL;
        long long v = strtoll(sde, &end, 10);
        if (*end == '\0' && v >= 0)
            now = v;
    }
    cfg.created = now;
    if ((cfg.architecture = strdup(arch)) == NULL ||
        (variant && (cfg.variant = strdup(variant)) == NULL) ||
        (cfg.os = strdup("linux")) == NULL) {
        rc = cairn_err_set(&err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < changes.n; i++)
        if ((rc = change_apply(&cfg, changes.v[i], &err)))
            goto fail;
    if (ref) {
        if ((rc = cairn_store_ref_normalize(ref, tagbuf, sizeof tagbuf, &err)))
            goto fail;
        tag = tagbuf;
    }

    if ((rc = cairn_cli_store_open(&st, &err)))
        goto fail;
    if (strcmp(src, "-") == 0) {
        in = 0;
    } else if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = cairn_err_set(&err, -errno, "%s: %s", src, strerror(errno));
        goto fail;
    }
    /* The input is copied into the store's tmp/ first: standard input
     * cannot be read twice, and a gzip input becomes the blob by rename. */
    char dig[CAIRN_DIGEST_STR_LEN];
    int64_t size;
    if ((rc = tmp_create(cairn_store_tmpdir(st), "import-", &tmp, &fd, &err)) ||
        (rc = copy_hash(in, fd, dig, &size, &err))) {
        cairn_err_prefix(&err, "%s", src);
        goto fail;
    }
    close(fd);
    fd = -1;
    if ((rc = import_check_tar(tmp, src, &err)))
        goto fail;
    if (strcmp(layer_media_sniff(tmp), CAIRN_MEDIA_LAYER_GZIP) == 0) {
        blob = tmp;
        tmp = NULL;
    } else if ((rc = import_gzip(tmp, cairn_store_tmpdir(st), &blob, &err))) {
        cairn_err_prefix(&err, "%s", src);
        goto fail;
    }
    if ((rc = cairn_layer_digest_file(blob, &desc, &err))) {
        cairn_err_prefix(&err, "%s", src);
        goto fail;
    }
    desc.media_type = CAIRN_MEDIA_LAYER_GZIP;

    cfg.diff_ids = calloc(2, sizeof *cfg.diff_ids);
    if (cfg.diff_ids == NULL ||
        (cfg.diff_ids[0] = strdup(desc.diff_id)) == NULL) {
        rc = cairn_err_set(&err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    cfg.ndiff_ids = 1;
    /* docker import's history entry: a comment and no created_by. */
    struct cairn_buf comment;
    cairn_buf_init(&comment, 0);
    if (cairn_image_config_add_history(&cfg, now, NULL, false) ||
        (message ? cairn_buf_puts(&comment, message)
                 : cairn_buf_printf(&comment, "Imported from %s", src)) ||
        (cfg.history[0].comment = cairn_buf_take(&comment)) == NULL) {
        cairn_buf_free(&comment);
        rc = cairn_err_set(&err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    char cdig[CAIRN_DIGEST_STR_LEN], mdig[CAIRN_DIGEST_STR_LEN];
    if ((rc = cairn_image_config_to_json(&cfg, &cjson, &clen)) ||
        (rc = cairn_store_blob_add_data(st, cjson, clen, cdig, &err))) {
        if (err.msg[0] == '\0')
            cairn_err_set(&err, rc, "image config: %s", cairn_strerror(rc));
        goto fail;
    }
    m.config_digest = cdig;
    m.config_size = (int64_t)clen;
    m.layers = &desc;
    m.nlayers = 1;
    rc = cairn_manifest_to_json(&m, &mjson, &mlen);
    m.config_digest = NULL;
    m.layers = NULL;
    if (rc) {
        cairn_err_set(&err, rc, "manifest: %s", cairn_strerror(rc));
        goto fail;
    }
    if ((rc = cairn_store_blob_add_file(st, blob, desc.digest, &err)))
        goto fail;
    free(blob);
    blob = NULL;
    m.config_digest = cdig;
    m.layers = &desc;
    m.nlayers = 1;
    rc = image_commit(st, mjson, mlen, &m, now, &tag, tag ? 1 : 0, mdig, &err);
    m.config_digest = NULL;
    m.layers = NULL;
    if (rc)
        goto fail;
    printf("%s\n", cdig);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "cairn import: %s\n",
            err.msg[0] ? err.msg : cairn_strerror(rc));
out:
    if (fd >= 0)
        close(fd);
    if (in > 0)
        close(in);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (blob) {
        unlink(blob);
        free(blob);
    }
    free(cjson);
    free(mjson);
    cairn_image_config_clear(&cfg);
    cairn_store_close(st);
args_out:
    cairn_strvec_free(&changes);
    cairn_strvec_free(&pos);
    return status;
}

/* ------------------------------------------------------------------ */
/* load                                                               */

/* One entry of the archive as extracted to tmp/. */
struct lentry {
    char *path; /* normalised archive path */
    char *tmp;  /* extracted file (regular files); NULL once stored */
    char *link; /* symlink/hardlink target, normalised; or NULL */
    char digest[CAIRN_DIGEST_STR_LEN];
    int64_t size;
};

struct larchive {
    struct lentry *e;
    size_t n, alloc;
};

/* An image found in the archive, verified and ready to store. */
struct limage {
    char *manifest_json; /* bytes to store as the manifest blob */
    size_t manifest_len;
    struct cairn_manifest m;
    struct lentry *config;
    struct lentry **layers; /* m.nlayers files */
    int64_t created;
    struct cairn_strvec tags;
};

static void larchive_free(struct larchive *ar)
{
    for (size_t i = 0; i < ar->n; i++) {
        if (ar->e[i].tmp) {
            unlink(ar->e[i].tmp);
            free(ar->e[i].tmp);
        }
        free(ar->e[i].path);
        free(ar->e[i].link);
    }
    free(ar->e);
    memset(ar, 0, sizeof *ar);
}

static void limage_clear(struct limage *im)
{
    free(im->manifest_json);
    cairn_manifest_clear(&im->m);
    free(im->layers);
    cairn_strvec_free(&im->tags);
    memset(im, 0, sizeof *im);
}

/* Normalises an archive path: drops "./" and empty components and a
 * leading "/"; resolves ".." lexically (base: the directory a relative
 * symlink sits in). NULL when it leaves the archive root. */
static char *path_norm(const char *base, const char *p)
{
    struct cairn_buf b;
    cairn_buf_init(&b, ARCHIVE_MAX_PATH);
    if (base && *p != '/' &&
        (cairn_buf_puts(&b, base) || cairn_buf_putc(&b, '/')))
        goto fail;
    if (cairn_buf_puts(&b, p))
        goto fail;
    char *in = cairn_buf_take(&b);
    if (in == NULL)
        return NULL;
    char *out = malloc(strlen(in) + 1);
    size_t o = 0;
    if (out == NULL) {
        free(in);
        return NULL;
    }
    for (char *save = NULL, *c = strtok_r(in, "/", &save); c;
         c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (o == 0) {
                free(in);
                free(out);
                return NULL;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        if (o > 0)
            out[o++] = '/';
        size_t l = strlen(c);
        memcpy(out + o, c, l);
        o += l;
    }
    out[o] = '\0';
    free(in);
    return out;
fail:
    cairn_buf_free(&b);
    return NULL;
}

/* Streams the archive into tmp/ (see the top comment). */
static int load_extract(struct archive *a, const char *tmpdir,
                        struct larchive *ar, struct cairn_err *err)
{
    struct archive_entry *e;
    int r, rc = 0;
    char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return CAIRN_E_NOMEM;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        const char *p = archive_entry_pathname(e);
        mode_t type = archive_entry_filetype(e);
        const char *hl = archive_entry_hardlink(e);
        if (type == AE_IFDIR && hl == NULL)
            continue;
        if (ar->n >= ARCHIVE_MAX_ENTRIES) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "more than %d files in the archive",
                               ARCHIVE_MAX_ENTRIES);
            break;
        }
        if (p == NULL || strlen(p) >= ARCHIVE_MAX_PATH) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "archive entry with a bad or overlong name");
            break;
        }
        if (ar->n == ar->alloc) {
            size_t na = ar->alloc ? ar->alloc * 2 : 32;
            struct lentry *ne = realloc(ar->e, na * sizeof *ne);
            if (ne == NULL) {
                rc = CAIRN_E_NOMEM;
                break;
            }
            ar->e = ne;
            ar->alloc = na;
        }
        struct lentry *le = &ar->e[ar->n];
        memset(le, 0, sizeof *le);
        if ((le->path = path_norm(NULL, p)) == NULL) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "archive entry \"%s\" leaves the archive", p);
            break;
        }
        ar->n++;
        if (hl || type == AE_IFLNK) {
            /* docker save links layers that several images share;
             * symlink targets are relative to the link's directory,
             * hard link targets to the archive root. */
            char *dir = NULL;
            if (!hl) {
                dir = strdup(le->path);
                char *s = dir ? strrchr(dir, '/') : NULL;
                if (dir && s)
                    *s = '\0';
                else if (dir)
                    dir[0] = '\0';
            }
            const char *t = hl ? hl : archive_entry_symlink(e);
            le->link = t ? path_norm(dir && dir[0] ? dir : NULL, t) : NULL;
            free(dir);
            if (le->link == NULL) {
                rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                                   "archive link \"%s\" leaves the archive", p);
                break;
            }
            continue;
        }
        if (type != AE_IFREG)
            continue;
        int fd;
        if ((rc = tmp_create(tmpdir, "load-", &le->tmp, &fd, err)))
            break;
        struct ck_sha256 *h = NULL;
        if ((rc = ck_sha256_new(&h)) != 0) {
            close(fd);
            break;
        }
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, COPY_CHUNK);
            if (n < 0) {
                rc = cairn_err_set(err, CAIRN_E_CORRUPT, "%s: %s", p,
                                   archive_error_string(a));
                break;
            }
            if (n == 0)
                break;
            if ((rc = ck_sha256_update(h, buf, (size_t)n)))
                break;
            if ((rc = cairn_write_all(fd, buf, (size_t)n))) {
                cairn_err_set(err, rc, "writing to %s: %s", tmpdir,
                              strerror(-rc));
                break;
            }
            le->size += n;
        }
        uint8_t bin[CK_SHA256_LEN];
        char hex[CK_SHA256_HEX_LEN + 1];
        if (rc == 0 && (rc = ck_sha256_final(h, bin)) == 0) {
            ck_hex_encode(bin, hex);
            snprintf(le->digest, sizeof le->digest, "sha256:%s", hex);
        }
        ck_sha256_free(h);
        if (close(fd) != 0 && rc == 0)
            rc = cairn_err_set(err, -errno, "writing to %s: %s", tmpdir,
                               strerror(errno));
        if (rc)
            break;
    }
    if (rc == 0 && r != ARCHIVE_EOF)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT, "not a readable tar: %s",
                           archive_error_string(a));
    free(buf);
    return rc;
}

static struct lentry *load_find(struct larchive *ar, const char *path)
{
    char *norm = path_norm(NULL, path);
    if (norm == NULL)
        return NULL;
    struct lentry *found = NULL;
    for (int hop = 0; hop < ARCHIVE_MAX_LINKS; hop++) {
        found = NULL;
        /* The last entry of a name wins, as when tar extracts. */
        for (size_t i = ar->n; i-- > 0;) {
            if (strcmp(ar->e[i].path, norm) == 0) {
                found = &ar->e[i];
                break;
            }
        }
        if (found == NULL || found->link == NULL)
            break;
        char *next = strdup(found->link);
        free(norm);
        if ((norm = next) == NULL)
            return NULL;
        found = NULL;
    }
    free(norm);
    return found && found->tmp ? found : NULL;
}

/* The archive file of a blob, checked against its descriptor. */
static int load_blob(struct larchive *ar, const char *digest, int64_t size,
                     struct lentry **out, struct cairn_err *err)
{
    char path[CAIRN_DIGEST_STR_LEN + 16];
    if (!cairn_image_digest_valid(digest))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "unsupported digest \"%.80s\"", digest);
    snprintf(path, sizeof path, "blobs/sha256/%s", digest + 7);
    struct lentry *le = load_find(ar, path);
    if (le == NULL)
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "blob %s is missing from the archive", digest);
    if (strcmp(le->digest, digest) != 0)
        return cairn_err_set(err, CAIRN_E_DIGEST,
                             "blob %s: content has digest %s", digest,
                             le->digest);
    if (size >= 0 && le->size != size)
        return cairn_err_set(err, CAIRN_E_DIGEST,
                             "blob %s: %lld bytes, the descriptor says %lld",
                             digest, (long long)le->size, (long long)size);
    *out = le;
    return 0;
}

/* Reads and parses the config of im, then checks every layer's diff_id
 * against it by decompressing the layer. */
static int load_verify_image(struct limage *im, struct cairn_err *err)
{
    char *json = NULL;
    size_t len;
    struct cairn_image_config cfg;
    int rc =
        read_small(im->config->tmp, CAIRN_IMAGE_MAX_JSON, &json, &len, err);
    if (rc == 0)
        rc = cairn_image_config_parse(json, len, &cfg, err);
    free(json);
    if (rc) {
        cairn_err_prefix(err, "config %s", im->config->digest);
        return rc;
    }
    im->created = cfg.created;
    if (cfg.ndiff_ids != im->m.nlayers) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "image %s has %zu layers but its config lists "
                           "%zu diff_ids",
                           im->config->digest, im->m.nlayers, cfg.ndiff_ids);
        goto out;
    }
    for (size_t i = 0; i < im->m.nlayers; i++) {
        struct cairn_layer_desc d;
        memset(&d, 0, sizeof d);
        if ((rc = cairn_layer_digest_file(im->layers[i]->tmp, &d, err))) {
            cairn_err_prefix(err, "layer %s", im->layers[i]->path);
            goto out;
        }
        if (strcmp(d.digest, im->layers[i]->digest) != 0 ||
            strcmp(d.diff_id, cfg.diff_ids[i]) != 0) {
            rc = cairn_err_set(err, CAIRN_E_DIGEST,
                               "layer %s: uncompressed digest %s, but the "
                               "config says %s",
                               im->layers[i]->path, d.diff_id, cfg.diff_ids[i]);
            goto out;
        }
        snprintf(im->m.layers[i].diff_id, sizeof im->m.layers[i].diff_id, "%s",
                 d.diff_id);
    }
out:
    cairn_image_config_clear(&cfg);
    return rc;
}

/* Picks this platform's manifest out of a multi-platform index. */
static json_t *load_pick_platform(json_t *manifests)
{
    const char *arch, *variant;
    host_platform(&arch, &variant);
    size_t i;
    json_t *d, *only = NULL;
    size_t candidates = 0;
    json_array_foreach(manifests, i, d)
    {
        json_t *p = json_object_get(d, "platform");
        const char *os = json_string_value(json_object_get(p, "os"));
        const char *ar = json_string_value(json_object_get(p, "architecture"));
        if (p == NULL) {
            only = d;
            candidates++;
            continue;
        }
        /* BuildKit's attestations are "unknown/unknown": not images. */
        if (os && strcmp(os, "unknown") == 0)
            continue;
        candidates++;
        only = d;
        if (os && ar && strcmp(os, "linux") == 0 && strcmp(ar, arch) == 0)
            return d;
    }
    return candidates == 1 ? only : NULL;
}

/* Names for an image of an OCI archive: Docker's manifest.json RepoTags
 * when it lists the same config, else the containerd name, else a
 * ref.name that is a full reference ("name:tag"); a bare tag names
 * nothing we could store. */
static int load_oci_names(json_t *docker_manifest, json_t *desc,
                          struct limage *im, struct cairn_err *err)
{
    size_t i;
    json_t *item;
    char cfgpath[CAIRN_DIGEST_STR_LEN + 16];
    snprintf(cfgpath, sizeof cfgpath, "blobs/sha256/%s",
             im->m.config_digest + 7);
    bool found = false;
    json_array_foreach(docker_manifest, i, item)
    {
        const char *c = json_string_value(json_object_get(item, "Config"));
        char *norm = c ? path_norm(NULL, c) : NULL;
        bool same = norm && strcmp(norm, cfgpath) == 0;
        free(norm);
        if (!same)
            continue;
        found = true;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(item, "RepoTags"), k, t)
        {
            int rc;
            if (json_is_string(t) &&
                (rc = push_ref(&im->tags, json_string_value(t), err)))
                return rc;
        }
    }
    if (found)
        return 0;
    json_t *ann = json_object_get(desc, "annotations");
    const char *cn =
        json_string_value(json_object_get(ann, ANNOT_CONTAINERD_NAME));
    const char *rn = json_string_value(json_object_get(ann, ANNOT_REF_NAME));
    if (cn && strchr(cn, '@') == NULL)
        return push_ref(&im->tags, cn, err);
    if (rn && (strchr(rn, ':') || strchr(rn, '/')) && strchr(rn, '@') == NULL)
        return push_ref(&im->tags, rn, err);
    return 0;
}

static int load_json_file(struct lentry *le, json_t **out,
                          struct cairn_err *err)
{
    char *data;
    size_t len;
    int rc = read_small(le->tmp, CAIRN_IMAGE_MAX_JSON, &data, &len, err);
    if (rc)
        return rc;
    json_error_t jerr;
    *out = json_loadb(data, len, 0, &jerr);
    free(data);
    if (*out == NULL)
        return cairn_err_set(err, CAIRN_E_PARSE, "%s: invalid JSON: %s",
                             le->path, jerr.text);
    return 0;
}

/* Reads the images of an OCI layout (index.json). */
static int load_oci(struct larchive *ar, json_t *index, json_t *dmanifest,
                    struct limage **out, size_t *nout, struct cairn_err *err)
{
    json_t *mans = json_object_get(index, "manifests");
    if (!json_is_array(mans))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "index.json: manifests: expected an array");
    size_t n = json_array_size(mans);
    struct limage *ims = calloc(n ? n : 1, sizeof *ims);
    if (ims == NULL)
        return CAIRN_E_NOMEM;
    size_t nims = 0;
    int rc = 0;
    json_t *nested = NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *d = json_array_get(mans, i);
        json_t *named = d;
        const char *mt = json_string_value(json_object_get(d, "mediaType"));
        struct lentry *le;
        /* A multi-platform index: follow it one level to this platform's
         * manifest; the name stays on the outer descriptor. */
        if (mt && (strcmp(mt, CAIRN_MEDIA_INDEX) == 0 ||
                   strcmp(mt, "application/vnd.docker.distribution."
                              "manifest.list.v2+json") == 0)) {
            if ((rc = load_blob(ar,
                                json_string_value(json_object_get(d, "digest")),
                                json_integer_value(json_object_get(d, "size")),
                                &le, err)) ||
                (rc = load_json_file(le, &nested, err)))
                break;
            d = load_pick_platform(json_object_get(nested, "manifests"));
            if (d == NULL) {
                rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                                   "index %s has no image for linux/this "
                                   "machine",
                                   le->digest);
                break;
            }
        }
        struct limage *im = &ims[nims++];
        cairn_strvec_init(&im->tags);
        json_t *dg = json_object_get(d, "digest");
        json_t *sz = json_object_get(d, "size");
        if (!json_is_string(dg) || !json_is_integer(sz)) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "index.json: manifests[%zu]: needs digest "
                               "and size",
                               i);
            break;
        }
        if ((rc = load_blob(ar, json_string_value(dg), json_integer_value(sz),
                            &le, err)) ||
            (rc = read_small(le->tmp, CAIRN_IMAGE_MAX_JSON, &im->manifest_json,
                             &im->manifest_len, err)) ||
            (rc = cairn_manifest_parse(im->manifest_json, im->manifest_len,
                                       &im->m, err)) ||
            (rc = load_blob(ar, im->m.config_digest, im->m.config_size,
                            &im->config, err)))
            break;
        im->layers =
            calloc(im->m.nlayers ? im->m.nlayers : 1, sizeof *im->layers);
        if (im->layers == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        for (size_t l = 0; rc == 0 && l < im->m.nlayers; l++)
            rc = load_blob(ar, im->m.layers[l].digest, im->m.layers[l].size,
                           &im->layers[l], err);
        if (rc == 0 && (rc = load_verify_image(im, err)) == 0)
            rc = load_oci_names(dmanifest, named, im, err);
        json_decref(nested);
        nested = NULL;
    }
    json_decref(nested);
    if (rc) {
        for (size_t i = 0; i < nims; i++)
            limage_clear(&ims[i]);
        free(ims);
        return rc;
    }
    *out = ims;
    *nout = nims;
    return 0;
}

/* Reads the images of a docker save archive (manifest.json) that has no
 * OCI index: an OCI manifest is made for each, over the same config and
 * layer bytes, so the image ID (the config digest) is Docker's. */
static int load_docker(struct larchive *ar, json_t *dman, struct limage **out,
                       size_t *nout, struct cairn_err *err)
{
    if (!json_is_array(dman))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "manifest.json: expected an array");
    size_t n = json_array_size(dman);
    struct limage *ims = calloc(n ? n : 1, sizeof *ims);
    if (ims == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    size_t nims = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *item = json_array_get(dman, i);
        struct limage *im = &ims[nims++];
        cairn_strvec_init(&im->tags);
        const char *cfg = json_string_value(json_object_get(item, "Config"));
        json_t *layers = json_object_get(item, "Layers");
        if (cfg == NULL || !json_is_array(layers)) {
            rc =
                cairn_err_set(err, CAIRN_E_PARSE,
                              "manifest.json[%zu]: needs Config and Layers", i);
            break;
        }
        if ((im->config = load_find(ar, cfg)) == NULL) {
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "%s is missing from the archive", cfg);
            break;
        }
        /* The file name of a config, "<hex>.json" or blobs/sha256/<hex>,
         * is its digest: check it like any other. */
        const char *base = strrchr(im->config->path, '/');
        base = base ? base + 1 : im->config->path;
        if (strlen(base) >= CK_SHA256_HEX_LEN &&
            strspn(base, "0123456789abcdef") == CK_SHA256_HEX_LEN &&
            strncmp(base, im->config->digest + 7, CK_SHA256_HEX_LEN) != 0) {
            rc = cairn_err_set(err, CAIRN_E_DIGEST, "%s: content has digest %s",
                               cfg, im->config->digest);
            break;
        }
        size_t nl = json_array_size(layers);
        im->m.layers = calloc(nl ? nl : 1, sizeof *im->m.layers);
        im->layers = calloc(nl ? nl : 1, sizeof *im->layers);
        if (im->m.layers == NULL || im->layers == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        for (size_t l = 0; rc == 0 && l < nl; l++) {
            const char *lp = json_string_value(json_array_get(layers, l));
            struct lentry *le = lp ? load_find(ar, lp) : NULL;
            if (le == NULL) {
                rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                                   "layer %s is missing from the archive",
                                   lp ? lp : "(not a string)");
                break;
            }
            const char *lb = strrchr(le->path, '/');
            lb = lb ? lb + 1 : le->path;
            if (strncmp(le->path, "blobs/sha256/", 13) == 0 &&
                strcmp(lb, le->digest + 7) != 0) {
                rc = cairn_err_set(err, CAIRN_E_DIGEST,
                                   "%s: content has digest %s", lp, le->digest);
                break;
            }
            im->layers[l] = le;
            im->m.nlayers = l + 1;
            struct cairn_layer_desc *d = &im->m.layers[l];
            snprintf(d->digest, sizeof d->digest, "%s", le->digest);
            d->size = le->size;
            d->media_type = layer_media_sniff(le->tmp);
        }
        if (rc)
            break;
        im->m.config_digest = strdup(im->config->digest);
        im->m.config_media_type = strdup(CAIRN_MEDIA_CONFIG);
        im->m.media_type = strdup(CAIRN_MEDIA_MANIFEST);
        im->m.config_size = im->config->size;
        if (!im->m.config_digest || !im->m.config_media_type ||
            !im->m.media_type) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        if ((rc = load_verify_image(im, err)))
            break;
        if ((rc = cairn_manifest_to_json(&im->m, &im->manifest_json,
                                         &im->manifest_len)))
            break;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(item, "RepoTags"), k, t)
        {
            if (json_is_string(t) &&
                (rc = push_ref(&im->tags, json_string_value(t), err)))
                break;
        }
    }
    if (rc) {
        if (rc == CAIRN_E_NOMEM)
            cairn_err_set(err, rc, "%s", cairn_strerror(rc));
        for (size_t i = 0; i < nims; i++)
            limage_clear(&ims[i]);
        free(ims);
        return rc;
    }
    *out = ims;
    *nout = nims;
    return 0;
}

/* Moves a verified file into the store (once; later users find it). */
static int load_store_blob(struct cairn_store *st, struct lentry *le,
                           struct cairn_err *err)
{
    if (le->tmp == NULL)
        return 0;
    int rc = cairn_store_blob_add_file(st, le->tmp, le->digest, err);
    if (rc == 0) {
        free(le->tmp);
        le->tmp = NULL;
    }
    return rc;
}

static void load_usage(FILE *out)
{
    fprintf(out, "Usage: cairn load [-i FILE] [-q]\n\n"
                 "Load images from a tar archive made by docker save (any "
                 "version), cairn save,\nor an OCI image layout archive "
                 "(skopeo oci-archive:). Reads standard input\nwithout -i. "
                 "Every digest is verified before anything is stored.\n\n"
                 "Options:\n"
                 "  -i, --input FILE   read from FILE (\"-\": standard input)\n"
                 "  -q, --quiet        print nothing but errors\n");
}

int cairn_cmd_load(int argc, char **argv)
{
    const char *input = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            load_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-q") == 0 ||
                   strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--input", "-i", &missing))) {
            input = v;
        } else {
            fprintf(stderr, "cairn load: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unexpected argument",
                    argv[i]);
            load_usage(stderr);
            return 2;
        }
    }
    if ((input == NULL || strcmp(input, "-") == 0) && isatty(0)) {
        fprintf(stderr, "cairn load: no archive: use -i FILE or redirect "
                        "standard input\n");
        return 2;
    }
    const char *shown = input && strcmp(input, "-") ? input : "-";

    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    struct larchive ar;
    memset(&ar, 0, sizeof ar);
    struct limage *ims = NULL;
    size_t nims = 0;
    json_t *index = NULL, *dman = NULL;
    struct archive *a = NULL;
    int status = 1, rc;
    if ((rc = cairn_cli_store_open(&st, &err)))
        goto fail;
    if ((a = archive_read_new()) == NULL) {
        rc = CAIRN_E_NOMEM;
        goto fail;
    }
    /* docker save output is a plain tar, but people gzip it. */
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if ((strcmp(shown, "-") == 0 ? archive_read_open_fd(a, 0, COPY_CHUNK)
                                 : archive_read_open_filename(
                                       a, input, COPY_CHUNK)) != ARCHIVE_OK) {
        rc =
            cairn_err_set(&err, CAIRN_E_ARCHIVE, "%s", archive_error_string(a));
        goto fail;
    }
    if ((rc = load_extract(a, cairn_store_tmpdir(st), &ar, &err)))
        goto fail;

    struct lentry *idx = load_find(&ar, "index.json");
    struct lentry *man = load_find(&ar, "manifest.json");
    if ((man && (rc = load_json_file(man, &dman, &err))) ||
        (idx && (rc = load_json_file(idx, &index, &err))))
        goto fail;
    /* With both (Docker 25+, cairn save), the OCI side is read: it keeps
     * the manifest digests; manifest.json still supplies the names. */
    if (idx)
        rc = load_oci(&ar, index, dman, &ims, &nims, &err);
    else if (man)
        rc = load_docker(&ar, dman, &ims, &nims, &err);
    else
        rc = cairn_err_set(&err, CAIRN_E_CORRUPT,
                           "neither manifest.json nor index.json: not a "
                           "docker save or OCI archive");
    if (rc)
        goto fail;
    if (nims == 0) {
        rc = cairn_err_set(&err, CAIRN_E_NOTFOUND, "no images in the archive");
        goto fail;
    }

    /* Everything is verified; from here on the store changes. */
    for (size_t i = 0; i < nims; i++) {
        struct limage *im = &ims[i];
        char mdig[CAIRN_DIGEST_STR_LEN];
        if ((rc = load_store_blob(st, im->config, &err)))
            goto fail;
        for (size_t l = 0; l < im->m.nlayers; l++)
            if ((rc = load_store_blob(st, im->layers[l], &err)))
                goto fail;
        if ((rc =
                 image_commit(st, im->manifest_json, im->manifest_len, &im->m,
                              im->created, im->tags.v, im->tags.n, mdig, &err)))
            goto fail;
        if (quiet)
            continue;
        for (size_t t = 0; t < im->tags.n; t++)
            printf("Loaded image: %s\n", im->tags.v[t]);
        if (im->tags.n == 0)
            printf("Loaded image ID: %s\n", im->m.config_digest);
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "cairn load: %s: %s\n", shown,
            err.msg[0] ? err.msg : cairn_strerror(rc));
out:
    for (size_t i = 0; i < nims; i++)
        limage_clear(&ims[i]);
    free(ims);
    json_decref(index);
    json_decref(dman);
    if (a)
        archive_read_free(a);
    larchive_free(&ar);
    cairn_store_close(st);
    return status;
}
