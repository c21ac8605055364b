#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachekey/expand.h"
#include "common/error.h"

/* Variables as "NAME=value"; a NULL-terminated list. */
typedef const char *const env_t[8];

static const char *lookup(void *ctx, const char *name, size_t len)
{
    const char *const *env = ctx;
    for (size_t i = 0; env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        if ((size_t)(eq - env[i]) == len && memcmp(env[i], name, len) == 0)
            return eq + 1;
    }
    return NULL;
}

/* The environment of BuildKit's envVarTest, plus a few of our own. */
static env_t base_env = {"PWD=/home", "SHELL=bash", "KOREAN=\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
                         "NULL=", "SP=a  b", "X=x", NULL};

#define ERR "\x01" /* expected: an error (the code is in the row) */

struct ex_case {
    const char *in;
    char esc;
    const char *want; /* ERR for an error */
    int code;         /* expected error code when want is ERR */
    const char *msg;  /* substring of the error message, or NULL */
    const char *const *env; /* NULL: base_env */
};

#define OK(in, want) {in, '\\', want, 0, NULL, NULL}
#define OKB(in, want) {in, '`', want, 0, NULL, NULL}
#define BAD(in, msg) {in, '\\', ERR, CAIRN_E_PARSE, msg, NULL}
#define BADB(in, msg) {in, '`', ERR, CAIRN_E_PARSE, msg, NULL}

static env_t env_trim1 = {"FOO=()[]{}^$.*?|\\x", NULL};
static env_t env_trim2 = {"FOO=xx**", NULL};
static env_t env_xxyy = {"FOO=xxyy", "BAR=x", "EMPTY=", "HASH=#*x", NULL};
static env_t env_trim3 = {"FOO=a***yy*", NULL};
static env_t env_trim4 = {"FOO=???y", NULL};
static env_t env_path = {"F=/usr/local/lib/libx.so.1", "NL=ab\ncd", NULL};
static env_t env_star = {"FOO=*ab*", NULL};
static env_t env_bs = {"V=ab\\", NULL};
static env_t env_utf8 = {"U=\xc3\xa9t\xc3\xa9", NULL};

static const struct ex_case cases[] = {
    /* Plain text, quotes and escapes ('\'). From BuildKit's envVarTest. */
    OK("hello", "hello"),
    OK("he'll'o", "hello"),
    BAD("he'llo", "single-quote"),
    OK("he\\'llo", "he'llo"),
    BAD("he\\\\'llo", "single-quote"),
    OK("abc\\tdef", "abctdef"),
    OK("\"abc\\tdef\"", "abc\\tdef"),
    OK("\"abc\\\\tdef\"", "abc\\tdef"),
    OK("'abc\\tdef'", "abc\\tdef"),
    OK("hello\\", "hello"),
    OK("hello\\\\", "hello\\"),
    BAD("\"hello", "double-quote"),
    BAD("\"hello\\\"", "double-quote"),
    BAD("\"hello\\", "double-quote"),
    OK("\"hel'lo\"", "hel'lo"),
    BAD("'hello", "single-quote"),
    OK("'hello\\'", "hello\\"),
    OK("\"''\"", "''"),
    OK("'\"hello\"'", "\"hello\""),
    OK("\"a b\"  c", "a b  c"), /* whitespace is kept by ProcessWord */
    /* '$' forms. */
    OK("$.", "$."),
    OK("he$1x", "hex"),
    OK("he$.x", "he$.x"),
    OK("he$pwd.", "he."),
    OK("he$PWD", "he/home"),
    OK("he\\$PWD", "he$PWD"),
    OK("he\\\\$PWD", "he\\/home"),
    OK("\"he\\$PWD\"", "he$PWD"),
    OK("\"he\\\\$PWD\"", "he\\/home"),
    OK("\\${}", "${}"),
    OK("he\\${}xx", "he${}xx"),
    OK("$", "$"),
    OK("a$ b", "a$ b"),
    OK("$'x'", "$x"),
    OK("$PWD-x", "/home-x"),
    OK("$PWD_x", ""),
    OK("$@@@", "@@"),
    OK("$999aaa", "aaa"),
    OK("${999:-bbb}aaa", "bbbaaa"),
    OK("${@:-bbb}", "bbb"),
    OK("${#}", ""),
    OK("$$", ""),
    BAD("${}", "bad substitution"),
    BAD("he${}xx", "bad substitution"),
    BAD("${{aaa}", "bad substitution"),
    BAD("${:}", "bad substitution"),
    BAD("${:-bbb}", "bad substitution"),
    BAD("he${.}", "bad substitution"),
    BAD("${ab cd}", "bad substitution"),
    OK("he${hi}xx", "hexx"),
    OK("he${PWD}", "he/home"),
    OK("${aaa}}", "}"),
    BAD("${aaa", "missing '}'"),
    BAD("he${PWD", "missing '}'"),
    BAD("${", "missing '}'"),
    BAD("${aaa:", "missing '}'"),
    BAD("${aaa:-bbb", "missing '}'"),
    BAD("${aaa:-bbb ${foo}", "missing '}'"),
    BAD("${aaa:-'x}", "missing '}'"),
    OK("${aaa:-bbb {foo}", "bbb {foo"),
    OK("${aaa:-bbb}}", "bbb}"),
    /* Unicode passes through untouched. */
    OK("\xec\x95\x88'\xeb\x85\x95'", "\xec\x95\x88\xeb\x85\x95"),
    OK("$KOREAN!", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4!"),
    OK("\xef\xbb\xbfx", "x"),           /* leading BOM dropped */
    OK("a\xff" "b", "a\xef\xbf\xbd" "b"), /* invalid UTF-8 -> U+FFFD */
    /* :- - :+ + :? ? */
    OK("he${XXX:-000}xx", "he000xx"),
    OK("he${PWD:-000}xx", "he/homexx"),
    OK("he${XXX:-$PWD}xx", "he/homexx"),
    OK("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    OK("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    OK("${NULL:-d}", "d"),
    OK("${NULL-d}", ""),
    OK("${XXX-d}", "d"),
    OK("${XXX-'a  b'}", "a  b"),
    OK("${XXX:-\"$PWD\"}", "/home"),
    OK("he${XXX:+${PWD}}xx", "hexx"),
    OK("he${PWD:+${XXX}}xx", "hexx"),
    OK("he${PWD:+${SHELL}}xx", "hebashxx"),
    OK("he${PWD:+000}xx", "he000xx"),
    OK("${NULL:+set}", ""),
    OK("${NULL+set}", "set"),
    OK("${XXX+set}", ""),
    OK("he${PWD:+${PWD}:}xx", "he/home:xx"),
    OK("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    OK("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    OK("he${PWD?}", "he/home"),
    OK("he${PWD:?}", "he/home"),
    OK("he${NULL?}", "he"),
    BAD("he${XXX?}", "XXX: is not allowed to be unset"),
    BAD("he${XXX:?}", "XXX: is not allowed to be unset"),
    BAD("he${NULL:?}", "NULL: is not allowed to be empty"),
    BAD("${XXX:?need $PWD}", "XXX: need /home"),
    BAD("${XXX?need it}", "XXX: need it"),
    BAD("he${XXX:YYY}", "unsupported modifier ':Y'"),
    BAD("he${PWD:=000}xx", "unsupported modifier ':='"),
    BAD("${FOO=aaa}", "unsupported modifier '='"),
    BAD("${FOO/a/b}", "unsupported modifier '/'"),
    BAD("${FOO:#x}", "unsupported modifier ':#'"),
    BAD("${FOO:%%x}", "unsupported modifier ':%'"),
    /* Single quotes are literal. */
    OK("'he${XX}'", "he${XX}"),
    OK("\"he${PWD}\"", "he/home"),
    OK("\"he'$PWD'\"", "he'/home'"),
    OK("'$PWD'", "$PWD"),
    OK("'\\$PWD'", "\\$PWD"),
    /* # ## % %% with shell patterns (BuildKit's lex_test cases). */
    {"${FOO#()[]{\\}^$.\\*\\?|\\\\}", '\\', "x", 0, NULL, env_trim1},
    {"${FOO%%\\**}", '\\', "xx", 0, NULL, env_trim2},
    {"${FOO#*x*y}", '\\', "y", 0, NULL, env_xxyy},
    {"${FOO#*}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${FOO#$BAR}", '\\', "xyy", 0, NULL, env_xxyy},
    {"${FOO#$EMPTY}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${FOO#}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${FOO##*x}", '\\', "yy", 0, NULL, env_xxyy},
    {"${FOO##}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${FOO#?\\?}", '\\', "?y", 0, NULL, env_trim4},
    {"${ABC:-.}${FOO%x}${ABC:-.}", '\\', ".xxyy.", 0, NULL, env_xxyy},
    {"${FOO%%\\**\\*}", '\\', "a", 0, NULL, env_trim3},
    {"${FOO%}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${FOO%y}", '\\', "xxy", 0, NULL, env_xxyy},
    {"${FOO%%y*}", '\\', "xx", 0, NULL, env_xxyy},
    {"${FOO%y*}", '\\', "xxy", 0, NULL, env_xxyy},
    {"${FOO#$HASH}", '\\', "yy", 0, NULL, env_xxyy}, /* "#x": greedy x */
    {"${FOO#zz}", '\\', "xxyy", 0, NULL, env_xxyy},
    {"${UNSET#x}", '\\', "", 0, NULL, env_xxyy},
    {"${FOO#'x'}", '\\', "xyy", 0, NULL, env_xxyy},
    {"${FOO##'*'}", '\\', "", 0, NULL, env_xxyy}, /* quotes don't escape */
    {"${F#*/}", '\\', "usr/local/lib/libx.so.1", 0, NULL, env_path},
    {"${F##*/}", '\\', "libx.so.1", 0, NULL, env_path},
    {"${F%/*}", '\\', "/usr/local/lib", 0, NULL, env_path},
    {"${F%%.*}", '\\', "/usr/local/lib/libx", 0, NULL, env_path},
    {"${F%.*}", '\\', "/usr/local/lib/libx.so", 0, NULL, env_path},
    {"${F#/usr/?ocal}", '\\', "/lib/libx.so.1", 0, NULL, env_path},
    {"${F%\\/*}", '\\', "/usr/local/lib", 0, NULL, env_path},
    {"${NL#*d}", '\\', "ab\ncd", 0, NULL, env_path}, /* '*' stops at \n */
    {"${NL#ab?}", '\\', "ab\ncd", 0, NULL, env_path},
    {"${U#?}", '\\', "t\xc3\xa9", 0, NULL, env_utf8}, /* one character */
    {"${U%?}", '\\', "\xc3\xa9t", 0, NULL, env_utf8},
    {"${FOO#\\x}", '\\', ERR, CAIRN_E_PARSE, "invalid escape", env_xxyy},
    {"${FOO%\\x}", '\\', ERR, CAIRN_E_PARSE, "invalid escape", env_xxyy},
    /* The same rules with '`' as the escape character. */
    OKB("he`$PWD", "he$PWD"),
    OKB("he``$PWD", "he`/home"),
    OKB("he\\$PWD", "he\\/home"),
    OKB("a\\tb", "a\\tb"),
    OKB("hello`", "hello"),
    OKB("he`'llo", "he'llo"),
    OKB("\"a`\"b\"", "a\"b"),
    OKB("\"a`$PWD\"", "a$PWD"),
    OKB("\"a``b\"", "a`b"),
    OKB("\"a`tb\"", "a`tb"),
    OKB("\"a\\\"", "a\\"),
    OKB("'a`b'", "a`b"),
    OKB("${XXX:-`}}", "}"),
    OKB("${XXX:-a`$PWD}", "a$PWD"),
    BADB("\"a`\"", "double-quote"),
    BADB("he${XXX:YYY}", "bad substitution"),
    /* In a pattern the escape character is kept for the pattern parser,
     * which only knows '\': "`*" is a literal '`' and a wildcard. */
    {"${FOO#\\**}", '`', "ab*", 0, NULL, env_star},
    {"${FOO#`**}", '`', "*ab*", 0, NULL, env_star},
    {"${FOO#\\**}", '\\', "ab*", 0, NULL, env_star},
    /* BuildKit reverses the pattern text for '%', pairing backslashes left
     * to right: "\?\" is invalid forwards but fine reversed. */
    {"${V%\\?\\}", '`', "a", 0, NULL, env_bs},
    {"${V#\\?\\}", '`', ERR, CAIRN_E_PARSE, "invalid escape", env_bs},
};

static void test_word_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct ex_case *c = &cases[i];
        char *out = (char *)"untouched";
        struct cairn_err err = {0};
        const char *const *env = c->env ? c->env : base_env;
        int rc = ck_expand_word(c->in, c->esc, lookup, (void *)env, &out, &err);
        if (strcmp(c->want, ERR) == 0) {
            if (rc != c->code)
                fail_msg("case %zu (%s): rc %d, want %d", i, c->in, rc,
                         c->code);
            if (strcmp(out, "untouched") != 0)
                fail_msg("case %zu (%s): out written on error", i, c->in);
            if (c->msg && strstr(err.msg, c->msg) == NULL)
                fail_msg("case %zu (%s): message \"%s\" lacks \"%s\"", i,
                         c->in, err.msg, c->msg);
            continue;
        }
        if (rc != 0)
            fail_msg("case %zu (%s): rc %d: %s", i, c->in, rc, err.msg);
        if (strcmp(out, c->want) != 0)
            fail_msg("case %zu (%s): got \"%s\" want \"%s\"", i, c->in, out,
                     c->want);
        free(out);
    }
}

/* ProcessWords rows: the input and the expected words joined with '|'
 * ("!" for an error). Taken from BuildKit's wordsTest, where variables are
 * set with ENV lines; here they come from words_env. */
static env_t words_env = {"hi=hi", "space=abc  def", "leading=  ab c",
                          "trailing=ab c   ", "empty=", "tab=a\tb", NULL};

struct words_case {
    const char *in;
    char esc;
    const char *want;
};

static const struct words_case words_cases[] = {
    {"hello", '\\', "hello"},
    {"hello${hi}bye", '\\', "hellohibye"},
    {"hello${nope}bye", '\\', "hellobye"},
    {"hello${space}bye", '\\', "helloabc|defbye"},
    {"hello\"${space}\"bye", '\\', "helloabc  defbye"},
    {"hello \"${space}\"bye", '\\', "hello|abc  defbye"},
    {"hello${leading}def", '\\', "hello|ab|cdef"},
    {"hello\"${leading}\" def", '\\', "hello  ab c|def"},
    {"hello\"${leading}\"", '\\', "hello  ab c"},
    {"hello${leading}", '\\', "hello|ab|c"},
    {"hello${trailing}", '\\', "helloab|c"},
    {"hello${trailing}d", '\\', "helloab|c|d"},
    {"hello\"${trailing}\"d", '\\', "helloab c   d"},
    {"hel\"lo${trailing}\"", '\\', "helloab c   "},
    {"hello\" there  \"", '\\', "hello there  "},
    {"hello there     ", '\\', "hello|there"},
    {"  hello \t there  ", '\\', "hello|there"},
    {"hello\\ there", '\\', "hello there"},
    {"hello\" there", '\\', "!"},
    {"hello\\\" there", '\\', "hello\"|there"},
    {"hello\"\\\\there\"", '\\', "hello\\there"},
    {"hello\"\\there\"", '\\', "hello\\there"},
    {"hello'\\\\there'", '\\', "hello\\\\there"},
    {"hello'$there'", '\\', "hello$there"},
    {"a${tab}b", '\\', "aa|bb"},
    {"${X:-a b}c", '\\', "a|bc"},
    {"x${X:-a b}c", '\\', "xa|bc"}, /* BuildKit HEAD loses the "x" here */
    {"${X:-\"a b\"}", '\\', "a|b"}, /* the inner quotes are gone by then */
    {"\"\"", '\\', ""},              /* one empty word */
    {"a \"\" ''", '\\', "a||"},
    {"a ${empty} b", '\\', "a|b"},  /* unquoted empty: no word */
    {"a \"${empty}\"", '\\', "a|"},
    {"", '\\', NULL},                /* no words */
    {"   ", '\\', NULL},
    {"RUN <<EOF cat", '\\', "RUN|<<EOF|cat"},
    {"cat << EOF", '\\', "cat|<< EOF"}, /* heredoc marker keeps its blank */
    {"a<b", '\\', "a<b"},
    {"hello` there", '`', "hello there"},
    {"a\\ b", '`', "a\\|b"},
    {"${space}`  x", '`', "abc|def |x"},
    {"a\xc2\xa0" "b", '\\', "a|b"}, /* U+00A0 is whitespace to Go */
};

static void test_words_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof words_cases / sizeof words_cases[0]; i++) {
        const struct words_case *c = &words_cases[i];
        char **w = NULL;
        size_t n = 99;
        struct cairn_err err = {0};
        int rc = ck_expand_words(c->in, c->esc, lookup, (void *)words_env, &w,
                                 &n, &err);
        if (c->want != NULL && strcmp(c->want, "!") == 0) {
            if (rc != CAIRN_E_PARSE || w != NULL || n != 99)
                fail_msg("case %zu (%s): rc %d, want an error", i, c->in, rc);
            continue;
        }
        if (rc != 0)
            fail_msg("case %zu (%s): rc %d: %s", i, c->in, rc, err.msg);
        assert_non_null(w);
        char joined[256] = "";
        size_t used = 0;
        for (size_t k = 0; k < n; k++)
            used += (size_t)snprintf(joined + used, sizeof joined - used,
                                     "%s%s", k ? "|" : "", w[k]);
        if (c->want == NULL ? n != 0 : (n == 0 || strcmp(joined, c->want) != 0))
            fail_msg("case %zu (%s): got %zu words \"%s\" want \"%s\"", i,
                     c->in, n, joined, c->want ? c->want : "(none)");
        ck_expand_words_free(w, n);
    }
}

/* A value that doubles the output each time it is used must hit the cap,
 * not exhaust memory; the same inside a nested word and in words mode. */
static void test_output_cap(void **state)
{
    (void)state;
    size_t big = CK_EXPAND_MAX_OUTPUT / 4 + 1;
    char *val = malloc(big + 3);
    assert_non_null(val);
    memcpy(val, "A=", 2);
    memset(val + 2, 'a', big);
    val[big + 2] = '\0';
    const char *env[] = {val, "SP=a b", NULL};
    char *out = NULL;
    struct cairn_err err = {0};

    assert_int_equal(ck_expand_word("${A}${A}${A}", '\\', lookup, env, &out,
                                    &err), 0);
    assert_int_equal(strlen(out), 3 * big);
    free(out);
    out = NULL;
    assert_int_equal(ck_expand_word("${A}${A}${A}${A}", '\\', lookup, env,
                                    &out, &err), CAIRN_E_TOOBIG);
    assert_null(out);
    assert_non_null(strstr(err.msg, "exceeds"));
    assert_int_equal(ck_expand_word("${X:-$A$A$A$A$A}", '\\', lookup, env,
                                    &out, &err), CAIRN_E_TOOBIG);
    assert_int_equal(ck_expand_word("${A%$A$A$A$A$A}", '\\', lookup, env,
                                    &out, &err), CAIRN_E_TOOBIG);

    char **w = NULL;
    size_t n = 0;
    assert_int_equal(ck_expand_words("$A $A $A $A $A", '\\', lookup, env, &w,
                                     &n, &err), CAIRN_E_TOOBIG);
    assert_null(w);
    /* Many small words add up too. */
    size_t words = CK_EXPAND_MAX_OUTPUT / 2 + 1;
    char *text = malloc(2 * words + 1);
    assert_non_null(text);
    for (size_t i = 0; i < words; i++) {
        text[2 * i] = 'x';
        text[2 * i + 1] = ' ';
    }
    text[2 * words] = '\0';
    assert_int_equal(ck_expand_words(text, '\\', lookup, env, &w, &n, &err),
                     CAIRN_E_TOOBIG);
    free(text);
    free(val);
}

/* Deep nesting is refused instead of overflowing the stack. */
static void test_depth_cap(void **state)
{
    (void)state;
    size_t levels = 5000;
    char *text = malloc(levels * 6 + 2);
    assert_non_null(text);
    size_t k = 0;
    for (size_t i = 0; i < levels; i++) {
        memcpy(text + k, "${X:-", 5);
        k += 5;
    }
    text[k++] = 'v';
    for (size_t i = 0; i < levels; i++)
        text[k++] = '}';
    text[k] = '\0';
    const char *env[] = {NULL};
    char *out = NULL;
    struct cairn_err err = {0};
    assert_int_equal(ck_expand_word(text, '\\', lookup, env, &out, &err),
                     CAIRN_E_TOOBIG);
    assert_null(out);
    /* A modest depth works. */
    assert_int_equal(ck_expand_word("${X:-${X:-${X:-${X:-deep}}}}", '\\',
                                    lookup, env, &out, &err), 0);
    assert_string_equal(out, "deep");
    free(out);
    free(text);
}

/* Pathological trim patterns are bounded in time: the matcher is a table,
 * not backtracking, and its size is capped. */
static void test_trim_cost(void **state)
{
    (void)state;
    char val[4096 + 3];
    memcpy(val, "V=", 2);
    memset(val + 2, 'a', 4096);
    val[4098] = '\0';
    const char *env[] = {val, NULL};
    char *out = NULL;
    struct cairn_err err = {0};
    assert_int_equal(ck_expand_word("${V%%*a*a*a*a*a*a*a*a*a*a*a*a*b}", '\\',
                                    lookup, env, &out, &err), 0);
    assert_int_equal(strlen(out), 4096);
    free(out);
    assert_int_equal(ck_expand_word("${V##*a*a*a*a*a*a*a*a*a*a*a*a}", '\\',
                                    lookup, env, &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_bad_args(void **state)
{
    (void)state;
    const char *env[] = {NULL};
    char *out = NULL;
    assert_int_equal(ck_expand_word("x", '"', lookup, env, &out, NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(ck_expand_word(NULL, '\\', lookup, env, &out, NULL),
                     CAIRN_E_INVAL);
    /* A NULL lookup means every variable is unset. */
    assert_int_equal(ck_expand_word("a${X:-b}$Y", '\\', NULL, NULL, &out, NULL),
                     0);
    assert_string_equal(out, "ab");
    free(out);
    ck_expand_words_free(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_word_table),
        cmocka_unit_test(test_words_table),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_trim_cost),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
