#include "client/registry/login.h"

#include "client/registry/auth.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOGIN_CONNECT_TIMEOUT_S 15L
#define LOGIN_TIMEOUT_S 60L
/* /v2/ answers "{}" or an error document; more is not a registry. */
#define LOGIN_BODY_MAX (64 * 1024)

struct login_ctx {
    const char *registry;
    char ca[PATH_MAX]; /* "" when no certs.d CA */
};

struct answer {
    char www[4096];
    size_t body;
};

/* The certs.d CA of registry, as the transport finds it. */
static void ca_find(struct login_ctx *x)
{
    const char *env = getenv("CAIRN_CERTS_D");
    const char *roots[] = {env && *env ? env : "/etc/docker/certs.d",
                           "/etc/containers/certs.d"};
    x->ca[0] = '\0';
    for (size_t i = 0; i < (env && *env ? 1u : 2u); i++) {
        snprintf(x->ca, sizeof x->ca, "%s/%s/ca.crt", roots[i], x->registry);
        if (access(x->ca, R_OK) == 0)
            return;
    }
    x->ca[0] = '\0';
}

static int login_prepare(void *ctx, CURL *h, const char *url,
                         struct cairn_err *err)
{
    (void)err;
    struct login_ctx *x = ctx;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, LOGIN_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, LOGIN_TIMEOUT_S);
    /* The certs.d CA vouches for the registry only, not for a realm on
     * another host. */
    size_t n = strlen(x->registry);
    if (x->ca[0] && strncmp(url, "https://", 8) == 0 &&
        strncmp(url + 8, x->registry, n) == 0 &&
        (url[8 + n] == '/' || url[8 + n] == '\0' || url[8 + n] == '?'))
        curl_easy_setopt(h, CURLOPT_CAINFO, x->ca);
    return 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    if (len > 17 && strncasecmp(p, "WWW-Authenticate:", 17) == 0) {
        const char *s = p + 17;
        size_t v = len - 17;
        while (v && (*s == ' ' || *s == '\t'))
            s++, v--;
        while (v && (s[v - 1] == '\r' || s[v - 1] == '\n'))
            v--;
        /* A longer header is cut here, and the parser refuses it. */
        snprintf(a->www, sizeof a->www, "%.*s", (int)v, s);
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    struct answer *a = arg;
    a->body += size * n;
    return a->body > LOGIN_BODY_MAX ? 0 : size * n;
}

static int is_loopback(const char *registry)
{
    return strncmp(registry, "127.", 4) == 0 ||
           strncmp(registry, "localhost", 9) == 0 ||
           strncmp(registry, "[::1]", 5) == 0;
}

/* GET url with authz (may be NULL). Returns the curl code; *status. */
static CURLcode get(struct login_ctx *x, const char *url, const char *authz,
                    struct answer *a, long *status, char *errbuf)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char *line = NULL;
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    if (!h)
        return cc;
    if (authz) {
        size_t n = strlen(authz) + 32;
        if (!(line = malloc(n)))
            goto out;
        snprintf(line, n, "Authorization: %s", authz);
        if (!(hdrs = curl_slist_append(NULL, line)))
            goto out;
    }
    memset(a, 0, sizeof *a);
    errbuf[0] = '\0';
    login_prepare(x, h, url, NULL);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
out:
    curl_slist_free_all(hdrs);
    if (line) {
        explicit_bzero(line, strlen(line));
        free(line);
    }
    curl_easy_cleanup(h);
    return cc;
}

int cairn_reg_login_check(const char *registry,
                          const struct cairn_reg_creds *c,
                          char **identity_token, struct cairn_err *err)
{
    struct login_ctx x = {.registry = registry};
    struct cairn_reg_auth *a = NULL;
    struct answer ans;
    char url[512], errbuf[CURL_ERROR_SIZE];
    int https = 1, rc;
    ca_find(&x);
    rc = cairn_reg_auth_new(registry, login_prepare, &x, &a, err);
    if (rc == 0)
        rc = cairn_reg_auth_use_creds(a, c, 1, err);
    /* Three rounds: anonymous, answered challenge, and the refusal a
     * second challenge brings. */
    for (int round = 0; rc == 0 && round < 3; round++) {
        char *authz = NULL;
        long status = 0;
        snprintf(url, sizeof url, "%s://%s/v2/", https ? "https" : "http",
                 registry);
        if ((rc = cairn_reg_auth_header(a, "", &authz, err)) != 0)
            break;
        CURLcode cc = get(&x, url, authz, &ans, &status, errbuf);
        free(authz);
        if (cc == CURLE_SSL_CONNECT_ERROR && https && is_loopback(registry)) {
            /* A loopback registry without TLS, as Docker allows. */
            https = 0;
            round--;
            continue;
        }
        if (cc != CURLE_OK) {
            rc = cairn_err_set(err,
                               cc == CURLE_OPERATION_TIMEDOUT ? CAIRN_E_TIMEOUT
                                                              : CAIRN_E_IO,
                               "%s: %s", url,
                               errbuf[0] ? errbuf : curl_easy_strerror(cc));
            break;
        }
        if (status == 200)
            break;
        if (status != 401) {
            rc = cairn_err_set(err, CAIRN_E_RPC,
                               "%s answered HTTP %ld: not a registry API",
                               url, status);
            break;
        }
        rc = cairn_reg_auth_challenge(a, ans.www, "", err);
        if (rc == 0 && round == 2)
            rc = cairn_err_set(err, CAIRN_E_AUTH, "%s: unauthorized",
                               registry);
    }
    if (rc == 0)
        *identity_token = cairn_reg_auth_refresh_take(a);
    cairn_reg_auth_free(a);
    return rc;
}
