/* cairn: the command-line entry point. Dispatches through one table of
 * subcommands; each subcommand parses its own options. */
#include "client/cmd/commands.h"

#include <stdio.h>
#include <string.h>

struct cairn_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct cairn_command commands[] = {
    {"build", cairn_cmd_build, "build an image from a Dockerfile"},
    {"keys", cairn_cmd_keys, "print the cache key of every instruction of a Dockerfile"},
    {"images", cairn_cmd_images, "list images"},
    {"history", cairn_cmd_history, "show the history of an image"},
    {"inspect", cairn_cmd_inspect, "show an image as JSON"},
    {"tag", cairn_cmd_tag, "give an image another name"},
    {"rmi", cairn_cmd_rmi, "remove images"},
    {"prune", cairn_cmd_prune, "remove dangling images and unused layers"},
    {"du", cairn_cmd_du, "show disk usage of the store"},
    {"save", cairn_cmd_save, "write images to a tar archive"},
    {"import", cairn_cmd_import, "make an image from a rootfs tarball"},
    {"load", cairn_cmd_load, "load images from a docker save or OCI archive"},
    {"pull", cairn_cmd_pull, "download an image from a registry"},
    {"push", cairn_cmd_push, "upload an image to a registry"},
    {"cache", cairn_cmd_cache, "check a remote cache (ping, stats)"},
    {"key", cairn_cmd_key, "make or show a key that signs cache entries"},
    {"builder", cairn_cmd_builder, "show or remove RUN --mount=type=cache directories"},
    {"login", cairn_cmd_login, "log in to a registry"},
    {"logout", cairn_cmd_logout, "log out from a registry"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: cairn [--help] [--version] COMMAND [ARGS]\n\n"
                 "A shared build-layer cache for Dockerfile builds.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nRun 'cairn COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("cairn %s (cache key scheme v1)\n", CAIRN_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cairn: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
