/* Helpers every cairn subcommand shares: option values, opening the store,
 * and Docker's human-readable sizes and ages (so every command prints them
 * alike). Thread-safe (no shared state). */
#ifndef CAIRN_CLIENT_CLI_H
#define CAIRN_CLIENT_CLI_H

#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Matches argv[*i] against "--lng VALUE", "--lng=VALUE" and "SHRT VALUE"
 * (shrt may be NULL); advances *i past a separate value. Returns the value
 * (borrowed from argv), or NULL when argv[*i] is not this option; *missing
 * is set when the option is last with no value. */
const char *cairn_cli_opt_value(int argc, char **argv, int *i,
                                const char *lng, const char *shrt,
                                bool *missing);

/* Opens the store at cairn_root_path(). */
int cairn_cli_store_open(struct cairn_store **st, struct cairn_err *err);

/* Appends the registries named in CAIRN_INSECURE_REGISTRIES (separated
 * by commas or spaces) to v, as --insecure-registry flags would. */
struct cairn_strvec;
int cairn_cli_insecure_env(struct cairn_strvec *v);

/* Parses a source date epoch (--source-date-epoch, SOURCE_DATE_EPOCH):
 * decimal seconds, >= 0, nothing else. Sets *out and returns true, or
 * returns false. build and keys share it: the epoch is in the keys, so
 * both must read it alike. */
bool cairn_cli_epoch_parse(const char *s, int64_t *out);

/* Docker's units.HumanSizeWithPrecision: SI units, "%.*g" ("1.23MB"). */
void cairn_cli_human_size(uint64_t bytes, int precision, char *buf,
                          size_t len);

/* Docker's units.HumanDuration(now - t) + " ago"; "N/A" when t < 0. */
void cairn_cli_human_ago(int64_t t, int64_t now, char *buf, size_t len);

#endif
