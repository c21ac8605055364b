/* RUN --mount parsing: BuildKit's keys, aliases, defaults, CSV quoting,
 * expansion and its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cachekey/runmount.h"
#include "common/error.h"

static int parse(const char *text, struct ck_mount *m, struct cairn_err *e)
{
    memset(m, 0, sizeof *m);
    cairn_err_clear(e);
    return ck_mount_parse(text, NULL, NULL, m, e);
}

static void test_defaults_and_aliases(void **state)
{
    (void)state;
    struct ck_mount m;
    struct cairn_err e;
    assert_int_equal(parse("target=/src", &m, &e), 0);
    assert_int_equal(m.type, CK_MOUNT_BIND);
    assert_string_equal(m.target, "/src");
    assert_true(m.readonly); /* bind: read-only unless rw */
    assert_null(m.source);
    ck_mount_clear(&m);

    assert_int_equal(parse("type=bind,src=a,dst=/b,rw", &m, &e), 0);
    assert_string_equal(m.source, "a");
    assert_string_equal(m.target, "/b");
    assert_false(m.readonly);
    ck_mount_clear(&m);

    assert_int_equal(parse("TYPE=Cache,destination=/c,Sharing=LOCKED,from=st,"
                           "source=sub,id=x,mode=0700,uid=1,gid=2",
                           &m, &e),
                     0);
    assert_int_equal(m.type, CK_MOUNT_CACHE);
    assert_false(m.readonly); /* cache: writable by default */
    assert_int_equal(m.sharing, CK_SHARING_LOCKED);
    assert_string_equal(m.from, "st");
    assert_string_equal(m.id, "x");
    assert_true(m.has_mode && m.mode == 0700);
    assert_true(m.has_uid && m.uid == 1);
    assert_true(m.has_gid && m.gid == 2);
    ck_mount_clear(&m);

    assert_int_equal(parse("type=cache,target=/c,ro", &m, &e), 0);
    assert_true(m.readonly);
    ck_mount_clear(&m);
    assert_int_equal(parse("type=bind,target=/c,readonly=false", &m, &e), 0);
    assert_false(m.readonly);
    ck_mount_clear(&m);
    assert_int_equal(parse("type=bind,target=/c,readwrite=0", &m, &e), 0);
    assert_true(m.readonly);
    ck_mount_clear(&m);

    assert_int_equal(parse("type=tmpfs,target=/t,size=1.5k", &m, &e), 0);
    assert_int_equal(m.type, CK_MOUNT_TMPFS);
    assert_int_equal(m.size, 1536);
    assert_false(m.readonly);
    ck_mount_clear(&m);

    assert_int_equal(parse("type=secret,id=tok,required", &m, &e), 0);
    assert_true(m.required);
    assert_true(m.readonly);
    assert_string_equal(m.id, "tok");
    ck_mount_clear(&m);
    assert_int_equal(parse("type=ssh,required=false", &m, &e), 0);
    assert_false(m.required);
    ck_mount_clear(&m);
}

static void test_csv_quoting(void **state)
{
    (void)state;
    struct ck_mount m;
    struct cairn_err e;
    assert_int_equal(parse("\"target=/a,b\",\"source=say \"\"hi\"\"\"", &m, &e),
                     0);
    assert_string_equal(m.target, "/a,b");
    assert_string_equal(m.source, "say \"hi\"");
    ck_mount_clear(&m);
    assert_int_equal(parse("target=/a\"b", &m, &e), CAIRN_E_PARSE);
    assert_non_null(strstr(e.msg, "csv"));
    assert_int_equal(parse("\"target=/a", &m, &e), CAIRN_E_PARSE);
    assert_int_equal(parse("\"target=/a\"x", &m, &e), CAIRN_E_PARSE);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"type=nfs,target=/x", "unsupported mount type \"nfs\""},
        {"target=/x,colour=red", "unexpected key 'colour' in 'colour=red'"},
        {"target=/x,mode=0755", "mode not allowed for \"bind\" type mounts"},
        {"type=tmpfs,target=/x,uid=1", "uid not allowed for \"tmpfs\""},
        {"target=/x,gid=1", "gid not allowed for \"bind\""},
        {"type=cache,target=/x,size=1m",
         "unexpected key 'size' for mount type 'cache'"},
        {"target=/x,required",
         "unexpected key 'required' for mount type 'bind'"},
        {"type=cache,target=/x,sharing=maybe",
         "unsupported sharing value \"maybe\""},
        {"target=/x,sharing=locked",
         "invalid cache sharing set for bind mount"},
        {"type=secret,from=a,id=x", "secret mount should not have a from"},
        {"type=secret,mode=0400", "one of source, target required"},
        {"type=secret,source=a,id=b", "both source and id can't be set"},
        {"type=tmpfs,target=/x,from=a", "from is not allowed for \"tmpfs\""},
        {"target=/x,ro=maybe", "invalid value for ro: maybe"},
        {"type=cache,target=/x,mode=0999", "invalid value 0999 for mode"},
        {"type=cache,target=/x,uid=-1", "invalid value -1 for uid"},
        {"type=cache,target=/x,gid=4294967296",
         "invalid value 4294967296 for gid"},
        {"type=tmpfs,target=/x,size=lots", "invalid value for size: lots"},
        {"target", "invalid field 'target' must be a key=value pair"},
        {"from=$STAGE,target=/x", "'from' doesn't support variable expansion"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ck_mount m;
        struct cairn_err e;
        int rc = parse(cases[i].text, &m, &e);
        if (rc != CAIRN_E_PARSE || strstr(e.msg, cases[i].msg) == NULL)
            fail_msg("%s: rc %d, message \"%s\", want \"%s\"", cases[i].text,
                     rc, e.msg, cases[i].msg);
    }
    /* Oversize input is refused before any work. */
    char *big = malloc(CK_MOUNT_MAX_TEXT + 16);
    assert_non_null(big);
    memset(big, 'a', CK_MOUNT_MAX_TEXT + 15);
    big[CK_MOUNT_MAX_TEXT + 15] = '\0';
    struct ck_mount m;
    struct cairn_err e;
    assert_int_equal(parse(big, &m, &e), CAIRN_E_TOOBIG);
    free(big);
}

static int upper_expand(void *arg, const char *value, char **out,
                        struct cairn_err *err)
{
    int *calls = arg;
    (*calls)++;
    if (strcmp(value, "$BAD") == 0)
        return cairn_err_set(err, CAIRN_E_PARSE, "bad substitution");
    *out = strdup(strcmp(value, "$DIR") == 0 ? "/expanded" : value);
    return *out ? 0 : CAIRN_E_NOMEM;
}

static void test_expansion(void **state)
{
    (void)state;
    struct ck_mount m;
    struct cairn_err e;
    int calls = 0;
    memset(&m, 0, sizeof m);
    assert_int_equal(ck_mount_parse("type=cache,target=$DIR,from=stage",
                                    upper_expand, &calls, &m, &e),
                     0);
    assert_string_equal(m.target, "/expanded");
    assert_string_equal(m.from, "stage");
    assert_int_equal(calls, 2); /* type and target; never from */
    ck_mount_clear(&m);
    assert_int_equal(
        ck_mount_parse("target=$BAD", upper_expand, &calls, &m, &e),
        CAIRN_E_PARSE);
    assert_string_equal(e.msg, "bad substitution");
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"1b", 1},
        {"1k", 1024},
        {"1KB", 1024},
        {"2m", 2u << 20},
        {"1.5g", 3ull << 29},
        {"1T", 1ull << 40},
        {"1pb", 1ull << 50},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 7;
        assert_int_equal(ck_mount_parse_size(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].v);
    }
    static const char *const bad[] = {
        "", "k", "-1", "1x", "1.2.3", ".", "1 k", "99999999999999999999999p"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        assert_int_equal(ck_mount_parse_size(bad[i], &v), CAIRN_E_PARSE);
        assert_int_equal(v, 7); /* untouched on failure */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_aliases),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_expansion),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
