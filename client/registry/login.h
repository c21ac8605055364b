/* `cairn login`'s check: are these credentials good for this registry?
 * One GET of /v2/ through cairn_reg_auth (Basic or a Bearer token from the
 * realm), as `docker login` does. A minimal request of its own: HTTPS
 * verified against the system CAs, or the ca.crt in
 * $CAIRN_CERTS_D/HOST:PORT/ (default /etc/docker/certs.d/HOST:PORT/) when
 * there is one; plain HTTP only for a loopback registry that does not
 * speak TLS (as Docker treats 127.0.0.0/8). Thread-safe.
 */
#ifndef CAIRN_CLIENT_REGISTRY_LOGIN_H
#define CAIRN_CLIENT_REGISTRY_LOGIN_H

#include "client/registry/creds.h"
#include "common/error.h"

/* 0 when registry (host[:port]) accepts c; CAIRN_E_AUTH when it refuses
 * them, CAIRN_E_IO / CAIRN_E_TIMEOUT when it cannot be reached, with a
 * message naming it. A token service is asked for a refresh token, as
 * `docker login` does: *identity_token receives it (caller wipes and
 * frees; store it instead of the password) or NULL when none was given. */
int cairn_reg_login_check(const char *registry,
                          const struct cairn_reg_creds *c,
                          char **identity_token, struct cairn_err *err);

#endif
