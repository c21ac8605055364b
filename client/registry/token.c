#include "client/registry/token.h"

#include "common/buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A JWT with a certificate chain is a few KiB; 64 KiB is no token. */
#define TOKEN_MAX (64 * 1024)
/* A registry session does not outlive a day; a longer promise is capped. */
#define TOKEN_TTL_MAX (24 * 3600)
#define TOKEN_CONNECT_TIMEOUT_S 30L
#define TOKEN_TIMEOUT_S 60L
#define TOKEN_REDIRECTS_MAX 5L
/* Docker's client id for the OAuth2 form; registries log it. */
#define TOKEN_CLIENT_ID "cairn"

static void secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void cairn_reg_token_clear(struct cairn_reg_token *t)
{
    if (!t)
        return;
    secret_free(t->token);
    secret_free(t->refresh);
    t->token = NULL;
    t->refresh = NULL;
    t->ttl_ms = 0;
}

/* A token goes into an Authorization header or a form: a byte outside
 * visible ASCII could split or smuggle headers. NULL when fine. */
static const char *token_check(const char *tok)
{
    size_t n = strnlen(tok, TOKEN_MAX + 1);
    if (n > TOKEN_MAX)
        return "the token is too long";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)tok[i] <= 0x20 || (unsigned char)tok[i] >= 0x7f)
            return "the token holds a space or a control character";
    return NULL;
}

/* RFC 3339 ("2026-12-06T22:00:00Z", fractions and offsets allowed) to
 * seconds since the epoch; -1 when it is not one. */
static int64_t rfc3339_parse(const char *s)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' &&
               isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
               isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5])) {
        int hh = (p[1] - '0') * 10 + (p[2] - '0');
        int mm = (p[4] - '0') * 10 + (p[5] - '0');
        off = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t - off;
}

int cairn_reg_token_parse(const char *body, size_t len, int64_t now_s,
                          struct cairn_reg_token *out, struct cairn_err *err)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    int rc = 0;
    const char *why = NULL;
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok || !tok[0])
        tok = json_string_value(json_object_get(j, "access_token"));
    json_t *exp = json_object_get(j, "expires_in");
    json_t *iss = json_object_get(j, "issued_at");
    json_t *ref = json_object_get(j, "refresh_token");
    if (!json_is_object(j))
        why = "not a JSON object";
    else if (!tok || !tok[0])
        why = "no \"token\" or \"access_token\"";
    else if (exp && !json_is_integer(exp))
        why = "\"expires_in\" is not an integer";
    else if (iss && !json_is_string(iss))
        why = "\"issued_at\" is not a string";
    else if (ref && (!json_is_string(ref) || !json_string_value(ref)[0]))
        why = "\"refresh_token\" is not a string";
    if (!why)
        why = token_check(tok);
    if (!why && ref)
        why = token_check(json_string_value(ref));
    if (why) {
        rc = cairn_err_set(err, CAIRN_E_PARSE, "the token answer: %s", why);
        goto out;
    }
    json_int_t ttl = exp ? json_integer_value(exp) : 0;
    if (ttl <= 0)
        ttl = CAIRN_REG_TOKEN_DEFAULT_TTL;
    if (ttl > TOKEN_TTL_MAX)
        ttl = TOKEN_TTL_MAX;
    /* issued_at shortens the lifetime by the token's age when the clocks
     * agree; a time in the future or older than the lifetime says they do
     * not, and then only expires_in, counted from now, is trusted. */
    int64_t issued = iss ? rfc3339_parse(json_string_value(iss)) : -1;
    if (iss && issued < 0) {
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "the token answer: \"issued_at\" is not an RFC "
                           "3339 time");
        goto out;
    }
    if (issued >= 0 && issued <= now_s && now_s - issued < ttl)
        ttl -= now_s - issued;
    char *copy = strdup(tok);
    char *rcopy = ref ? strdup(json_string_value(ref)) : NULL;
    if (!copy || (ref && !rcopy)) {
        secret_free(copy);
        secret_free(rcopy);
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    out->token = copy;
    out->refresh = rcopy;
    out->ttl_ms = (int64_t)ttl * 1000;
out:
    json_decref(j);
    return rc;
}

struct sink {
    struct cairn_buf body;
};

static size_t sink_write(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    if (cairn_buf_append(&s->body, p, size * n) != 0)
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    return size * n;
}

/* The realm without its query, for messages. */
static void realm_name(const char *realm, char *dst, size_t n)
{
    size_t len = strcspn(realm, "?#");
    snprintf(dst, n, "%.*s", (int)(len < 200 ? len : 200), realm);
}

/* realm?service=S&scope=A&scope=B[&account=U] for the GET, or the form
 * for the OAuth2 POST, into b. */
static int request_build(CURL *h, const struct cairn_reg_token_req *req,
                         int oauth, struct cairn_buf *b)
{
    int rc = 0;
    const char *sep = oauth ? "" : strchr(req->realm, '?') ? "&" : "?";
    if (!oauth)
        rc = cairn_buf_puts(b, req->realm);
    struct {
        const char *name, *value;
    } params[8];
    size_t np = 0;
    if (oauth) {
        params[np].name = "grant_type", params[np++].value = "refresh_token";
        params[np].name = "refresh_token", params[np++].value = req->creds->secret;
        params[np].name = "client_id", params[np++].value = TOKEN_CLIENT_ID;
    } else if (req->creds && req->creds->username) {
        /* Docker names the account; some realms (Docker Hub's) want it. */
        params[np].name = "account", params[np++].value = req->creds->username;
    }
    if (!oauth && req->offline) {
        params[np].name = "offline_token", params[np++].value = "true";
        params[np].name = "client_id", params[np++].value = TOKEN_CLIENT_ID;
    }
    if (req->service)
        params[np].name = "service", params[np++].value = req->service;
    for (size_t i = 0; rc == 0 && i < np; i++) {
        char *v = curl_easy_escape(h, params[i].value, 0);
        if (!v)
            return CAIRN_E_NOMEM;
        rc = cairn_buf_printf(b, "%s%s=%s", sep, params[i].name, v);
        sep = "&";
        curl_free(v);
    }
    /* The GET repeats scope= per scope; the OAuth2 form joins them with
     * spaces, as RFC 6749 says. */
    for (size_t i = 0; rc == 0 && i < req->nscopes; i++) {
        char *v = curl_easy_escape(h, req->scopes[i], 0);
        if (!v)
            return CAIRN_E_NOMEM;
        if (!oauth || i == 0)
            rc = cairn_buf_printf(b, "%sscope=%s", sep, v);
        else
            rc = cairn_buf_printf(b, "%%20%s", v);
        sep = "&";
        curl_free(v);
    }
    return rc;
}

static int fetch_failed(const struct cairn_reg_token_req *req, long status,
                        struct cairn_err *err)
{
    char realm[256];
    realm_name(req->realm, realm, sizeof realm);
    const char *r = req->registry;
    if ((status == 401 || status == 403) && req->creds)
        return cairn_err_set(err, CAIRN_E_AUTH,
                             "%s: unauthorized: the token service %s refused "
                             "the credentials%s%s (HTTP %ld): check `cairn "
                             "login %s`",
                             r, realm, req->creds->username ? " of " : "",
                             req->creds->username ? req->creds->username : "",
                             status, r);
    if (status == 401 || status == 403)
        return cairn_err_set(err, CAIRN_E_AUTH,
                             "%s: authentication required: the token service "
                             "%s refused an anonymous token (HTTP %ld): run "
                             "`cairn login %s`",
                             r, realm, status, r);
    return cairn_err_set(err, CAIRN_E_AUTH,
                         "%s: the token service %s answered HTTP %ld", r,
                         realm, status);
}

int cairn_reg_token_fetch(const struct cairn_reg_token_req *req,
                          struct cairn_reg_token *out, struct cairn_err *err)
{
    struct sink s;
    struct cairn_buf reqb;
    struct curl_slist *hdrs = NULL;
    char realm[256];
    int rc = 0;
    cairn_buf_init(&s.body, CAIRN_REG_TOKEN_BODY_MAX);
    cairn_buf_init(&reqb, 64 * 1024);
    realm_name(req->realm, realm, sizeof realm);
    int oauth = req->creds && req->creds->identity_token;
    CURL *h = curl_easy_init();
    if (!h) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    /* Defaults first, so the caller's prepare may tighten them. */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, TOKEN_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, TOKEN_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
    if (req->prepare && (rc = req->prepare(req->prepare_ctx, h, req->realm,
                                           err)) != 0) {
        cairn_err_prefix(err, "%s: token service %s", req->registry, realm);
        goto out;
    }
    if ((rc = request_build(h, req, oauth, &reqb)) != 0) {
        rc = cairn_err_set(err, rc, "%s: the token request is too long",
                           req->registry);
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, TOKEN_REDIRECTS_MAX);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    hdrs = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (oauth) {
        curl_easy_setopt(h, CURLOPT_URL, req->realm);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)reqb.len);
        curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, reqb.data);
    } else {
        curl_easy_setopt(h, CURLOPT_URL, reqb.data);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (req->creds) {
            /* curl sends these to the realm's host only, never to a host a
             * redirect names. */
            curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(h, CURLOPT_USERNAME, req->creds->username);
            curl_easy_setopt(h, CURLOPT_PASSWORD, req->creds->secret);
        }
    }
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_WRITE_ERROR) {
        rc = cairn_err_set(err, CAIRN_E_AUTH,
                           "%s: the token service %s answered more than %d "
                           "bytes",
                           req->registry, realm, CAIRN_REG_TOKEN_BODY_MAX);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = cairn_err_set(err, CAIRN_E_AUTH, "%s: the token service %s: %s",
                           req->registry, realm, curl_easy_strerror(cc));
        goto out;
    }
    if (status != 200) {
        rc = fetch_failed(req, status, err);
        goto out;
    }
    rc = cairn_reg_token_parse(s.body.data ? s.body.data : "", s.body.len,
                               (int64_t)time(NULL), out, err);
    if (rc != 0) {
        rc = CAIRN_E_AUTH;
        if (err)
            err->code = rc;
        cairn_err_prefix(err, "%s: the token service %s", req->registry,
                         realm);
    }
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (s.body.data)
        explicit_bzero(s.body.data, s.body.len);
    cairn_buf_free(&s.body);
    if (reqb.data)
        explicit_bzero(reqb.data, reqb.len);
    cairn_buf_free(&reqb);
    return rc;
}
