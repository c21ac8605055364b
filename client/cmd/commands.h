/* Entry points of the cairn subcommands. Each takes the arguments after the
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status. Each prints its own errors to stderr. */
#ifndef CAIRN_CLIENT_COMMANDS_H
#define CAIRN_CLIENT_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

int cairn_cmd_keys(int argc, char **argv);
int cairn_cmd_key(int argc, char **argv);
int cairn_cmd_images(int argc, char **argv);
int cairn_cmd_tag(int argc, char **argv);
int cairn_cmd_rmi(int argc, char **argv);
int cairn_cmd_prune(int argc, char **argv);
int cairn_cmd_du(int argc, char **argv);
int cairn_cmd_history(int argc, char **argv);
int cairn_cmd_inspect(int argc, char **argv);
int cairn_cmd_save(int argc, char **argv);
int cairn_cmd_import(int argc, char **argv);
int cairn_cmd_load(int argc, char **argv);
int cairn_cmd_pull(int argc, char **argv);
int cairn_cmd_push(int argc, char **argv);
int cairn_cmd_build(int argc, char **argv);
int cairn_cmd_cache(int argc, char **argv);
int cairn_cmd_builder(int argc, char **argv);
int cairn_cmd_login(int argc, char **argv);
int cairn_cmd_logout(int argc, char **argv);

/* Pushes the stored image name to dest (NULL: to name) as `cairn push`
 * does, printing its lines (only the pushed reference when quiet) and
 * its errors; returns the exit status. Shared with build --push. */
struct cairn_store;
int cairn_cmd_push_run(struct cairn_store *st, const char *name,
                       const char *dest, const char *const *insecure,
                       size_t ninsecure, bool allow_zstd, bool quiet);

#endif
