/* cairn pull: an image from a registry into the store
 * (client/registry/pull.h), printed as docker pull prints it. */
#include "client/cmd/commands.h"

#include "client/cmd/archive.h"
#include "client/cmd/cli.h"
#include "client/registry/pull.h"
#include "client/remote/config.h"
#include "client/registry/ref.h"
#include "client/store/store.h"
#include "common/strvec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pull_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn pull [OPTIONS] NAME[:TAG|@DIGEST]\n\n"
            "Download an image from a registry into the store.\n\n"
            "Options:\n"
            "      --platform OS/ARCH[/VARIANT]  the platform to pull from a "
            "multi-platform\n"
            "                                    image (default: linux and "
            "this machine)\n"
            "      --insecure-registry HOST[:PORT]  reach HOST over plain HTTP "
            "or TLS without\n"
            "                                    verification (repeatable; "
            "also\n"
            "                                    CAIRN_INSECURE_REGISTRIES)\n"
            "  -q, --quiet                       print only the image "
            "reference\n");
}

/* "linux/<this machine>" as docker defaults it. */
static void host_platform(char *buf, size_t len)
{
    const char *arch, *variant;
    cairn_archive_host_platform(&arch, &variant);
    snprintf(buf, len, "linux/%s%s%s", arch, variant ? "/" : "",
             variant ? variant : "");
}

int cairn_cmd_pull(int argc, char **argv)
{
    const char *name = NULL, *platform = NULL;
    bool quiet = false;
    struct cairn_strvec insecure;
    cairn_strvec_init(&insecure);
    int status = 2;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            pull_usage(stdout);
            status = 0;
            goto out;
        } else if (strcmp(argv[i], "-q") == 0 ||
                   strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--platform", NULL,
                                            &missing))) {
            platform = v;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i,
                                            "--insecure-registry", NULL,
                                            &missing))) {
            if (cairn_strvec_push(&insecure, v))
                goto out;
        } else if (!missing && argv[i][0] != '-' && name == NULL) {
            name = argv[i];
        } else {
            fprintf(stderr, "cairn pull: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unexpected argument",
                    argv[i]);
            pull_usage(stderr);
            goto out;
        }
    }
    if (name == NULL) {
        fprintf(stderr, "\"cairn pull\" requires exactly 1 argument.\n\n");
        pull_usage(stderr);
        goto out;
    }
    status = 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_reg_ref ref;
    struct cairn_reg_platform plat;
    char hostp[64];
    host_platform(hostp, sizeof hostp);
    /* The settings file's insecure-registry lines, then the environment. */
    struct cairn_config cfg;
    cairn_config_init(&cfg);
    int rc = cairn_config_load(&cfg, &err);
    for (size_t i = 0; rc == 0 && i < cfg.insecure.n; i++)
        rc = cairn_strvec_push(&insecure, cfg.insecure.v[i]);
    cairn_config_clear(&cfg);
    if (rc == 0)
        rc = cairn_cli_insecure_env(&insecure);
    if (rc == 0)
        rc = cairn_reg_ref_parse(name, &ref, &err);
    if (rc == 0)
        rc = cairn_reg_platform_parse(platform ? platform : hostp, &plat, &err);
    if (rc) {
        fprintf(stderr, "Error: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    /* Docker says so when the reference named neither tag nor digest. */
    const char *last = strrchr(name, '/');
    if (!quiet && !strchr(last ? last : name, ':') && !strchr(name, '@')) {
        printf("Using default tag: latest\n");
        fflush(stdout);
    }
    struct cairn_store *st = NULL;
    struct cairn_reg_opts topts = {.insecure = (const char *const *)insecure.v,
                                   .ninsecure = insecure.n};
    struct cairn_reg_pull_opts po = {
        .platform = &plat, .transport = &topts, .out = quiet ? NULL : stdout};
    struct cairn_reg_pull_result res;
    if ((rc = cairn_cli_store_open(&st, &err)) == 0)
        rc = cairn_reg_pull(st, &ref, &po, &res, &err);
    cairn_store_close(st);
    if (rc) {
        fprintf(stderr, "Error: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    char full[1024];
    cairn_reg_ref_format(&ref, full, sizeof full);
    printf("%s\n", full);
    status = 0;
out:
    cairn_strvec_free(&insecure);
    return status;
}
