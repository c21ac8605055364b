/* The unpack rules (client/store/layer_rules.c) on entry sequences: what they
 * accept and refuse, with the reason, and that a later entry is checked
 * against the layer as the earlier ones left it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "client/remote/config.h"
#include "client/store/layer_rules.h"
#include "common/error.h"

struct ent {
    const char *name;
    mode_t type;
    const char *hard;
};

/* Feeds e[0..n) to fresh rules; returns the index of the first refused
 * entry (n when all pass) and its reason in why. */
static size_t run(const struct ent *e, size_t n, char *why, size_t wl)
{
    struct cairn_layer_rules *r = cairn_layer_rules_new();
    assert_non_null(r);
    size_t i = 0;
    for (; i < n; i++) {
        struct cairn_layer_rule_view v;
        if (cairn_layer_rules_check(r, e[i].name, e[i].type, e[i].hard, &v,
                                    why, wl) != 0)
            break;
    }
    cairn_layer_rules_free(r);
    return i;
}

#define RUN(arr, why) run(arr, sizeof arr / sizeof arr[0], why, sizeof why)

static void test_accepts_ordinary_layers(void **state)
{
    (void)state;
    char why[256] = "";
    const struct ent ok[] = {
        {"./", S_IFDIR, NULL},
        {"./etc/", S_IFDIR, NULL},
        {"etc/passwd", S_IFREG, NULL},
        {"etc/passwd.bak", S_IFREG, "etc/passwd"},
        {"bin", S_IFLNK, NULL},            /* bin -> usr/bin */
        {"lnk", S_IFLNK, NULL},
        {"lnk", S_IFDIR, NULL},            /* a directory replaces it */
        {"lnk/x", S_IFREG, NULL},
        {"f", S_IFREG, NULL},
        {"f/y", S_IFREG, NULL},            /* the file becomes a directory */
        {"usr/.wh.gone", S_IFREG, NULL},
        {"usr/.wh..wh..opq", S_IFREG, NULL},
        {"usr/.wh..wh.plnk", S_IFREG, NULL},
        {"sock", S_IFSOCK, NULL},
        {"a/./b//c", S_IFREG, NULL},
        {"hc", S_IFREG, "./a/b/c"},
        /* Absolute names are the same paths under the root, as Docker and
         * containerd unpack them; umoci writes "/" for the root. */
        {"/", S_IFDIR, NULL},
        {"/etc/group", S_IFREG, NULL},
        {"/hg", S_IFREG, "/etc/group"},
    };
    assert_int_equal(RUN(ok, why), sizeof ok / sizeof ok[0]);
}

static void refused(const struct ent *e, size_t n, size_t at, const char *part)
{
    char why[256] = "";
    size_t got = run(e, n, why, sizeof why);
    if (got != at || strstr(why, part) == NULL)
        fail_msg("refused entry %zu (want %zu): \"%s\", want \"%s\"", got, at,
                 why, part);
}
#define REFUSED(arr, at, part) refused(arr, sizeof arr / sizeof arr[0], at, part)

static void test_refuses_escapes(void **state)
{
    (void)state;
    const struct ent dotdot[] = {{"a/../../x", S_IFREG, NULL}};
    REFUSED(dotdot, 0, "escapes with '..'");
    const struct ent absdotdot[] = {{"/../etc/passwd", S_IFREG, NULL}};
    REFUSED(absdotdot, 0, "escapes with '..'");
    const struct ent absroot[] = {{"/", S_IFREG, NULL}};
    REFUSED(absroot, 0, "root is not a directory");
    const struct ent empty[] = {{"", S_IFREG, NULL}};
    REFUSED(empty, 0, "without a name");
    const struct ent root[] = {{"./", S_IFREG, NULL}};
    REFUSED(root, 0, "root is not a directory");
    const struct ent linkfile[] = {{"d", S_IFDIR, NULL},
                                   {"d/l", S_IFLNK, NULL},
                                   {"d/l/x/y", S_IFREG, NULL}};
    REFUSED(linkfile, 2, "parent directory is a symlink of this layer: d/l");
    const struct ent whlink[] = {{"l", S_IFLNK, NULL},
                                 {"l/.wh.x", S_IFREG, NULL}};
    REFUSED(whlink, 1, "whiteout under the symlink l");
    const struct ent whfile[] = {{"f", S_IFREG, NULL},
                                 {"f/.wh..wh..opq", S_IFREG, NULL}};
    REFUSED(whfile, 1, "whiteout under the file f");
    const struct ent whbad[] = {{"a/.wh..", S_IFREG, NULL}};
    REFUSED(whbad, 0, "bad whiteout");
}

static void test_refuses_bad_hard_links(void **state)
{
    (void)state;
    const struct ent out[] = {{"h", S_IFREG, "etc/shadow"}};
    REFUSED(out, 0, "hard link target etc/shadow is not a file of this layer");
    const struct ent up[] = {{"h", S_IFREG, "../etc/shadow"}};
    REFUSED(up, 0, "escapes with '..'");
    /* The host's /etc/shadow is not what "/etc/shadow" names in a layer. */
    const struct ent abs[] = {{"h", S_IFREG, "/etc/shadow"}};
    REFUSED(abs, 0, "hard link target etc/shadow is not a file of this layer");
    const struct ent dir[] = {{"d", S_IFDIR, NULL}, {"h", S_IFREG, "d"}};
    REFUSED(dir, 1, "not a file of this layer");
    const struct ent self[] = {{"h", S_IFREG, "./h"}};
    REFUSED(self, 0, "hard link to itself");
    const struct ent later[] = {{"h", S_IFREG, "f"}, {"f", S_IFREG, NULL}};
    REFUSED(later, 0, "not a file of this layer");
    const struct ent vialink[] = {{"l", S_IFLNK, NULL},
                                  {"h", S_IFREG, "l/shadow"}};
    REFUSED(vialink, 1, "reached through the symlink l");
    /* A hard link to a symlink is a symlink: nothing may go through it. */
    const struct ent tosym[] = {{"l", S_IFLNK, NULL},
                                {"h", S_IFREG, "l"},
                                {"h/x", S_IFREG, NULL}};
    REFUSED(tosym, 2, "parent directory is a symlink of this layer: h");
    /* A file a directory replaced is no link target any more. */
    const struct ent gone[] = {{"f", S_IFREG, NULL},
                               {"f", S_IFDIR, NULL},
                               {"h", S_IFREG, "f"}};
    REFUSED(gone, 2, "not a file of this layer");
}

static void test_config_sizes(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(cairn_config_size("10G", false, &v), 0);
    assert_true(v == ((int64_t)10 << 30));
    assert_int_equal(cairn_config_size("256k", true, &v), 0);
    assert_true(v == 256 * 1024);
    assert_int_equal(cairn_config_size("1MiB/s", true, &v), 0);
    assert_true(v == 1 << 20);
    assert_int_equal(cairn_config_size("1M/s", false, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_size("12q", false, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_size("0", false, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_size("-1", false, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_size("2048T", false, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_size("1024T", false, &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_ordinary_layers),
        cmocka_unit_test(test_refuses_escapes),
        cmocka_unit_test(test_refuses_bad_hard_links),
        cmocka_unit_test(test_config_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
