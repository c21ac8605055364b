/* One registry session's authorization: which scheme the registry asked
 * for, the credentials (read once, at the first challenge), and the Bearer
 * tokens fetched so far, one per scope. */
#include "client/registry/auth.h"

#include "client/registry/challenge.h"
#include "client/registry/creds.h"
#include "client/registry/token.h"
#include "common/strvec.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A pull or push touches a handful of repositories; the oldest token goes
 * when a session holds more. */
#define AUTH_TOKENS_MAX 32
#define AUTH_SCOPE_MAX 1024
/* A token is dropped this long before it expires, so it does not run out
 * between the header and the registry's check. */
#define AUTH_MARGIN_MS 10000

struct auth_token {
    char *scope;   /* owned; the caller's scope string ("" for none) */
    char *asked;   /* owned; every scope the token was asked for */
    char *token;   /* owned */
    int64_t until; /* monotonic ms after which it is not used */
    int64_t born;  /* monotonic ms it was fetched: the oldest is evicted */
};

enum auth_mode { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct cairn_reg_auth {
    char *registry;
    cairn_reg_auth_prepare_fn prepare;
    void *prepare_ctx;
    int creds_read;  /* cairn_reg_creds_lookup was asked */
    int offline;     /* ask token services for a refresh token */
    char *refresh;   /* the last refresh token given, or NULL */
    int have_creds;
    struct cairn_reg_creds creds;
    enum auth_mode mode;
    char *realm;     /* Bearer */
    char *service;   /* Bearer; NULL when the registry named none */
    struct auth_token tokens[AUTH_TOKENS_MAX];
    size_t ntokens;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int nomem(struct cairn_err *err)
{
    return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
}

int cairn_reg_auth_new(const char *registry, cairn_reg_auth_prepare_fn prepare,
                       void *prepare_ctx, struct cairn_reg_auth **out,
                       struct cairn_err *err)
{
    struct cairn_reg_auth *a = calloc(1, sizeof *a);
    if (!a || !(a->registry = strdup(registry))) {
        free(a);
        return nomem(err);
    }
    a->prepare = prepare;
    a->prepare_ctx = prepare_ctx;
    *out = a;
    return 0;
}

int cairn_reg_auth_use_creds(struct cairn_reg_auth *a,
                             const struct cairn_reg_creds *c, int offline,
                             struct cairn_err *err)
{
    struct cairn_reg_creds copy = {.identity_token = c->identity_token};
    if ((c->username && !(copy.username = strdup(c->username))) ||
        !c->secret || !(copy.secret = strdup(c->secret))) {
        cairn_reg_creds_clear(&copy);
        return c->secret ? nomem(err)
                         : cairn_err_set(err, CAIRN_E_INVAL, "no secret");
    }
    cairn_reg_creds_clear(&a->creds);
    a->creds = copy;
    a->have_creds = 1;
    a->creds_read = 1;
    a->offline = offline;
    return 0;
}

char *cairn_reg_auth_refresh_take(struct cairn_reg_auth *a)
{
    char *r = a->refresh;
    a->refresh = NULL;
    return r;
}

static void token_drop(struct cairn_reg_auth *a, size_t i)
{
    struct auth_token *t = &a->tokens[i];
    if (t->token)
        explicit_bzero(t->token, strlen(t->token));
    free(t->token);
    free(t->scope);
    free(t->asked);
    a->tokens[i] = a->tokens[--a->ntokens];
    memset(&a->tokens[a->ntokens], 0, sizeof a->tokens[0]);
}

void cairn_reg_auth_free(struct cairn_reg_auth *a)
{
    if (!a)
        return;
    while (a->ntokens)
        token_drop(a, 0);
    cairn_reg_creds_clear(&a->creds);
    if (a->refresh)
        explicit_bzero(a->refresh, strlen(a->refresh));
    free(a->refresh);
    free(a->realm);
    free(a->service);
    free(a->registry);
    free(a);
}

static struct auth_token *token_find(struct cairn_reg_auth *a,
                                     const char *scope)
{
    for (size_t i = 0; i < a->ntokens; i++)
        if (strcmp(a->tokens[i].scope, scope) == 0)
            return &a->tokens[i];
    return NULL;
}

/* Reads the stored credentials once per session: a credential helper may
 * prompt or be slow, and the answer does not change within a pull. */
static int creds_load(struct cairn_reg_auth *a, struct cairn_err *err)
{
    if (a->creds_read)
        return 0;
    int rc = cairn_reg_creds_lookup(a->registry, &a->creds, err);
    if (rc == CAIRN_E_NOTFOUND) {
        rc = 0;
        cairn_err_clear(err);
    } else if (rc == 0) {
        a->have_creds = 1;
    } else {
        return rc;
    }
    a->creds_read = 1;
    return 0;
}

/* Splits space-separated scopes onto sv, skipping ones already there. */
static int scopes_add(struct cairn_strvec *sv, const char *scopes)
{
    const char *p = scopes ? scopes : "";
    while (*p) {
        size_t n = strcspn(p, " ");
        if (n > 0) {
            char *s = strndup(p, n);
            int dup = 0;
            if (!s)
                return CAIRN_E_NOMEM;
            for (size_t i = 0; i < sv->n && !dup; i++)
                dup = strcmp(sv->v[i], s) == 0;
            int rc = dup ? 0 : cairn_strvec_push_take(sv, s);
            if (dup)
                free(s);
            if (rc != 0)
                return rc;
        }
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/* Whether every scope of wanted (space-separated) is one of asked's. */
static int scopes_cover(const char *asked, const char *wanted)
{
    const char *p = wanted;
    while (*p) {
        size_t n = strcspn(p, " ");
        int found = 0;
        for (const char *q = asked; n && *q && !found;) {
            size_t m = strcspn(q, " ");
            found = m == n && strncmp(p, q, n) == 0;
            q += m;
            q += strspn(q, " ");
        }
        if (n && !found)
            return 0;
        p += n;
        p += strspn(p, " ");
    }
    return 1;
}

/* sv's scopes joined by spaces; NULL when out of memory. */
static char *scopes_join(const struct cairn_strvec *sv)
{
    size_t n = 1;
    for (size_t i = 0; i < sv->n; i++)
        n += strlen(sv->v[i]) + 1;
    char *s = malloc(n), *w = s;
    if (!s)
        return NULL;
    *w = '\0';
    for (size_t i = 0; i < sv->n; i++)
        w += snprintf(w, n - (size_t)(w - s), "%s%s", i ? " " : "", sv->v[i]);
    return s;
}

/* Fetches a token for scope (plus extra, the scopes a challenge named) and
 * keeps it under scope. */
static int token_get(struct cairn_reg_auth *a, const char *scope,
                     const char *extra, struct cairn_err *err)
{
    struct cairn_strvec sv;
    struct cairn_reg_token tok = {0};
    cairn_strvec_init(&sv);
    int rc = scopes_add(&sv, scope);
    if (rc == 0)
        rc = scopes_add(&sv, extra);
    if (rc != 0) {
        rc = nomem(err);
        goto out;
    }
    struct cairn_reg_token_req req = {
        .registry = a->registry,
        .realm = a->realm,
        .service = a->service,
        .scopes = (const char *const *)sv.v,
        .nscopes = sv.n,
        .creds = a->have_creds ? &a->creds : NULL,
        .prepare = a->prepare,
        .prepare_ctx = a->prepare_ctx,
        .offline = a->offline,
    };
    int64_t asked = mono_ms();
    char *joined = scopes_join(&sv);
    if (!joined) {
        rc = nomem(err);
        goto out;
    }
    rc = cairn_reg_token_fetch(&req, &tok, err);
    if (rc != 0) {
        free(joined);
        goto out;
    }
    struct auth_token *t = token_find(a, scope);
    if (!t) {
        if (a->ntokens == AUTH_TOKENS_MAX) {
            size_t oldest = 0;
            for (size_t i = 1; i < a->ntokens; i++)
                if (a->tokens[i].born < a->tokens[oldest].born)
                    oldest = i;
            token_drop(a, oldest);
        }
        t = &a->tokens[a->ntokens];
        if (!(t->scope = strdup(scope))) {
            free(joined);
            rc = nomem(err);
            goto out;
        }
        a->ntokens++;
    } else {
        explicit_bzero(t->token, strlen(t->token));
        free(t->token);
        free(t->asked);
    }
    t->asked = joined;
    if (tok.refresh) {
        if (a->refresh)
            explicit_bzero(a->refresh, strlen(a->refresh));
        free(a->refresh);
        a->refresh = tok.refresh;
        tok.refresh = NULL;
    }
    /* Short-lived tokens lose a proportional margin, not all their life. */
    int64_t margin = tok.ttl_ms / 4 < AUTH_MARGIN_MS ? tok.ttl_ms / 4
                                                     : AUTH_MARGIN_MS;
    t->token = tok.token;
    tok.token = NULL;
    t->born = asked;
    t->until = asked + tok.ttl_ms - margin;
out:
    cairn_reg_token_clear(&tok);
    cairn_strvec_free(&sv);
    return rc;
}

static int header_make(const char *scheme, const char *value, char **out,
                       struct cairn_err *err)
{
    size_t n = strlen(scheme) + 1 + strlen(value) + 1;
    char *h = malloc(n);
    if (!h)
        return nomem(err);
    snprintf(h, n, "%s %s", scheme, value);
    *out = h;
    return 0;
}

static int basic_header(struct cairn_reg_auth *a, char **out,
                        struct cairn_err *err)
{
    const char *user = a->creds.username ? a->creds.username : "";
    size_t n = strlen(user) + 1 + strlen(a->creds.secret);
    char *plain = malloc(n + 1);
    char *b64 = malloc((n + 2) / 3 * 4 + 1);
    int rc = 0;
    if (!plain || !b64) {
        rc = nomem(err);
        goto out;
    }
    snprintf(plain, n + 1, "%s:%s", user, a->creds.secret);
    EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, (int)n);
    rc = header_make("Basic", b64, out, err);
out:
    if (plain) {
        explicit_bzero(plain, n);
        free(plain);
    }
    if (b64) {
        explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    return rc;
}

int cairn_reg_auth_header(struct cairn_reg_auth *a, const char *scope,
                          char **out, struct cairn_err *err)
{
    if (!scope)
        scope = "";
    if (strlen(scope) > AUTH_SCOPE_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "%s: scope too long",
                             a->registry);
    switch (a->mode) {
    case AUTH_NONE:
        *out = NULL;
        return 0;
    case AUTH_BASIC:
        return basic_header(a, out, err);
    case AUTH_BEARER:
        break;
    }
    /* A scope not asked for yet, or an expired token: fetch one now rather
     * than wait for the registry's 401, as Docker does. */
    struct auth_token *t = token_find(a, scope);
    if (!t || mono_ms() >= t->until) {
        int rc = token_get(a, scope, NULL, err);
        if (rc != 0)
            return rc;
        t = token_find(a, scope);
    }
    return header_make("Bearer", t->token, out, err);
}

/* The registry refused what cairn sent, or asked for credentials cairn
 * does not have: the user's next step is `cairn login`. */
static int refused(struct cairn_reg_auth *a, const char *scope,
                   const char *why, struct cairn_err *err)
{
    const char *r = a->registry;
    if (a->have_creds)
        return cairn_err_set(err, CAIRN_E_AUTH,
                             "%s: unauthorized%s%s: the registry refused the "
                             "credentials%s%s%s%s%s: check `cairn login %s`",
                             r, scope[0] ? " for " : "", scope,
                             a->creds.username ? " of " : "",
                             a->creds.username ? a->creds.username : "",
                             why ? " (" : "", why ? why : "", why ? ")" : "",
                             r);
    return cairn_err_set(err, CAIRN_E_AUTH,
                         "%s: authentication required%s%s: run `cairn login "
                         "%s`",
                         r, scope[0] ? " for " : "", scope, r);
}

static int bearer_challenge(struct cairn_reg_auth *a,
                            struct cairn_reg_challenge *c, const char *scope,
                            struct cairn_err *err)
{
    /* A token for this scope that has not expired was just refused: a new
     * one with the same credentials would be refused too, unless the
     * registry names a scope the token was not asked for. */
    struct auth_token *t = token_find(a, scope);
    int was_valid = t && mono_ms() < t->until;
    int covered = t && (!c->scope || scopes_cover(t->asked, c->scope));
    if (t)
        token_drop(a, (size_t)(t - a->tokens));
    int same_realm = a->realm && strcmp(a->realm, c->realm) == 0;
    if (was_valid && covered && same_realm && a->mode == AUTH_BEARER)
        return refused(a, scope, c->error, err);
    free(a->realm);
    free(a->service);
    a->realm = c->realm;
    a->service = c->service;
    c->realm = c->service = NULL;
    a->mode = AUTH_BEARER;
    /* Tokens from another realm are of no use any more. */
    if (!same_realm)
        while (a->ntokens)
            token_drop(a, 0);
    return token_get(a, scope, c->scope, err);
}

int cairn_reg_auth_challenge(struct cairn_reg_auth *a, const char *challenge,
                             const char *scope, struct cairn_err *err)
{
    struct cairn_reg_challenge c = {0};
    if (!scope)
        scope = "";
    if (strlen(scope) > AUTH_SCOPE_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "%s: scope too long",
                             a->registry);
    int rc = cairn_reg_challenge_parse(challenge ? challenge : "", &c, err);
    if (rc != 0) {
        cairn_err_prefix(err, "%s", a->registry);
        if (rc == CAIRN_E_PARSE || rc == CAIRN_E_TOOBIG)
            rc = CAIRN_E_AUTH;
        if (err)
            err->code = rc;
        goto out;
    }
    if ((rc = creds_load(a, err)) != 0)
        goto out;
    if (c.scheme == CAIRN_REG_SCHEME_BEARER) {
        rc = bearer_challenge(a, &c, scope, err);
        goto out;
    }
    /* Basic: the stored password goes with every request. A second
     * challenge means it was refused. */
    if (!a->have_creds || a->mode == AUTH_BASIC)
        rc = refused(a, scope, NULL, err);
    else if (a->creds.identity_token)
        rc = cairn_err_set(err, CAIRN_E_AUTH,
                           "%s asks for a password (Basic auth) but the "
                           "stored login is an identity token: run `cairn "
                           "login %s`",
                           a->registry, a->registry);
    else
        a->mode = AUTH_BASIC;
out:
    cairn_reg_challenge_clear(&c);
    return rc;
}
