/* The docker-credential-* protocol: a credential helper is a program
 * docker-credential-NAME found in PATH, run with one argument (get, store,
 * erase) and JSON or a server URL on stdin, as Docker's credential helpers
 * (docker/docker-credential-helpers) define it:
 *
 *   get    stdin: SERVER            stdout: {"ServerURL","Username","Secret"}
 *   store  stdin: {"ServerURL","Username","Secret"}
 *   erase  stdin: SERVER
 *
 * A Username of "<token>" marks Secret as an identity token. A helper that
 * has nothing exits non-zero printing "credentials not found in native
 * keychain".
 *
 * The helper runs without a shell, with a timeout (60 s, or
 * $CAIRN_CREDHELPER_TIMEOUT seconds: a helper may wait for a passphrase)
 * and its output capped; a helper that hangs is killed. Thread-safe.
 */
#ifndef CAIRN_CLIENT_REGISTRY_CREDHELPER_H
#define CAIRN_CLIENT_REGISTRY_CREDHELPER_H

#include "client/registry/credential.h"
#include "common/error.h"

/* Largest output read from a helper; more is an error. */
#define CAIRN_REG_CREDHELPER_OUT_MAX (64 * 1024)

/* Credentials the helper `name` has for server. 0 and *out filled;
 * CAIRN_E_NOTFOUND when it has none; CAIRN_E_INVAL for a name that is not
 * a plain word; CAIRN_E_FAILED, CAIRN_E_TIMEOUT or CAIRN_E_PARSE for a
 * helper that is missing, fails, hangs or answers nonsense. */
int cairn_reg_credhelper_get(const char *name, const char *server,
                             struct cairn_reg_creds *out,
                             struct cairn_err *err);

/* Hands c for server to the helper. */
int cairn_reg_credhelper_store(const char *name, const char *server,
                               const struct cairn_reg_creds *c,
                               struct cairn_err *err);

/* Asks the helper to forget server. CAIRN_E_NOTFOUND when it had nothing. */
int cairn_reg_credhelper_erase(const char *name, const char *server,
                               struct cairn_err *err);

#endif
