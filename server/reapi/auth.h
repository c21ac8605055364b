/* Bearer-token access control for cairnd (--tokens FILE).
 *
 * The file has one grant per line: `token role instance-glob`, role is
 * `read` or `write` (write implies read), the glob is fnmatch(3) syntax
 * where `*` also matches `/`; `#` starts a comment. A token may appear on
 * several lines (several instances). Without a token file the server is
 * open: cd_auth_check on a NULL struct cd_auth allows everything.
 *
 * A loaded struct cd_auth is immutable: cd_auth_check is thread-safe. */
#ifndef CAIRN_SERVER_AUTH_H
#define CAIRN_SERVER_AUTH_H

#include "common/error.h"

#include <stddef.h>

enum cd_access { CD_ACCESS_READ, CD_ACCESS_WRITE };

#define CD_AUTH_MAX_LINE 1024
#define CD_AUTH_MAX_GRANTS 100000

struct cd_auth;

/* Loads the token file. Returns 0, negative errno (cannot read),
 * CAIRN_E_PARSE (err names the line), CAIRN_E_TOOBIG. Free with
 * cd_auth_free. */
int cd_auth_load(const char *path, struct cd_auth **out, struct cairn_err *err);
void cd_auth_free(struct cd_auth *a);
/* Number of grants loaded (for the start-up log). */
size_t cd_auth_count(const struct cd_auth *a);

/* Decides a request. authorization is the raw `authorization` metadata
 * value ("Bearer <token>") or NULL when absent. Returns 0 (allowed),
 * CAIRN_E_AUTH (no or unknown token: UNAUTHENTICATED), -EACCES (known
 * token without a grant for this instance and access: PERMISSION_DENIED). */
int cd_auth_check(const struct cd_auth *a, const char *authorization,
                  const char *instance, enum cd_access need);

#endif
