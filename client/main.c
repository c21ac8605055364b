/* cairn: the command-line entry point. Dispatches through one table of
 * subcommands; each subcommand parses its own options. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct cairn_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct cairn_command commands[] = {
    {"keys", cairn_cmd_keys,
     "print the cache key of every instruction of a Dockerfile"},
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
