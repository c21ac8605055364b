/* A registry's error answer as a cairn error. Registries answer errors
 * with {"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]}
 * (distribution spec, "Error Codes"); the first error names the fault
 * and the status picks our code. Pure function; thread-safe.
 */
#ifndef CAIRN_CLIENT_REGISTRY_ERRORS_H
#define CAIRN_CLIENT_REGISTRY_ERRORS_H

#include "common/error.h"

#include <stddef.h>

/* Sets err for an answer with status (>= 400) and body (may be NULL or
 * not JSON; at most len bytes are read) to a request about `what` (e.g.
 * "manifest busybox:latest") on registry ("host[:port]"), and returns
 * the code: CAIRN_E_AUTH for 401/403 (the message names the registry and
 * `cairn login`), CAIRN_E_NOTFOUND for 404 (repository, manifest or blob
 * unknown, as the registry's code says), CAIRN_E_RPC otherwise. */
int cairn_reg_error_decode(const char *registry, long status, const char *body,
                           size_t len, const char *what, struct cairn_err *err);

#endif
