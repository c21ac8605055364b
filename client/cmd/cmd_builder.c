/* cairn builder: the build cache that is not layers, i.e. RUN
 * --mount=type=cache directories (docker builder du / prune). */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"
#include "client/store/index.h"
#include "client/engine/runmount.h"

#include <stdio.h>
#include <string.h>

static void builder_usage(FILE *out)
{
    fprintf(out, "Usage: cairn builder du\n"
                 "       cairn builder prune [-f]\n\n"
                 "Shows or removes the RUN --mount=type=cache directories "
                 "of the store.\n"
                 "(cairn prune never removes them; a cache a build holds "
                 "is kept.)\n");
}

static int du_row(void *arg, const struct cairn_cachemount_info *info)
{
    uint64_t *total = arg;
    char size[32];
    cairn_cli_human_size(info->bytes, 4, size, sizeof size);
    printf("%-40.40s %-8s %s\n", info->id, info->in_use ? "true" : "false",
           size);
    *total += info->bytes;
    return 0;
}

int cairn_cmd_builder(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        builder_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char root[4096];
    if (cairn_root_path(root, sizeof root) != 0) {
        fprintf(stderr, "cairn builder: store path too long\n");
        return 1;
    }
    struct cairn_err err;
    cairn_err_clear(&err);
    if (strcmp(argv[1], "du") == 0 && argc == 2) {
        uint64_t total = 0;
        printf("%-40s %-8s %s\n", "CACHE ID", "IN USE", "SIZE");
        if (cairn_cachemounts_each(root, du_row, &total, &err) != 0) {
            fprintf(stderr, "cairn builder du: %s\n", err.msg);
            return 1;
        }
        char size[32];
        cairn_cli_human_size(total, 4, size, sizeof size);
        printf("Total: %s\n", size);
        return 0;
    }
    if (strcmp(argv[1], "prune") == 0) {
        bool force = argc == 3 && (strcmp(argv[2], "-f") == 0 ||
                                   strcmp(argv[2], "--force") == 0);
        if (argc > 3 || (argc == 3 && !force)) {
            builder_usage(stderr);
            return 2;
        }
        if (!force) {
            printf("WARNING! This will remove all RUN --mount=type=cache "
                   "directories.\nAre you sure you want to continue? [y/N] ");
            fflush(stdout);
            char line[64];
            if (fgets(line, sizeof line, stdin) == NULL ||
                (line[0] != 'y' && line[0] != 'Y')) {
                printf("\n");
                return 0;
            }
        }
        uint64_t freed = 0;
        unsigned busy = 0;
        if (cairn_cachemounts_prune(root, &freed, &busy, &err) != 0) {
            fprintf(stderr, "cairn builder prune: %s\n", err.msg);
            return 1;
        }
        if (busy)
            printf("%u cache mount%s in use by a build, kept\n", busy,
                   busy == 1 ? "" : "s");
        char size[32];
        cairn_cli_human_size(freed, 4, size, sizeof size);
        printf("Total reclaimed space: %s\n", size);
        return 0;
    }
    builder_usage(stderr);
    return 2;
}
