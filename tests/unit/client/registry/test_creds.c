/* client/registry/creds.c and credhelper.c against real files in a temp
 * $DOCKER_CONFIG and real credential helpers (shell scripts this test
 * writes into a temp folder put first in PATH). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/registry/creds.h"
#include "common/fdio.h"

static char g_dir[64];
static char g_bin[128];
static char g_conf[128];
static char g_path[300];

static void write_file(const char *path, const char *text, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(cairn_write_all(fd, text, strlen(text)), 0);
    close(fd);
    chmod(path, mode);
}

static void write_config(const char *text)
{
    write_file(g_path, text, 0600);
}

static json_t *read_config(void)
{
    json_t *j = json_load_file(g_path, 0, NULL);
    assert_non_null(j);
    return j;
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A credential helper keeping one file per server in $g_dir/helper,
 * logging each call's action. */
static const char HELPER_SCRIPT[] =
    "#!/bin/sh\n"
    "d=\"$CAIRN_TEST_HELPER_DIR\"\n"
    "echo \"$1\" >> \"$d/calls\"\n"
    "case \"$1\" in\n"
    "get) IFS= read -r s; f=\"$d/$(printf %s \"$s\" | tr '/:' '__')\"\n"
    "  if [ -f \"$f\" ]; then cat \"$f\"; else\n"
    "  echo 'credentials not found in native keychain'; exit 1; fi;;\n"
    "store) cat > \"$d/store.in\"\n"
    "  s=$(sed -n 's/.*\"ServerURL\":\"\\([^\"]*\\)\".*/\\1/p' \"$d/store.in\")\n"
    "  cp \"$d/store.in\" \"$d/$(printf %s \"$s\" | tr '/:' '__')\";;\n"
    "erase) IFS= read -r s; f=\"$d/$(printf %s \"$s\" | tr '/:' '__')\"\n"
    "  if [ -f \"$f\" ]; then rm \"$f\"; else\n"
    "  echo 'credentials not found in native keychain'; exit 1; fi;;\n"
    "*) echo \"unknown action $1\" >&2; exit 2;;\n"
    "esac\n";

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/cairn-creds.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_bin, sizeof g_bin, "%s/bin", g_dir);
    snprintf(g_conf, sizeof g_conf, "%s/conf", g_dir);
    snprintf(g_path, sizeof g_path, "%s/config.json", g_conf);
    assert_int_equal(mkdir(g_bin, 0700), 0);
    assert_int_equal(mkdir(g_conf, 0700), 0);
    char p[600], helper_dir[300];
    snprintf(p, sizeof p, "%s/docker-credential-test", g_bin);
    write_file(p, HELPER_SCRIPT, 0755);
    snprintf(p, sizeof p, "%s/docker-credential-hang", g_bin);
    write_file(p, "#!/bin/sh\nexec sleep 30\n", 0755);
    snprintf(p, sizeof p, "%s/docker-credential-garbage", g_bin);
    write_file(p, "#!/bin/sh\necho 'not json'\n", 0755);
    snprintf(p, sizeof p, "%s/docker-credential-huge", g_bin);
    write_file(p, "#!/bin/sh\nexec head -c 10000000 /dev/zero\n", 0755);
    snprintf(p, sizeof p, "%s/docker-credential-broken", g_bin);
    write_file(p, "#!/bin/sh\necho 'the keyring is locked' >&2\nexit 3\n",
               0755);
    snprintf(helper_dir, sizeof helper_dir, "%s/helper", g_dir);
    assert_int_equal(mkdir(helper_dir, 0700), 0);
    setenv("CAIRN_TEST_HELPER_DIR", helper_dir, 1);
    snprintf(p, sizeof p, "%s:/usr/bin:/bin", g_bin);
    setenv("PATH", p, 1);
    setenv("DOCKER_CONFIG", g_conf, 1);
    unsetenv("CAIRN_CREDHELPER_TIMEOUT");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(g_dir);
    return 0;
}

static void expect_creds(const char *registry, const char *user,
                         const char *secret, int idt)
{
    struct cairn_reg_creds c = {0};
    struct cairn_err err = {0};
    int rc = cairn_reg_creds_lookup(registry, &c, &err);
    if (rc != 0)
        fail_msg("%s: %d %s", registry, rc, err.msg);
    if (user)
        assert_string_equal(c.username, user);
    else
        assert_null(c.username);
    assert_string_equal(c.secret, secret);
    assert_int_equal(c.identity_token, idt);
    cairn_reg_creds_clear(&c);
}

static void expect_lookup_fails(const char *registry, int code,
                                const char *in_msg)
{
    struct cairn_reg_creds c = {0};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_lookup(registry, &c, &err), code);
    assert_null(c.secret);
    if (in_msg && !strstr(err.msg, in_msg))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, in_msg);
}

/* base64("alice:s3cret:x") and friends. */
static void test_auths_key_variants(void **state)
{
    (void)state;
    write_config("{\"auths\": {"
                 "\"plain.example:5000\": {\"auth\": \"YWxpY2U6czNjcmV0Ong=\"},"
                 "\"https://tls.example\": {\"auth\": \"Ym9iOnB3\"},"
                 "\"http://old.example:81\": {\"auth\": \"Y2Fyb2w6cHc=\"},"
                 "\"https://v1.example/v1/\": {\"auth\": \"ZGF2ZTpwdw==\"},"
                 "\"https://index.docker.io/v1/\": {\"auth\": \"aHViOmh1YnB3\"},"
                 "\"idt.example\": {\"auth\": \"ZXZlOg==\", "
                 "\"identitytoken\": \"refresh-1\"},"
                 "\"legacy.example\": {\"username\": \"fred\", "
                 "\"password\": \"pw\"},"
                 "\"empty.example\": {}},"
                 "\"psFormat\": \"table\"}");
    /* The secret keeps its own ':' (only the first separates). */
    expect_creds("plain.example:5000", "alice", "s3cret:x", 0);
    expect_creds("tls.example", "bob", "pw", 0);
    expect_creds("old.example:81", "carol", "pw", 0);
    expect_creds("v1.example", "dave", "pw", 0);
    expect_creds("docker.io", "hub", "hubpw", 0);
    expect_creds("registry-1.docker.io", "hub", "hubpw", 0);
    expect_creds("index.docker.io", "hub", "hubpw", 0);
    expect_creds("idt.example", NULL, "refresh-1", 1);
    expect_creds("legacy.example", "fred", "pw", 0);
    /* A port is part of the name. */
    expect_lookup_fails("plain.example", CAIRN_E_NOTFOUND, "no credentials");
    expect_lookup_fails("empty.example", CAIRN_E_NOTFOUND, NULL);
    expect_lookup_fails("other.example", CAIRN_E_NOTFOUND, NULL);
}

static void test_missing_file_is_anonymous(void **state)
{
    (void)state;
    unlink(g_path);
    expect_lookup_fails("r.example", CAIRN_E_NOTFOUND, NULL);
    write_config("");
    expect_lookup_fails("r.example", CAIRN_E_NOTFOUND, NULL);
}

static void test_hostile_files(void **state)
{
    (void)state;
    write_config("{\"auths\": {\"r.example\": {\"auth\": \"Ym9i\"");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, g_path);
    write_config("[1, 2]");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "is not a JSON object");
    write_config("{\"auths\": []}");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "\"auths\"");
    write_config("{\"auths\": {\"r.example\": \"x\"}}");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "an entry of \"auths\"");
    write_config("{\"credsStore\": 7}");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "\"credsStore\"");
    /* Not base64, and base64 without a ':' inside. */
    write_config("{\"auths\": {\"r.example\": {\"auth\": \"!!!!\"}}}");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "r.example");
    write_config("{\"auths\": {\"r.example\": {\"auth\": \"Ym9i\"}}}");
    expect_lookup_fails("r.example", CAIRN_E_PARSE, "base64");
    /* Past the size cap: refused before parsing. */
    size_t n = 5 * 1024 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    write_config(big);
    free(big);
    expect_lookup_fails("r.example", CAIRN_E_TOOBIG, "larger than");
    /* A folder where the file should be. */
    unlink(g_path);
    assert_int_equal(mkdir(g_path, 0700), 0);
    expect_lookup_fails("r.example", CAIRN_E_INVAL, "not a regular file");
    rmdir(g_path);
    /* A FIFO: refused, not waited on. */
    assert_int_equal(mkfifo(g_path, 0600), 0);
    expect_lookup_fails("r.example", CAIRN_E_INVAL, "not a regular file");
    unlink(g_path);
    /* A registry name that is not one. */
    expect_lookup_fails("a b", CAIRN_E_INVAL, "host[:port]");
    expect_lookup_fails("", CAIRN_E_INVAL, NULL);
}

static void test_store_keeps_other_keys(void **state)
{
    (void)state;
    write_config("{\"auths\": {\"https://r.example:5000\": {\"auth\": "
                 "\"b2xkOm9sZA==\", \"email\": \"a@b\"},"
                 "\"keep.example\": {\"auth\": \"a2VlcDprZWVw\"}},"
                 "\"proxies\": {\"default\": {\"httpProxy\": \"x\"}},"
                 "\"psFormat\": \"table\"}");
    chmod(g_path, 0644);
    struct cairn_reg_creds c = {.username = "new", .secret = "n:ew"};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_store("r.example:5000", &c, &err), 0);
    expect_creds("r.example:5000", "new", "n:ew", 0);
    expect_creds("keep.example", "keep", "keep", 0);
    struct stat st;
    assert_int_equal(stat(g_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    json_t *j = read_config();
    /* The existing key is updated in place, its other fields kept. */
    json_t *e = json_object_get(json_object_get(j, "auths"),
                                "https://r.example:5000");
    assert_string_equal(json_string_value(json_object_get(e, "email")), "a@b");
    assert_string_equal(json_string_value(json_object_get(e, "auth")),
                        "bmV3Om46ZXc=");
    assert_string_equal(json_string_value(json_object_get(j, "psFormat")),
                        "table");
    assert_non_null(json_object_get(json_object_get(j, "proxies"), "default"));
    assert_int_equal(json_object_size(json_object_get(j, "auths")), 2);
    json_decref(j);
    /* No temporary file is left beside it. */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", g_conf);
    assert_int_equal(system(cmd), 0);
}

static void test_store_creates_folder_and_hub_key(void **state)
{
    (void)state;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/fresh/sub", g_dir);
    setenv("DOCKER_CONFIG", dir, 1);
    struct cairn_reg_creds c = {.username = "u", .secret = "p"};
    struct cairn_err err = {0};
    /* Only the config folder itself is made, not its parents. */
    assert_int_not_equal(cairn_reg_creds_store("docker.io", &c, &err), 0);
    snprintf(dir, sizeof dir, "%s/fresh", g_dir);
    setenv("DOCKER_CONFIG", dir, 1);
    assert_int_equal(cairn_reg_creds_store("docker.io", &c, &err), 0);
    char p[500];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    assert_non_null(json_object_get(json_object_get(j, "auths"),
                                    "https://index.docker.io/v1/"));
    json_decref(j);
    expect_creds("registry-1.docker.io", "u", "p", 0);
    /* An identity token. */
    struct cairn_reg_creds t = {.secret = "tok", .identity_token = 1};
    assert_int_equal(cairn_reg_creds_store("r.example", &t, &err), 0);
    expect_creds("r.example", NULL, "tok", 1);
    setenv("DOCKER_CONFIG", g_conf, 1);
}

static void test_store_through_symlink(void **state)
{
    (void)state;
    char real[400];
    snprintf(real, sizeof real, "%s/real.json", g_dir);
    write_file(real, "{\"psFormat\": \"x\"}", 0600);
    unlink(g_path);
    assert_int_equal(symlink(real, g_path), 0);
    struct cairn_reg_creds c = {.username = "u", .secret = "p"};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_store("r.example", &c, &err), 0);
    struct stat st;
    assert_int_equal(lstat(g_path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    expect_creds("r.example", "u", "p", 0);
    unlink(g_path);
}

static void test_erase_every_variant(void **state)
{
    (void)state;
    write_config("{\"auths\": {\"r.example\": {\"auth\": \"dTpw\"},"
                 "\"https://r.example\": {\"auth\": \"dTpw\"},"
                 "\"http://r.example/v2/\": {\"auth\": \"dTpw\"},"
                 "\"r.example:5000\": {\"auth\": \"dTpw\"}}}");
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_erase("r.example", &err), 0);
    expect_lookup_fails("r.example", CAIRN_E_NOTFOUND, NULL);
    expect_creds("r.example:5000", "u", "p", 0);
    json_t *j = read_config();
    assert_int_equal(json_object_size(json_object_get(j, "auths")), 1);
    json_decref(j);
    assert_int_equal(cairn_reg_creds_erase("r.example", &err),
                     CAIRN_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "not logged in to r.example"));
}

static int count_calls(const char *action)
{
    char p[400], line[64];
    snprintf(p, sizeof p, "%s/calls", getenv("CAIRN_TEST_HELPER_DIR"));
    FILE *f = fopen(p, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strncmp(line, action, strlen(action)) == 0;
    if (f)
        fclose(f);
    return n;
}

static void test_helper_round_trip(void **state)
{
    (void)state;
    write_config("{\"credsStore\": \"garbage\", "
                 "\"credHelpers\": {\"r.example:5000\": \"test\"},"
                 "\"auths\": {\"r.example:5000\": {\"auth\": \"b2xkOm9sZA==\"}}}");
    struct cairn_err err = {0};
    expect_lookup_fails("r.example:5000", CAIRN_E_NOTFOUND, "docker-credential");
    struct cairn_reg_creds c = {.username = "hu", .secret = "h\"p"};
    assert_int_equal(cairn_reg_creds_store("r.example:5000", &c, &err), 0);
    expect_creds("r.example:5000", "hu", "h\"p", 0);
    /* The file keeps an empty entry: no secret in it. */
    json_t *j = read_config();
    json_t *e = json_object_get(json_object_get(j, "auths"), "r.example:5000");
    assert_non_null(e);
    assert_int_equal(json_object_size(e), 0);
    assert_string_equal(json_string_value(json_object_get(j, "credsStore")),
                        "garbage");
    json_decref(j);
    /* Identity tokens travel as Username "<token>". */
    struct cairn_reg_creds t = {.secret = "rt", .identity_token = 1};
    assert_int_equal(cairn_reg_creds_store("r.example:5000", &t, &err), 0);
    expect_creds("r.example:5000", NULL, "rt", 1);
    int gets = count_calls("get");
    assert_true(gets >= 2);
    assert_int_equal(count_calls("store"), 2);
    assert_int_equal(cairn_reg_creds_erase("r.example:5000", &err), 0);
    assert_int_equal(count_calls("erase"), 1);
    expect_lookup_fails("r.example:5000", CAIRN_E_NOTFOUND, NULL);
    assert_int_equal(cairn_reg_creds_erase("r.example:5000", &err),
                     CAIRN_E_NOTFOUND);
    /* Other registries go to credsStore, here a helper that answers
     * nonsense: a parse error naming it. */
    expect_lookup_fails("other.example", CAIRN_E_PARSE,
                        "docker-credential-garbage");
}

static void test_helper_failures(void **state)
{
    (void)state;
    write_config("{\"credHelpers\": {\"a.example\": \"missing\","
                 "\"b.example\": \"broken\", \"c.example\": \"huge\","
                 "\"d.example\": \"../../bin/sh\", \"e.example\": \"hang\"}}");
    expect_lookup_fails("a.example", CAIRN_E_FAILED,
                        "docker-credential-missing");
    expect_lookup_fails("b.example", CAIRN_E_FAILED, "the keyring is locked");
    expect_lookup_fails("b.example", CAIRN_E_FAILED, "exited 3");
    expect_lookup_fails("c.example", CAIRN_E_TOOBIG, "output over");
    expect_lookup_fails("d.example", CAIRN_E_INVAL, "not a plain word");
    setenv("CAIRN_CREDHELPER_TIMEOUT", "1", 1);
    expect_lookup_fails("e.example", CAIRN_E_TIMEOUT, "killed");
    unsetenv("CAIRN_CREDHELPER_TIMEOUT");
    struct cairn_reg_creds c = {.username = "u", .secret = "p"};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_creds_store("b.example", &c, &err),
                     CAIRN_E_FAILED);
    /* A failed helper store leaves the file as it was. */
    json_t *j = read_config();
    assert_null(json_object_get(j, "auths"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auths_key_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_anonymous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_keeps_other_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_creates_folder_and_hub_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_through_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_every_variant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helper_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_helper_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
