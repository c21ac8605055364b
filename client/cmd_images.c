/* Stub: replaced by the module that implements these commands. */
#include "commands.h"

#include <stdio.h>

int cairn_cmd_images(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn images: not implemented yet\n");
    return 1;
}

int cairn_cmd_tag(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn tag: not implemented yet\n");
    return 1;
}

int cairn_cmd_rmi(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn rmi: not implemented yet\n");
    return 1;
}

int cairn_cmd_prune(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn prune: not implemented yet\n");
    return 1;
}

int cairn_cmd_du(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cairn du: not implemented yet\n");
    return 1;
}
