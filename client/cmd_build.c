/* Stub: replaced by the module that implements these commands. */
#include "commands.h"

#include <stdio.h>

int cairn_cmd_build(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn build: not implemented yet\n");
    return 1;
}
