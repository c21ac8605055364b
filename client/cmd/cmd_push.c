/* cairn push: an image from the store to a registry
 * (client/registry/push.h), printed as docker push prints it. */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"
#include "client/registry/push.h"
#include "client/registry/ref.h"
#include "client/store/store.h"
#include "common/strvec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void push_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn push [OPTIONS] NAME[:TAG] [DEST[:TAG]]\n\n"
            "Upload an image from the store to a registry: to NAME's "
            "registry and\n"
            "repository, or to DEST's when given (no local tag is made).\n\n"
            "Options:\n"
            "      --allow-zstd                  push zstd layers as stored "
            "(docker 20.10\n"
            "                                    cannot pull them)\n"
            "      --insecure-registry HOST[:PORT]  reach HOST over plain HTTP "
            "or TLS without\n"
            "                                    verification (repeatable; "
            "also\n"
            "                                    CAIRN_INSECURE_REGISTRIES)\n"
            "  -q, --quiet                       print only what was pushed "
            "(NAME:TAG@DIGEST)\n");
}

int cairn_cmd_push_run(struct cairn_store *st, const char *name,
                       const char *dest, const char *const *insecure,
                       size_t ninsecure, bool allow_zstd, bool quiet)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_reg_ref ref;
    const char *to = dest ? dest : name;
    int rc = cairn_reg_ref_parse(to, &ref, &err);
    if (rc) {
        fprintf(stderr, "Error: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        return 1;
    }
    /* Docker says so when the reference named neither tag nor digest. */
    const char *last = strrchr(to, '/');
    if (!quiet && !strchr(last ? last : to, ':') && !strchr(to, '@')) {
        printf("Using default tag: latest\n");
        fflush(stdout);
    }
    struct cairn_reg_opts topts = {.insecure = insecure,
                                   .ninsecure = ninsecure};
    struct cairn_reg_push_opts po = {.transport = &topts,
                                     .out = quiet ? NULL : stdout,
                                     .allow_zstd = allow_zstd};
    /* CAIRN_PUSH_CHUNK (bytes, at least 1 MiB): the size over which a
     * blob goes in chunks, and the chunks' size. */
    const char *chunk = getenv("CAIRN_PUSH_CHUNK");
    if (chunk && *chunk) {
        char *end;
        long long v = strtoll(chunk, &end, 10);
        if (*end != '\0' || v < CAIRN_REG_PUSH_CHUNK_MIN) {
            fprintf(stderr, "Error: CAIRN_PUSH_CHUNK must be a number of "
                            "bytes, at least %lld\n",
                    (long long)CAIRN_REG_PUSH_CHUNK_MIN);
            return 1;
        }
        po.chunk = v;
    }
    struct cairn_reg_push_result res;
    rc = cairn_reg_push(st, name, &ref, &po, &res, &err);
    if (rc) {
        fprintf(stderr, "Error: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        return 1;
    }
    if (quiet) {
        char full[1024];
        cairn_reg_ref_format(&ref, full, sizeof full);
        printf("%s@%s\n", full, res.digest);
    }
    return 0;
}

int cairn_cmd_push(int argc, char **argv)
{
    const char *name = NULL, *dest = NULL;
    bool quiet = false, zstd = false;
    struct cairn_strvec insecure;
    cairn_strvec_init(&insecure);
    int status = 2;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            push_usage(stdout);
            status = 0;
            goto out;
        } else if (strcmp(argv[i], "-q") == 0 ||
                   strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--allow-zstd") == 0) {
            zstd = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i,
                                            "--insecure-registry", NULL,
                                            &missing))) {
            if (cairn_strvec_push(&insecure, v))
                goto out;
        } else if (!missing && argv[i][0] != '-' && name == NULL) {
            name = argv[i];
        } else if (!missing && argv[i][0] != '-' && dest == NULL) {
            dest = argv[i];
        } else {
            fprintf(stderr, "cairn push: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unexpected argument",
                    argv[i]);
            push_usage(stderr);
            goto out;
        }
    }
    if (name == NULL) {
        fprintf(stderr, "\"cairn push\" requires 1 or 2 arguments.\n\n");
        push_usage(stderr);
        goto out;
    }
    status = 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    int rc = cairn_cli_insecure_env(&insecure);
    if (rc == 0)
        rc = cairn_cli_store_open(&st, &err);
    if (rc)
        fprintf(stderr, "Error: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
    else
        status = cairn_cmd_push_run(st, name, dest,
                                    (const char *const *)insecure.v,
                                    insecure.n, zstd, quiet);
    cairn_store_close(st);
out:
    cairn_strvec_free(&insecure);
    return status;
}
