/* Stub: replaced by the module that implements these commands. */
#include "commands.h"

#include <stdio.h>

int cairn_cmd_history(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn history: not implemented yet\n");
    return 1;
}

int cairn_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn inspect: not implemented yet\n");
    return 1;
}
