/* Entry points of the cairn subcommands. Each takes the arguments after the
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status. Each prints its own errors to stderr. */
#ifndef CAIRN_CLIENT_COMMANDS_H
#define CAIRN_CLIENT_COMMANDS_H

int cairn_cmd_keys(int argc, char **argv);

#endif
