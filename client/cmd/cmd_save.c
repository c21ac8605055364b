/* cairn save: images out of the store into one tar archive.
 *
 * save writes what Docker 25+ writes: an OCI image layout (oci-layout,
 * index.json, blobs/sha256/...) and, in the same tar, Docker's
 * manifest.json whose Config and Layers point into blobs/sha256/. So one
 * file is both a docker-archive (docker load, skopeo docker-archive:) and
 * an oci-archive (skopeo oci-archive:, umoci after extraction). Blobs are
 * copied byte for byte from the store, so manifest and layer digests
 * survive the round trip; Docker and skopeo both decompress gzip layers
 * named in manifest.json, so the layers need no re-encoding.
 */
#include "client/cmd/commands.h"

#include "client/cmd/archive.h"

#include "client/cmd/cli.h"
#include "client/store/json.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
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
#include <time.h>
#include <unistd.h>

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

/* Reads the command line into names and *output. Returns -1 to go on,
 * else the exit status (0 after --help, 2 for bad usage, 1 out of
 * memory). */
static int save_args(int argc, char **argv, struct cairn_strvec *names,
                     const char **output)
{
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            save_usage(stdout);
            return 0;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--output", "-o",
                                            &missing))) {
            *output = v;
        } else if (missing || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            fprintf(stderr, "cairn save: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            save_usage(stderr);
            return 2;
        } else if (cairn_strvec_push(names, argv[i])) {
            return 1;
        }
    }
    if (names->n == 0) {
        save_usage(stderr);
        return 2;
    }
    if ((*output == NULL || strcmp(*output, "-") == 0) && isatty(1)) {
        fprintf(stderr, "cairn save: refusing to write an archive to a "
                        "terminal; use -o FILE or redirect\n");
        return 2;
    }
    return -1;
}

/* A file next to output (*tmp, malloc'd; *fd open on it), renamed over
 * output at the end, so a failed save never leaves a truncated archive
 * under the final name. CAIRN_E_NOMEM without err set. */
static int save_output_open(const char *output, char **tmp, int *fd,
                            struct cairn_err *err)
{
    char *dir = strdup(output);
    if (dir == NULL)
        return CAIRN_E_NOMEM;
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : dir) : ".";
    if (slash && slash != dir)
        *slash = '\0';
    int rc = cairn_archive_tmp_create(d, ".cairn-save-", tmp, fd, err);
    free(dir);
    if (rc)
        return rc;
    /* mkostemp makes 0600; the archive the user asked for gets the
     * mode any new file of theirs gets (0666 less the umask), as the
     * store's privacy is no reason to hide what they exported. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(*fd, 0666 & ~um) != 0)
        return cairn_err_set(err, -errno, "%s: %s", *tmp, strerror(errno));
    return 0;
}

int cairn_cmd_save(int argc, char **argv)
{
    const char *output = NULL;
    struct cairn_strvec names;
    cairn_strvec_init(&names);
    int arc = save_args(argc, argv, &names, &output);
    if (arc >= 0) {
        cairn_strvec_free(&names);
        return arc;
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
        rc = save_output_open(output, &tmp, &fd, &err);
        /* Out of memory before anything was said: exit 1 quietly, as
         * the other allocations here do. */
        if (rc == CAIRN_E_NOMEM && err.msg[0] == '\0')
            goto out;
        if (rc)
            goto fail;
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
