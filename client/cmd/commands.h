/* Entry points of the cairn subcommands. Each takes the arguments after the
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status. Each prints its own errors to stderr. */
#ifndef CAIRN_CLIENT_COMMANDS_H
#define CAIRN_CLIENT_COMMANDS_H

int cairn_cmd_keys(int argc, char **argv);
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
int cairn_cmd_build(int argc, char **argv);
int cairn_cmd_cache(int argc, char **argv);
int cairn_cmd_builder(int argc, char **argv);
int cairn_cmd_login(int argc, char **argv);
int cairn_cmd_logout(int argc, char **argv);

#endif
