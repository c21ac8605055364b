/* cairn keys: prints the cache key of every instruction. */
#include "commands.h"

#include <stdio.h>

int cairn_cmd_keys(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn keys: not implemented yet\n");
    return 1;
}
