/* cairn import: a rootfs tarball into a one-layer image, as `docker
 * import` does. The uncompressed tar bytes are kept exactly (Docker keeps
 * them too, so the diff_id is the same as Docker's for the same file); a
 * gzip input is stored as it is, anything else is gzipped. --change
 * applies Dockerfile instructions to the config.
 */
#include "client/cmd/commands.h"

#include "client/cmd/archive.h"

#include "client/cmd/cli.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "cachekey/dockerfile.h"
#include "cachekey/expand.h"
#include "client/store/image.h"
#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* ENV or LABEL: key value pairs, both words expanded. */
static int change_pairs(struct cairn_image_config *c, const struct ck_instr *in,
                        char esc, struct cairn_err *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i + 1 < in->nargs; i += 2) {
        char *key = NULL, *one = NULL;
        rc = ck_expand_word(in->args[i], esc, env_lookup, c, &key, err);
        if (rc == 0)
            rc = ck_expand_word(in->args[i + 1], esc, env_lookup, c, &one,
                                err);
        if (rc == 0)
            rc = in->kind == CK_INSTR_ENV
                     ? cairn_image_config_set_env(c, key, one)
                     : cairn_image_config_set_label(c, key, one);
        free(key);
        free(one);
    }
    return rc;
}

/* EXPOSE or VOLUME: each expanded word joins the set. */
static int change_sets(struct cairn_image_config *c, const struct ck_instr *in,
                       char esc, struct cairn_err *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < in->nargs; i++) {
        char **words = NULL;
        size_t nwords = 0;
        rc = ck_expand_words(in->args[i], esc, env_lookup, c, &words, &nwords,
                             err);
        for (size_t j = 0; rc == 0 && j < nwords; j++)
            rc = in->kind == CK_INSTR_EXPOSE
                     ? change_expose(c, words[j], err)
                     : set_add(&c->volumes, &c->nvolumes, words[j]);
        ck_expand_words_free(words, nwords);
    }
    return rc;
}

/* docker import accepts ONBUILD: the trigger is stored as written and
 * runs when a build uses this image. */
static int change_onbuild(struct cairn_image_config *c,
                          const struct ck_instr *in, struct cairn_err *err)
{
    if (in->sub == NULL || in->sub->original == NULL)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "ONBUILD needs an instruction");
    /* In order, unlike the sets above: triggers run in turn. */
    struct cairn_strvec sv = {.v = c->onbuild, .n = c->nonbuild,
                              .alloc = c->nonbuild + 1};
    if (sv.v == NULL)
        sv.alloc = 0;
    int rc = cairn_strvec_push(&sv, in->sub->original);
    c->onbuild = sv.v;
    c->nonbuild = sv.n;
    return rc;
}

/* WORKDIR one (owned: taken or freed). A relative WORKDIR continues from
 * the previous one. */
static int change_workdir(struct cairn_image_config *c, char *one)
{
    int rc;
    struct cairn_buf b;
    cairn_buf_init(&b, ARCHIVE_MAX_PATH);
    if (one[0] == '/' || c->workdir == NULL) {
        free(c->workdir);
        if (one[0] == '/') {
            c->workdir = one;
            cairn_buf_free(&b);
            return 0;
        }
        rc = cairn_buf_printf(&b, "/%s", one);
        c->workdir = rc ? NULL : cairn_buf_take(&b);
    } else {
        size_t wl = strlen(c->workdir);
        rc = cairn_buf_printf(&b, "%s%s%s", c->workdir,
                              wl && c->workdir[wl - 1] == '/' ? "" : "/", one);
        if (rc == 0) {
            free(c->workdir);
            c->workdir = cairn_buf_take(&b);
        }
    }
    free(one);
    cairn_buf_free(&b);
    return rc;
}

/* USER, WORKDIR or STOPSIGNAL: one expanded word. */
static int change_scalar(struct cairn_image_config *c,
                         const struct ck_instr *in, char esc,
                         struct cairn_err *err)
{
    char *one = NULL;
    int rc = ck_expand_word(in->nargs ? in->args[0] : "", esc, env_lookup, c,
                            &one, err);
    if (rc)
        return rc;
    if (in->kind == CK_INSTR_USER) {
        free(c->user);
        c->user = one;
    } else if (in->kind == CK_INSTR_STOPSIGNAL) {
        free(c->stop_signal);
        c->stop_signal = one;
    } else {
        rc = change_workdir(c, one);
    }
    return rc;
}

/* Applies one --change line to the config. */
static int change_apply(struct cairn_image_config *c, const char *text,
                        struct cairn_err *err)
{
    struct ck_dockerfile *df = NULL;
    int rc = ck_dockerfile_parse("--change", text, strlen(text), &df, err);
    if (rc)
        return rc;
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
            rc = change_pairs(c, in, esc, err);
            break;
        case CK_INSTR_EXPOSE:
        case CK_INSTR_VOLUME:
            rc = change_sets(c, in, esc, err);
            break;
        case CK_INSTR_ONBUILD:
            rc = change_onbuild(c, in, err);
            break;
        case CK_INSTR_USER:
        case CK_INSTR_WORKDIR:
        case CK_INSTR_STOPSIGNAL:
            rc = change_scalar(c, in, esc, err);
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

/* Compresses src (a tar, or a tar in any compression libarchive reads)
 * into a new gzip layer in dir, the tar bytes kept exactly (raw format in,
 * raw bytes into the layer writer: no tar re-encoding). The layer
 * writer's gzip is the build's: blocks deflated on every core, the same
 * bytes whatever their number, and diff_id and digest hashed in the same
 * pass (*desc). */
static int import_gzip(const char *src, const char *dir, char **out,
                       struct cairn_layer_desc *desc, struct cairn_err *err)
{
    struct cairn_layer_opts lo = {.compression = CAIRN_COMPRESS_GZIP,
                                  .source_date_epoch = -1};
    struct cairn_layer_writer *w = NULL;
    int rc = cairn_layer_writer_new(dir, &lo, &w, err);
    if (rc)
        return rc;
    struct archive *in = archive_read_new();
    char *buf = malloc(COPY_CHUNK);
    if (!in || !buf) {
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
    for (;;) {
        la_ssize_t n = archive_read_data(in, buf, COPY_CHUNK);
        if (n < 0) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT, "%s",
                               archive_error_string(in));
            goto out;
        }
        if (n == 0)
            break;
        if ((rc = cairn_layer_add_raw(w, buf, (size_t)n, err)) != 0)
            goto out;
    }
    rc = cairn_layer_writer_finish(w, desc, out, err);
    w = NULL; /* freed by finish in every case */
out:
    cairn_layer_writer_abort(w);
    archive_read_free(in);
    free(buf);
    return rc;
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

/* Reads the command line into changes, pos and *message. Returns -1 to
 * go on, else the exit status (0 after --help, 2 for bad usage). */
static int import_args(int argc, char **argv, struct cairn_strvec *changes,
                       struct cairn_strvec *pos, const char **message)
{
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            import_usage(stdout);
            return 0;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--change", "-c",
                                            &missing))) {
            if (cairn_strvec_push(changes, v))
                return 2;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--message",
                                            "-m", &missing))) {
            *message = v;
        } else if (missing || (argv[i][0] == '-' && argv[i][1] != '\0')) {
            fprintf(stderr, "cairn import: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            import_usage(stderr);
            return 2;
        } else if (cairn_strvec_push(pos, argv[i])) {
            return 2;
        }
    }
    if (pos->n < 1 || pos->n > 2) {
        import_usage(stderr);
        return 2;
    }
    return -1;
}

/* The image config before the layer: this host's platform, the creation
 * time (SOURCE_DATE_EPOCH makes imports reproducible, as it does builds)
 * and the --change lines. Done first: a typo should fail before a large
 * file is read. */
static int import_config_init(struct cairn_image_config *cfg,
                              const struct cairn_strvec *changes,
                              struct cairn_err *err)
{
    const char *arch, *variant;
    cairn_archive_host_platform(&arch, &variant);
    int64_t now = (int64_t)time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde != NULL && sde[0] != '\0') {
        char *end = NULL;
        long long v = strtoll(sde, &end, 10);
        if (*end == '\0' && v >= 0)
            now = v;
    }
    cfg->created = now;
    if ((cfg->architecture = strdup(arch)) == NULL ||
        (variant && (cfg->variant = strdup(variant)) == NULL) ||
        (cfg->os = strdup("linux")) == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < changes->n; i++)
        rc = change_apply(cfg, changes->v[i], err);
    return rc;
}

/* The layer from src ("-": standard input): copied into the store's tmp/
 * first (standard input cannot be read twice, and a gzip input becomes
 * the blob by rename), checked to be a tar, gzipped when it is not.
 * *blob (malloc'd) names the gzip blob file in tmp/, desc describes it. */
static int import_layer(struct cairn_store *st, const char *src, char **blob,
                        struct cairn_layer_desc *desc, struct cairn_err *err)
{
    char *tmp = NULL, *gz = NULL;
    int fd = -1, in = 0, rc;
    if (strcmp(src, "-") != 0 && (in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return cairn_err_set(err, -errno, "%s: %s", src, strerror(errno));
    char dig[CAIRN_DIGEST_STR_LEN];
    int64_t size;
    if ((rc = cairn_archive_tmp_create(cairn_store_tmpdir(st), "import-",
                                       &tmp, &fd, err)) ||
        (rc = copy_hash(in, fd, dig, &size, err))) {
        cairn_err_prefix(err, "%s", src);
        goto out;
    }
    close(fd);
    fd = -1;
    if ((rc = import_check_tar(tmp, src, err)))
        goto out;
    if (strcmp(cairn_archive_media_sniff(tmp), CAIRN_MEDIA_LAYER_GZIP) == 0) {
        /* gzip input is the blob as it is: its bytes are the ones Docker
         * would store, so only its digests are computed. */
        gz = tmp;
        tmp = NULL;
        rc = cairn_layer_digest_file(gz, desc, err);
    } else {
        rc = import_gzip(tmp, cairn_store_tmpdir(st), &gz, desc, err);
    }
    if (rc) {
        cairn_err_prefix(err, "%s", src);
        goto out;
    }
    desc->media_type = CAIRN_MEDIA_LAYER_GZIP;
    *blob = gz;
    gz = NULL;
out:
    if (fd >= 0)
        close(fd);
    if (in > 0)
        close(in);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (gz) {
        unlink(gz);
        free(gz);
    }
    return rc;
}

/* The config's rootfs and history for the one layer: docker import's
 * history entry, a comment and no created_by. */
static int import_history(struct cairn_image_config *cfg,
                          const struct cairn_layer_desc *desc,
                          const char *message, const char *src,
                          struct cairn_err *err)
{
    cfg->diff_ids = calloc(2, sizeof *cfg->diff_ids);
    if (cfg->diff_ids == NULL ||
        (cfg->diff_ids[0] = strdup(desc->diff_id)) == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    cfg->ndiff_ids = 1;
    struct cairn_buf comment;
    cairn_buf_init(&comment, 0);
    if (cairn_image_config_add_history(cfg, cfg->created, NULL, false) ||
        (message ? cairn_buf_puts(&comment, message)
                 : cairn_buf_printf(&comment, "Imported from %s", src)) ||
        (cfg->history[0].comment = cairn_buf_take(&comment)) == NULL) {
        cairn_buf_free(&comment);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    return 0;
}

int cairn_cmd_import(int argc, char **argv)
{
    struct cairn_strvec changes, pos;
    cairn_strvec_init(&changes);
    cairn_strvec_init(&pos);
    const char *message = NULL;
    int status = import_args(argc, argv, &changes, &pos, &message);
    if (status >= 0)
        goto args_out;
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
    char *blob = NULL, *cjson = NULL, *mjson = NULL;
    char tagbuf[ARCHIVE_MAX_PATH], *tag = NULL;
    size_t clen, mlen;
    int rc;
    status = 1;

    if ((rc = import_config_init(&cfg, &changes, &err)))
        goto fail;
    if (ref) {
        if ((rc = cairn_store_ref_normalize(ref, tagbuf, sizeof tagbuf, &err)))
            goto fail;
        tag = tagbuf;
    }
    if ((rc = cairn_cli_store_open(&st, &err)) ||
        (rc = import_layer(st, src, &blob, &desc, &err)) ||
        (rc = import_history(&cfg, &desc, message, src, &err)))
        goto fail;
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
    rc = cairn_archive_image_commit(st, mjson, mlen, &m, cfg.created, &tag,
                                    tag ? 1 : 0, mdig, &err);
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
