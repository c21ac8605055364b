/* Registry credentials where Docker keeps them: $DOCKER_CONFIG/config.json
 * (default ~/.docker/config.json). Reads `auths` (base64 "user:secret" in
 * "auth", or "identitytoken"), `credsStore` and `credHelpers` (running
 * docker-credential-<name> get/store/erase with the JSON protocol Docker
 * uses), and writes the same file on login/logout, keeping every key it
 * does not own.
 *
 * `registry` is the host[:port] a reference names (cairn_reg_ref); Docker
 * Hub's credentials live under "https://index.docker.io/v1/" and are
 * found for "docker.io" and "registry-1.docker.io".
 *
 * Not thread-safe; the file is re-read by every call.
 */
#ifndef CAIRN_CLIENT_REGISTRY_CREDS_H
#define CAIRN_CLIENT_REGISTRY_CREDS_H

#include "client/registry/credential.h"
#include "common/error.h"

/* Credentials for registry. 0 and *out filled; CAIRN_E_NOTFOUND when the
 * config has none (anonymous); other codes for an unreadable config or a
 * failing credential helper, with a message naming it. */
int cairn_reg_creds_lookup(const char *registry, struct cairn_reg_creds *out,
                           struct cairn_err *err);

/* Stores c for registry (through the helper when one is configured, else
 * in `auths`); the file is replaced atomically with mode 0600. */
int cairn_reg_creds_store(const char *registry,
                          const struct cairn_reg_creds *c,
                          struct cairn_err *err);

/* Forgets registry's credentials. CAIRN_E_NOTFOUND when there were none. */
int cairn_reg_creds_erase(const char *registry, struct cairn_err *err);

#endif
