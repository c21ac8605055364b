/* Authorization for one registry, as the distribution token spec and Docker
 * do it. A session starts anonymous: its first request carries no
 * Authorization (cairn_reg_auth_header gives NULL); on a 401 the transport
 * hands the WWW-Authenticate value to cairn_reg_auth_challenge, which
 * prepares Basic credentials or fetches a Bearer token for the scope
 * (realm?service=...&scope=..., with the stored credentials or anonymous),
 * and the transport retries once. Tokens are kept per scope until they
 * expire (expires_in, default 60 s, minus a margin).
 *
 * Scopes are the spec's strings: "repository:NAME:pull",
 * "repository:NAME:pull,push"; several are separated by a space.
 *
 * The token request is HTTP: the caller supplies `prepare`, which sets the
 * transport's TLS and proxy options on the curl easy handle the token
 * request uses (the realm may be another host than the registry).
 *
 * Not thread-safe: one per registry session; the session serialises.
 */
#ifndef CAIRN_CLIENT_REGISTRY_AUTH_H
#define CAIRN_CLIENT_REGISTRY_AUTH_H

#include "client/registry/creds.h"
#include "common/error.h"

#include <curl/curl.h>

/* Sets TLS and transport options on h for a request to url. */
typedef int (*cairn_reg_auth_prepare_fn)(void *ctx, CURL *h, const char *url,
                                         struct cairn_err *err);

struct cairn_reg_auth;

/* registry: host[:port]. Credentials come from cairn_reg_creds_lookup
 * (none: anonymous). */
int cairn_reg_auth_new(const char *registry, cairn_reg_auth_prepare_fn prepare,
                       void *prepare_ctx, struct cairn_reg_auth **out,
                       struct cairn_err *err);
void cairn_reg_auth_free(struct cairn_reg_auth *a);

/* Uses a copy of c instead of the stored credentials (`cairn login` checks
 * new credentials before it stores them). Call before the first
 * challenge. With offline, token requests also ask for a refresh token,
 * as `docker login` does; cairn_reg_auth_refresh_take hands it over. */
int cairn_reg_auth_use_creds(struct cairn_reg_auth *a,
                             const struct cairn_reg_creds *c, int offline,
                             struct cairn_err *err);

/* The last refresh token a token service gave this session (caller wipes
 * and frees), or NULL. */
char *cairn_reg_auth_refresh_take(struct cairn_reg_auth *a);

/* The Authorization header value ("Basic ...", "Bearer ...") for a request
 * that needs scope, or *out = NULL when none is known yet. Caller frees. */
int cairn_reg_auth_header(struct cairn_reg_auth *a, const char *scope,
                          char **out, struct cairn_err *err);

/* After a 401 with WWW-Authenticate value `challenge` for a request that
 * needs scope. 0: retry the request with cairn_reg_auth_header. CAIRN_E_AUTH
 * when there is nothing more to try (no or refused credentials, a failing
 * token endpoint), with a message that names the registry and, when no
 * credentials were stored, `cairn login REGISTRY`. */
int cairn_reg_auth_challenge(struct cairn_reg_auth *a, const char *challenge,
                             const char *scope, struct cairn_err *err);

#endif
