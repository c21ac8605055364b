#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachekey/dockerignore.h"
#include "common/error.h"

/* One row: the .dockerignore text, a context-relative path, and whether
 * Docker excludes it. Expectations come from moby/patternmatcher's own
 * tests (MatchesOrParentMatches) and from reading its code. */
struct ig_case {
    const char *text;
    const char *path;
    bool excluded;
};

static const struct ig_case cases[] = {
    /* Plain names, comments, blank lines, whitespace. */
    {"foo\n", "foo", true},
    {"foo\n", "foo/bar/baz", true}, /* parent dir excluded */
    {"foo\n", "foobar", false},
    {"foo\n", "bar/foo", false}, /* patterns are anchored at the root */
    {"# foo\n", "foo", false},
    {"#foo\nbar\n", "bar", true},
    {" #foo\n", "#foo", true}, /* only a '#' in column 1 starts a comment */
    {"\n\n   \n\tfoo  \t\n", "foo", true},
    {"foo\r\nbar\r\n", "bar", true},
    {"\xef\xbb\xbf#c\nx\n", "x", true}, /* BOM dropped, then comment */
    {"\xef\xbb\xbf" "x\n", "x", true},
    {"foo", "foo", true}, /* no final newline */
    /* Cleaning: leading '/', '.', '..', duplicate and trailing slashes. */
    {"/foo\n", "foo", true},
    {"//foo//bar/\n", "foo/bar", true},
    {"./foo\n", "foo", true},
    {"foo/./bar\n", "foo/bar", true},
    {"foo/../bar\n", "bar", true},
    {"foo/../bar\n", "foo/bar", false},
    {"a/b/../../c\n", "c", true},
    {"../foo\n", "foo", false}, /* stays "../foo": never inside the context */
    {"/../foo\n", "foo", true}, /* rooted: ".." at the root is dropped */
    {"foo /\n", "foo", true},   /* Clean gives "foo " and Docker trims again */
    {".\n", "foo", false},
    /* '*', '?' and character classes stay inside one path component. */
    {"*.go\n", "main.go", true},
    {"*.go\n", "cmd/main.go", false},
    {"*/*.go\n", "cmd/main.go", true},
    {"*\n", "anything/below", true},
    {"a*\n", "ab/c", true},
    {"a*/b\n", "abc/b", true},
    {"a*/b\n", "a/c/b", false},
    {"a*b*c*d*e*/f\n", "axbxcxdxe/f", true},
    {"a*b*c*d*e*/f\n", "axbxcxdxe/xxx/f", false},
    {"a*b?c*x\n", "abxbbxdbxebxczzx", true},
    {"a*b?c*x\n", "abxbbxdbxebxczzy", false},
    {"abc?def\n", "abcZdef", true},
    {"abc?def\n", "abcdef", false},
    {"a?b\n", "a/b", false},
    {"a?b\n", "a\xe2\x98\xba" "b", true}, /* '?' is one character, not byte */
    {"a???b\n", "a\xe2\x98\xba" "b", false},
    {"a[b-d]e\n", "ace", true},
    {"a[b-d]e\n", "aae", false},
    {"a[^b-d]e\n", "aze", true},
    {"a[^b-d]e\n", "ace", false},
    {"ab[c]\n", "abc", true},
    {"[a-\xce\xb6]*\n", "\xce\xb1", true}, /* [a-ζ] matches α */
    {"[\\]a]\n", "]", true},
    {"[x\\-]\n", "-", true},
    {"[x\\-]\n", "z", false},
    {"[!a]\n", "!", true}, /* '!' does not negate in Go syntax */
    {".*\n", ".env", true},
    {".*\n", "env", false},
    /* Escapes and characters that are special to regexps only. */
    {"a\\*b\n", "a*b", true},
    {"a\\*b\n", "axb", false},
    {"a\\\\\n", "a\\", true},
    {"abc.def\n", "abcXdef", false},
    {"a(b)c/def\n", "a(b)c/def", true},
    {"a.|)$(}+{bc\n", "a.|)$(}+{bc", true},
    /* '**'. */
    {"**\n", "file", true},
    {"**\n", "dir/file", true},
    {"**/\n", "file", true},
    {"**/**\n", "dir/file", true},
    {"dir/**\n", "dir/file", true},
    {"dir/**\n", "dir/dir2/file", true},
    {"dir/**\n", "dir", false},
    {"dir**\n", "dirt/x", true},
    {"**/dir\n", "dir", true},
    {"**/dir\n", "a/b/dir", true},
    {"**/dir\n", "dir/file", true},
    {"**/dir\n", "adir", false},
    {"**dir\n", "adir", true}, /* Docker's suffix shortcut */
    {"**/dir2/*\n", "dir/dir2/file", true},
    {"**/dir2/**\n", "dir/dir2/dir3/file", true},
    {"**/file*.txt\n", "dir/dir/file.txt", true},
    {"**/**/*.txt\n", "file.txt", true},
    {"**/**/*.txt2\n", "dir/dir/file.txt", false},
    {"a**/*.txt\n", "a/dir/dir/file.txt", true},
    {"a/*.txt\n", "a/dir/file.txt", false},
    {"a/*.txt**\n", "a/file.txt", true},
    {"a/**/b\n", "a/b", true},
    {"a/**/b\n", "a/x/y/b", true},
    {"a/**/b\n", "a/xb", false},
    {"a**b\n", "ab", true},
    {"a**b\n", "ax/b", true},
    {"a**b\n", "axb", false}, /* regexp a(.*\/)?b */
    {"**/.foo\n", ".foo", true},
    {"**/.foo\n", "bar.foo", false},
    {"**/foo/bar\n", "dir/dir2/foo/bar", true},
    {"**/*.o\n", "src/lib/x.o", true},
    {"src/**/*.o\n", "src/x.o", true},
    {"src/**/*.o\n", "lib/x.o", false},
    /* Exceptions: the last matching pattern wins. */
    {"*.md\n!README.md\n", "README.md", false},
    {"*.md\n!README.md\n", "CHANGES.md", true},
    {"!README.md\n*.md\n", "README.md", true},
    {"docs\n!docs/README.md\n", "docs/README.md", false},
    {"docs\n!docs/README.md\n", "docs/other.md", true},
    {"docs/\n!docs/README.md\n", "docs/README.md", false},
    {"docs/*\n!docs/README.md\n", "docs/README.md", false},
    {"**\n!util/docker/web\n", "util/docker/web/foo", false},
    {"**\n!util/docker/web\nutil/docker/web/foo\n", "util/docker/web/foo",
     true},
    {"**\n!dist/*.whl\n", "dist/p-2.4+g08-py3-none-any.whl", false},
    {"*\n!keep\n", "keep/sub/file", false}, /* exception matches a parent */
    {"*\n!keep\nkeep/tmp\n", "keep/tmp/x", true},
    {"*\n  !  /keep \n", "keep", false},
    {"*\n/!foo\n", "foo", false}, /* becomes "!foo", as in Docker */
    {"*\n/!foo\n", "bar", true},
    {"", "foo", false},
    {"foo\n", ".", false},
    {"foo\n", "", false},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct ig_case *c = &cases[i];
        struct ck_ignore *ig = NULL;
        struct cairn_err err = {0};
        int rc = ck_ignore_parse(c->text, strlen(c->text), &ig, &err);
        if (rc != 0)
            fail_msg("case %zu: parse of %s failed: %s", i, c->text, err.msg);
        bool got = ck_ignore_excluded(ig, c->path);
        if (got != c->excluded)
            fail_msg("case %zu: patterns \"%s\" path \"%s\": got %d want %d",
                     i, c->text, c->path, got, c->excluded);
        ck_ignore_free(ig);
    }
}

/* The '!' pattern only changes state when it matches and Docker skips
 * patterns that cannot change it; a pattern list that flips back and forth
 * checks that order is respected. */
static void test_order(void **state)
{
    (void)state;
    const char *text = "a\n!a/b\na/b/c\n!a/b/c/d\n";
    struct ck_ignore *ig = NULL;
    assert_int_equal(ck_ignore_parse(text, strlen(text), &ig, NULL), 0);
    assert_int_equal(ck_ignore_count(ig), 4);
    assert_true(ck_ignore_excluded(ig, "a"));
    assert_true(ck_ignore_excluded(ig, "a/x"));
    assert_false(ck_ignore_excluded(ig, "a/b"));
    assert_false(ck_ignore_excluded(ig, "a/b/x"));
    assert_true(ck_ignore_excluded(ig, "a/b/c"));
    assert_true(ck_ignore_excluded(ig, "a/b/c/x"));
    assert_false(ck_ignore_excluded(ig, "a/b/c/d"));
    assert_false(ck_ignore_excluded(ig, "a/b/c/d/e"));
    ck_ignore_free(ig);
}

struct below_case {
    const char *text;
    const char *dir;
    bool below;
};

static const struct below_case below_cases[] = {
    {"*\n", "dir", false},                    /* no exceptions at all */
    {"*\n!dir/keep\n", "dir", true},
    {"*\n!dir/keep\n", "other", false},
    {"*\n!dir/keep\n", "dir/keep", false},    /* matches dir itself */
    {"*\n!dir/keep/x\n", "dir/keep", true},
    {"*\n!di\n", "dir", false},
    {"*\n!dir\n", "di", false},
    {"*\n!**/keep\n", "a/b", true},           /* suffix kind */
    {"*\n!*/keep\n", "anything", true},
    {"*\n!*/keep\n", "a/b", false},
    {"*\n!a*/keep\n", "abc", true},
    {"*\n!a*/keep\n", "bc", false},
    {"*\n!a/**/keep\n", "a/x/y", true},
    {"*\n!a/**/keep\n", "b/x", false},
    {"*\n!src**\n", "src", true},             /* prefix kind */
    {"*\n!src/lib**\n", "src", true},
    {"*\n!src/lib**\n", "other", false},
    {"*\n![ab]/keep\n", "a", true},
    {"*\n![ab]/keep\n", "c", false},
    {"*\n!a/longname\n", "a/long", false},
    {"*\n!x\n", "", true},                    /* the root */
};

static void test_exceptions_below(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof below_cases / sizeof below_cases[0]; i++) {
        const struct below_case *c = &below_cases[i];
        struct ck_ignore *ig = NULL;
        assert_int_equal(ck_ignore_parse(c->text, strlen(c->text), &ig, NULL),
                         0);
        bool got = ck_ignore_has_exceptions_below(ig, c->dir);
        if (got != c->below)
            fail_msg("case %zu: patterns \"%s\" dir \"%s\": got %d want %d", i,
                     c->text, c->dir, got, c->below);
        ck_ignore_free(ig);
    }
}

struct bad_case {
    const char *text;
    int code;
    const char *msg; /* substring of the message */
};

static const struct bad_case bad_cases[] = {
    {"ok\n[\n", CAIRN_E_PARSE, "line 2"},
    {"a[\n", CAIRN_E_PARSE, "line 1: bad pattern \"a[\""},
    {"[^\n", CAIRN_E_PARSE, "line 1"},
    {"[^bc\n", CAIRN_E_PARSE, "line 1"},
    {"[]a]\n", CAIRN_E_PARSE, "line 1"},
    {"[-]\n", CAIRN_E_PARSE, "line 1"},
    {"[x-]\n", CAIRN_E_PARSE, "line 1"},
    {"[a-b-c]\n", CAIRN_E_PARSE, "line 1"},
    {"[z-a]\n", CAIRN_E_PARSE, "line 1"}, /* Go's regexp rejects it */
    {"#x\n\nfoo\\\n", CAIRN_E_PARSE, "line 3"},
    {"!\n", CAIRN_E_PARSE, "illegal exclusion"},
    {"x\n!   \n", CAIRN_E_PARSE, "line 2: illegal exclusion"},
    {"!/\n", CAIRN_E_PARSE, "illegal exclusion"},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct ck_ignore *ig = (struct ck_ignore *)&ig; /* must stay as is */
        struct ck_ignore *before = ig;
        struct cairn_err err = {0};
        int rc = ck_ignore_parse(c->text, strlen(c->text), &ig, &err);
        if (rc != c->code || strstr(err.msg, c->msg) == NULL)
            fail_msg("case %zu: \"%s\": rc %d msg \"%s\"", i, c->text, rc,
                     err.msg);
        assert_ptr_equal(ig, before);
    }
}

static void test_caps(void **state)
{
    (void)state;
    struct cairn_err err = {0};
    struct ck_ignore *ig = NULL;

    size_t n = CK_IGNORE_MAX_PATTERNS + 1;
    char *text = malloc(n * 2);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        text[2 * i] = 'a';
        text[2 * i + 1] = '\n';
    }
    assert_int_equal(ck_ignore_parse(text, 2 * (n - 1), &ig, &err), 0);
    assert_int_equal(ck_ignore_count(ig), CK_IGNORE_MAX_PATTERNS);
    ck_ignore_free(ig);
    assert_int_equal(ck_ignore_parse(text, 2 * n, &ig, &err), CAIRN_E_TOOBIG);
    free(text);

    size_t big = CK_IGNORE_MAX_SIZE + 1;
    text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    assert_int_equal(ck_ignore_parse(text, big, &ig, &err), CAIRN_E_TOOBIG);
    /* A single line longer than Docker's scanner accepts. */
    memset(text, 'x', 70000);
    assert_int_equal(ck_ignore_parse(text, 70000, &ig, &err), CAIRN_E_TOOBIG);
    free(text);
}

/* Long paths take the heap path of the matcher; results must not change. */
static void test_long_path(void **state)
{
    (void)state;
    const char *text = "**/*.o\n!keep/**\n";
    struct ck_ignore *ig = NULL;
    assert_int_equal(ck_ignore_parse(text, strlen(text), &ig, NULL), 0);
    size_t n = 10000;
    char *p = malloc(n + 8);
    assert_non_null(p);
    for (size_t i = 0; i < n; i += 2) {
        p[i] = 'd';
        p[i + 1] = '/';
    }
    memcpy(p + n, "x.o", 4);
    assert_true(ck_ignore_excluded(ig, p));
    memcpy(p + n, "x.c", 4);
    assert_false(ck_ignore_excluded(ig, p));
    free(p);
    ck_ignore_free(ig);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void test_load(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/cairn-ignore-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char df[4096];
    snprintf(df, sizeof df, "%s/app.Dockerfile", dir);
    struct cairn_err err = {0};
    struct ck_ignore *ig = NULL;

    /* Nothing there: an empty matcher. */
    assert_int_equal(ck_ignore_load(dir, df, &ig, &err), 0);
    assert_int_equal(ck_ignore_count(ig), 0);
    assert_false(ck_ignore_excluded(ig, "x"));
    ck_ignore_free(ig);

    /* The context's .dockerignore. */
    write_file(dir, ".dockerignore", "ctx\n");
    assert_int_equal(ck_ignore_load(dir, df, &ig, &err), 0);
    assert_true(ck_ignore_excluded(ig, "ctx"));
    ck_ignore_free(ig);
    assert_int_equal(ck_ignore_load(dir, NULL, &ig, &err), 0);
    assert_true(ck_ignore_excluded(ig, "ctx"));
    ck_ignore_free(ig);

    /* The Dockerfile-specific file wins over the context's. */
    write_file(dir, "app.Dockerfile.dockerignore", "own\nmore\n");
    assert_int_equal(ck_ignore_load(dir, df, &ig, &err), 0);
    assert_int_equal(ck_ignore_count(ig), 2);
    assert_true(ck_ignore_excluded(ig, "own"));
    assert_false(ck_ignore_excluded(ig, "ctx"));
    ck_ignore_free(ig);

    /* Errors name the file and the line. */
    write_file(dir, "app.Dockerfile.dockerignore", "ok\nbad[\n");
    ig = NULL;
    assert_int_equal(ck_ignore_load(dir, df, &ig, &err), CAIRN_E_PARSE);
    assert_null(ig);
    assert_non_null(strstr(err.msg, "app.Dockerfile.dockerignore"));
    assert_non_null(strstr(err.msg, "line 2"));

    /* A directory where the file should be is an error, not "absent". */
    remove_file(dir, "app.Dockerfile.dockerignore");
    remove_file(dir, ".dockerignore");
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/.dockerignore", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(ck_ignore_load(dir, NULL, &ig, &err), CAIRN_E_IO);
    rmdir(sub);

    /* Too large. */
    FILE *f = fopen(sub, "w");
    assert_non_null(f);
    for (size_t i = 0; i <= CK_IGNORE_MAX_SIZE / 4; i++)
        fputs("#x\n\n", f);
    fclose(f);
    assert_int_equal(ck_ignore_load(dir, NULL, &ig, &err), CAIRN_E_TOOBIG);
    unlink(sub);
    assert_int_equal(rmdir(dir), 0);
}

static void test_free_null(void **state)
{
    (void)state;
    ck_ignore_free(NULL);
    assert_int_equal(ck_ignore_count(NULL), 0);
    assert_false(ck_ignore_excluded(NULL, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_exceptions_below),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
