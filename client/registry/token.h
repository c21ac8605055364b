/* The token request of the distribution token spec: a GET of
 * realm?service=S&scope=A&scope=B (each scope its own parameter), with Basic
 * credentials when there are some and anonymous otherwise; or, with an
 * identity token, the OAuth2 form Docker posts to the realm
 * (grant_type=refresh_token, refresh_token, service, scope, client_id).
 * The answer is {"token" or "access_token", "expires_in", "issued_at"}.
 *
 * The realm is another server the registry names: its answer is capped
 * (CAIRN_REG_TOKEN_BODY_MAX), timed out, checked before use, and the token
 * is never logged or put in a message. Thread-safe (one curl handle a call).
 */
#ifndef CAIRN_CLIENT_REGISTRY_TOKEN_H
#define CAIRN_CLIENT_REGISTRY_TOKEN_H

#include "client/registry/auth.h"
#include "client/registry/creds.h"
#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

#define CAIRN_REG_TOKEN_BODY_MAX (1024 * 1024)
/* Lifetime of a token whose answer names none (the token spec's default). */
#define CAIRN_REG_TOKEN_DEFAULT_TTL 60

struct cairn_reg_token_req {
    const char *registry;                /* for messages */
    const char *realm;                   /* http(s) URL */
    const char *service;                 /* NULL: not sent */
    const char *const *scopes;           /* nscopes scope strings */
    size_t nscopes;
    const struct cairn_reg_creds *creds; /* NULL: anonymous */
    /* Ask for a refresh token too (offline_token=true, as `docker login`
     * does); the answer's refresh_token lands in out->refresh. */
    int offline;
    cairn_reg_auth_prepare_fn prepare;   /* NULL: curl's defaults */
    void *prepare_ctx;
};

struct cairn_reg_token {
    char *token;      /* owned; wipe and free with cairn_reg_token_clear */
    char *refresh;    /* owned; the answer's refresh_token, or NULL */
    int64_t ttl_ms;   /* how long it stays valid from when it was asked for */
};

/* Asks the realm for a token. 0 and *out; CAIRN_E_AUTH with a message
 * naming the registry and the realm for a refused request (and `cairn login
 * REGISTRY`), an HTTP error, a transport failure or timeout, or an answer
 * that is not a token. */
int cairn_reg_token_fetch(const struct cairn_reg_token_req *req,
                          struct cairn_reg_token *out, struct cairn_err *err);

/* Reads the realm's JSON answer (body, len bytes). now_s is the wall
 * clock, against which issued_at is read. CAIRN_E_PARSE for anything but a
 * token answer (a refresh_token, when present, is held to the token's
 * rules). */
int cairn_reg_token_parse(const char *body, size_t len, int64_t now_s,
                          struct cairn_reg_token *out, struct cairn_err *err);

void cairn_reg_token_clear(struct cairn_reg_token *t);

#endif
