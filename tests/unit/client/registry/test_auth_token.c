/* client/registry/auth.c (with creds.c, challenge.c, token.c) against the
 * real peers: Debian's docker-registry in token mode with the test token
 * issuer, and in htpasswd mode, started through tests/integration/
 * registry_lib.sh. Each request is a real curl GET of the registry's API,
 * done the way the transport does it: no Authorization first, then on a
 * 401 the challenge, then the retry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/registry/auth.h"
#include "client/registry/creds.h"

static char g_dir[64];
static char g_lib[512];
/* The token-mode registry (and its issuer), and the htpasswd one. */
static char g_tok_addr[64], g_tok_url[128], g_issuer_log[512],
    g_issuer_ctl[512], g_issuer_url[256];
static char g_basic_addr[64], g_basic_url[128];
static int g_prepared;
static long g_timeout_s;

/* Runs a bash snippet with registry_lib.sh loaded, T = g_dir. */
static int lib_run(const char *snippet)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "T='%s' REG_NO_TRAP=1 bash -c '. \"%s\" && %s' >>'%s/lib.out' "
             "2>&1",
             g_dir, g_lib, snippet, g_dir);
    return system(cmd);
}

/* Reads KEY=VALUE from g_dir/NAME.env into dst. */
static void env_get(const char *name, const char *key, char *dst, size_t n)
{
    char path[256], line[1024];
    snprintf(path, sizeof path, "%s/%s.env", g_dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t klen = strlen(key);
    dst[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            line[strcspn(line, "\n")] = '\0';
            snprintf(dst, n, "%s", line + klen + 1);
        }
    }
    fclose(f);
    assert_true(dst[0] != '\0');
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/cairn-authtok.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_lib, sizeof g_lib, "%s/tests/integration/registry_lib.sh",
             CAIRN_SOURCE_DIR);
    static const char vars[] =
        "echo REG_ADDR=$REG_ADDR; echo REG_URL=$REG_URL; "
        "echo REG_ISSUER_URL=$REG_ISSUER_URL; "
        "echo REG_ISSUER_LOG=$REG_ISSUER_LOG; "
        "echo REG_ISSUER_CONTROL=$REG_ISSUER_CONTROL";
    char snippet[1024];
    snprintf(snippet, sizeof snippet,
             "reg_start token && { %s; } > \"$T/token.env\" && "
             "reg_start htpasswd && { %s; } > \"$T/basic.env\"",
             vars, vars);
    if (lib_run(snippet) != 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat '%s/lib.out' >&2", g_dir);
        (void)system(cmd);
        fail_msg("registry_lib.sh could not start the registries");
    }
    env_get("token", "REG_ADDR", g_tok_addr, sizeof g_tok_addr);
    env_get("token", "REG_URL", g_tok_url, sizeof g_tok_url);
    env_get("token", "REG_ISSUER_URL", g_issuer_url, sizeof g_issuer_url);
    env_get("token", "REG_ISSUER_LOG", g_issuer_log, sizeof g_issuer_log);
    env_get("token", "REG_ISSUER_CONTROL", g_issuer_ctl, sizeof g_issuer_ctl);
    env_get("basic", "REG_ADDR", g_basic_addr, sizeof g_basic_addr);
    env_get("basic", "REG_URL", g_basic_url, sizeof g_basic_url);
    char conf[128];
    snprintf(conf, sizeof conf, "%s/docker", g_dir);
    mkdir(conf, 0700);
    setenv("DOCKER_CONFIG", conf, 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lib_run("reg_stop_all");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
    curl_global_cleanup();
    return 0;
}

static void issuer_set(const char *name, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_issuer_ctl, name);
    write_text(path, value);
}

/* Each test starts with the issuer behaving and no stored login. */
static int setup(void **state)
{
    (void)state;
    issuer_set("mode", "");
    issuer_set("ttl", "");
    char path[256];
    snprintf(path, sizeof path, "%s/docker/config.json", g_dir);
    unlink(path);
    g_prepared = 0;
    g_timeout_s = 0;
    return 0;
}

static void login(const char *registry, const char *user, const char *pass)
{
    struct cairn_reg_creds c = {.username = (char *)user, .secret = (char *)pass};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_store(registry, &c, &err), 0);
}

/* Lines of the issuer's log containing every one of the given needles. */
static int issuer_count(const char *needle)
{
    FILE *f = fopen(g_issuer_log, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += !needle || strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* The transport's side of the contract: TLS and timeouts go on the
 * handle; here a count proves the token request went through it. */
static int prepare(void *ctx, CURL *h, const char *url, struct cairn_err *err)
{
    (void)ctx;
    (void)err;
    assert_true(strncmp(url, "http://127.0.0.1:", 17) == 0);
    g_prepared++;
    if (g_timeout_s)
        curl_easy_setopt(h, CURLOPT_TIMEOUT, g_timeout_s);
    return 0;
}

struct response {
    char www[2048];
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct response *r = arg;
    size_t len = size * n;
    if (len > 17 && strncasecmp(p, "WWW-Authenticate:", 17) == 0) {
        size_t v = len - 17;
        const char *s = p + 17;
        while (v && (*s == ' ')) {
            s++;
            v--;
        }
        while (v && (s[v - 1] == '\r' || s[v - 1] == '\n'))
            v--;
        snprintf(r->www, sizeof r->www, "%.*s", (int)v, s);
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static long http_get(const char *url, const char *authz, struct response *r)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char line[8192];
    if (authz) {
        snprintf(line, sizeof line, "Authorization: %s", authz);
        hdrs = curl_slist_append(hdrs, line);
    }
    r->www[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    long status = 0;
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return status;
}

/* One API request as the transport makes it: >0 the final HTTP status,
 * <0 the code cairn_reg_auth_* failed with (message in err). Each 401 goes
 * to the challenge; a second one for the same scope must be refused there,
 * so the loop ends. */
static long request(struct cairn_reg_auth *a, const char *url,
                    const char *scope, struct cairn_err *err)
{
    for (int round = 0; round < 3; round++) {
        struct response r;
        char *authz = NULL;
        int rc = cairn_reg_auth_header(a, scope, &authz, err);
        if (rc != 0)
            return rc;
        if (round > 0)
            assert_non_null(authz);
        long st = http_get(url, authz, &r);
        free(authz);
        if (st != 401)
            return st;
        assert_true(r.www[0] != '\0');
        rc = cairn_reg_auth_challenge(a, r.www, scope, err);
        if (rc != 0)
            return rc;
    }
    fail_msg("%s: still 401 after two challenges", url);
    return 0;
}

static struct cairn_reg_auth *session(const char *addr)
{
    struct cairn_reg_auth *a = NULL;
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_auth_new(addr, prepare, NULL, &a, &err), 0);
    return a;
}

static void expect_fail(long got, const struct cairn_err *err,
                        const char *in_msg)
{
    if (got != CAIRN_E_AUTH)
        fail_msg("got %ld (%s), want CAIRN_E_AUTH", got, err->msg);
    if (!strstr(err->msg, in_msg))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, in_msg);
}

static void test_token_flow_and_reuse(void **state)
{
    (void)state;
    login(g_tok_addr, "alice", "alice-pw");
    struct cairn_reg_auth *a = session(g_tok_addr);
    struct cairn_err err = {0};
    char url[256];
    int before = issuer_count(NULL);
    /* Anonymous first: 401, the challenge, a token, 200. */
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    assert_int_equal(request(a, url, "", &err), 200);
    assert_int_equal(issuer_count(NULL), before + 1);
    assert_int_equal(issuer_count("\"user\": \"alice\""), 1);
    assert_int_equal(g_prepared, 1);
    /* The same scope again: the token is reused, no new token request. */
    assert_int_equal(request(a, url, "", &err), 200);
    assert_int_equal(request(a, url, NULL, &err), 200);
    assert_int_equal(issuer_count(NULL), before + 1);
    /* A new scope: one token request, before any 401. The repository is
     * empty, so 404 shows the token was accepted. */
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    assert_int_equal(request(a, url, "repository:tok/none:pull", &err), 404);
    assert_int_equal(issuer_count(NULL), before + 2);
    assert_int_equal(
        issuer_count("\"scopes\": [\"repository:tok/none:pull\"]"), 1);
    assert_int_equal(request(a, url, "repository:tok/none:pull", &err), 404);
    assert_int_equal(issuer_count(NULL), before + 2);
    /* Two scopes go as two scope= parameters. */
    assert_int_equal(request(a, url,
                             "repository:tok/none:pull repository:tok/b:pull",
                             &err),
                     404);
    assert_int_equal(issuer_count("\"scopes\": [\"repository:tok/none:pull\", "
                                  "\"repository:tok/b:pull\"]"),
                     1);
    cairn_reg_auth_free(a);
}

/* The registry's challenge names a scope the caller did not ask for: the
 * token is asked again with it, once; refused when even that does not
 * help. */
static void test_challenge_scope(void **state)
{
    (void)state;
    login(g_tok_addr, "alice", "alice-pw");
    struct cairn_reg_auth *a = session(g_tok_addr);
    struct cairn_err err = {0};
    char url[256];
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    assert_int_equal(request(a, url, "", &err), 200);
    int before = issuer_count(NULL);
    /* A GET needs pull; the caller claims push only. */
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    assert_int_equal(request(a, url, "repository:tok/none:push", &err), 404);
    assert_int_equal(issuer_count(NULL), before + 2);
    assert_int_equal(issuer_count("\"scopes\": [\"repository:tok/none:push\", "
                                  "\"repository:tok/none:pull\"]"),
                     1);
    cairn_reg_auth_free(a);
    /* bob may pull but not push: the token for a push scope carries no
     * access; the challenge's pull scope is added and then it works. */
    login(g_tok_addr, "bob", "bob-pw");
    a = session(g_tok_addr);
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    assert_int_equal(request(a, url, "", &err), 200);
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    assert_int_equal(request(a, url, "repository:tok/none:push", &err), 404);
    cairn_reg_auth_free(a);
    /* Anonymous: nothing helps; the second refusal ends it. */
    setup(NULL);
    a = session(g_tok_addr);
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    assert_int_equal(request(a, url, "", &err), 200);
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    expect_fail(request(a, url, "repository:tok/none:push", &err), &err,
                "authentication required");
    cairn_reg_auth_free(a);
}

static void test_token_expires(void **state)
{
    (void)state;
    login(g_tok_addr, "alice", "alice-pw");
    issuer_set("ttl", "2");
    struct cairn_reg_auth *a = session(g_tok_addr);
    struct cairn_err err = {0};
    char url[256];
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    int before = issuer_count(NULL);
    assert_int_equal(request(a, url, "", &err), 200);
    assert_int_equal(issuer_count(NULL), before + 1);
    /* Past the token's two seconds, the next request fetches a new one. */
    struct timespec ts = {2, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(request(a, url, "", &err), 200);
    assert_int_equal(issuer_count(NULL), before + 2);
    cairn_reg_auth_free(a);
}

static void test_token_refused(void **state)
{
    (void)state;
    char url[256], want[128];
    struct cairn_err err = {0};
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    snprintf(want, sizeof want, "`cairn login %s`", g_tok_addr);
    /* A wrong password: the issuer says 401. */
    login(g_tok_addr, "alice", "wrong");
    struct cairn_reg_auth *a = session(g_tok_addr);
    expect_fail(request(a, url, "", &err), &err, want);
    expect_fail(CAIRN_E_AUTH, &err, "unauthorized");
    assert_null(strstr(err.msg, "wrong"));
    cairn_reg_auth_free(a);
    /* No login and no anonymous pull: the token for the repository grants
     * nothing, the registry refuses it, cairn says to log in. */
    setup(NULL);
    a = session(g_tok_addr);
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    expect_fail(request(a, url, "repository:tok/none:pull", &err), &err, want);
    expect_fail(CAIRN_E_AUTH, &err, "authentication required");
    cairn_reg_auth_free(a);
}

static void test_token_endpoint_fails(void **state)
{
    (void)state;
    login(g_tok_addr, "alice", "alice-pw");
    char url[256];
    struct cairn_err err = {0};
    snprintf(url, sizeof url, "%s/v2/", g_tok_url);
    issuer_set("mode", "500");
    struct cairn_reg_auth *a = session(g_tok_addr);
    expect_fail(request(a, url, "", &err), &err, "answered HTTP 500");
    expect_fail(CAIRN_E_AUTH, &err, g_tok_addr);
    cairn_reg_auth_free(a);
    issuer_set("mode", "garbage");
    a = session(g_tok_addr);
    expect_fail(request(a, url, "", &err), &err, "not a JSON object");
    cairn_reg_auth_free(a);
    /* An issuer that stops answering: the transport's timeout, set by
     * prepare, ends the wait. */
    issuer_set("mode", "hang");
    g_timeout_s = 1;
    a = session(g_tok_addr);
    expect_fail(request(a, url, "", &err), &err, "imeout");
    cairn_reg_auth_free(a);
    issuer_set("mode", "");
    /* It works again afterwards. */
    a = session(g_tok_addr);
    assert_int_equal(request(a, url, "", &err), 200);
    cairn_reg_auth_free(a);
}

/* An identity token (what `docker login` keeps for token registries) is
 * traded with the OAuth2 refresh_token form. */
static void test_identity_token(void **state)
{
    (void)state;
    char cmd[1024], path[256], rt[256] = "";
    snprintf(path, sizeof path, "%s/rt", g_dir);
    snprintf(cmd, sizeof cmd,
             "curl -s -u alice:alice-pw '%s?service=cairn-registry&"
             "offline_token=true' | jq -r .refresh_token > '%s'",
             g_issuer_url, path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(rt, sizeof rt, f));
    fclose(f);
    rt[strcspn(rt, "\n")] = '\0';
    assert_true(strlen(rt) > 10);
    struct cairn_reg_creds c = {.secret = rt, .identity_token = 1};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_store(g_tok_addr, &c, &err), 0);
    struct cairn_reg_auth *a = session(g_tok_addr);
    char url[256];
    snprintf(url, sizeof url, "%s/v2/tok/none/tags/list", g_tok_url);
    int before = issuer_count("\"grant_type\": \"refresh_token\"");
    assert_int_equal(request(a, url, "repository:tok/none:pull", &err), 404);
    assert_int_equal(issuer_count("\"grant_type\": \"refresh_token\""),
                     before + 1);
    cairn_reg_auth_free(a);
    /* A refresh token the issuer does not know: refused. */
    c.secret = "not-a-refresh-token";
    assert_int_equal(cairn_reg_creds_store(g_tok_addr, &c, &err), 0);
    a = session(g_tok_addr);
    expect_fail(request(a, url, "repository:tok/none:pull", &err), &err,
                "cairn login");
    cairn_reg_auth_free(a);
}

static void test_basic(void **state)
{
    (void)state;
    char url[256], want[128];
    struct cairn_err err = {0};
    snprintf(url, sizeof url, "%s/v2/", g_basic_url);
    snprintf(want, sizeof want, "`cairn login %s`", g_basic_addr);
    /* No login: the Basic challenge cannot be answered. */
    struct cairn_reg_auth *a = session(g_basic_addr);
    expect_fail(request(a, url, "", &err), &err, want);
    expect_fail(CAIRN_E_AUTH, &err, "authentication required");
    cairn_reg_auth_free(a);
    /* The stored password goes with every later request. */
    login(g_basic_addr, "alice", "alice-pw");
    a = session(g_basic_addr);
    assert_int_equal(request(a, url, "", &err), 200);
    char *h = NULL;
    assert_int_equal(cairn_reg_auth_header(a, "repository:x:pull", &h, &err), 0);
    /* base64("alice:alice-pw") */
    assert_string_equal(h, "Basic YWxpY2U6YWxpY2UtcHc=");
    free(h);
    cairn_reg_auth_free(a);
    /* A wrong password: refused on the retry. */
    login(g_basic_addr, "alice", "nope");
    a = session(g_basic_addr);
    expect_fail(request(a, url, "", &err), &err, want);
    expect_fail(CAIRN_E_AUTH, &err, "unauthorized");
    cairn_reg_auth_free(a);
    assert_int_equal(g_prepared, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_token_flow_and_reuse, setup),
        cmocka_unit_test_setup(test_challenge_scope, setup),
        cmocka_unit_test_setup(test_token_expires, setup),
        cmocka_unit_test_setup(test_token_refused, setup),
        cmocka_unit_test_setup(test_token_endpoint_fails, setup),
        cmocka_unit_test_setup(test_identity_token, setup),
        cmocka_unit_test_setup(test_basic, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
