/* Stub: replaced by the module that implements these commands. */
#include "commands.h"

#include <stdio.h>

int cairn_cmd_save(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn save: not implemented yet\n");
    return 1;
}

int cairn_cmd_import(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn import: not implemented yet\n");
    return 1;
}

int cairn_cmd_load(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn load: not implemented yet\n");
    return 1;
}
