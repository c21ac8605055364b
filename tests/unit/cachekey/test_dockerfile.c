/* Tests for cachekey/dockerfile.c.
 *
 * Most cases are table-driven: a Dockerfile text and the expected dump of
 * what the parser made of it. The dump shows every field of every
 * instruction (kind, line range, flags, json, args, heredocs, ONBUILD's
 * sub-instruction), so any change in behaviour breaks a row. A second table
 * holds inputs that must fail, with the exact code and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cachekey/dockerfile.h"
#include "common/buf.h"
#include "common/error.h"

/* Dump format, one line per instruction:
 *   KIND@line-end [--flag=value|--flag ...] json|shell <arg0><arg1>...
 *   [hd(name expand|noexpand[ chomp])<content>...] [{sub-instruction}]
 * Newlines, tabs and CRs inside strings are shown as \n, \t, \r. */
static void put_escaped(struct cairn_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            cairn_buf_puts(b, "\\n");
        else if (*s == '\t')
            cairn_buf_puts(b, "\\t");
        else if (*s == '\r')
            cairn_buf_puts(b, "\\r");
        else
            cairn_buf_putc(b, *s);
    }
}

static void dump_instr(struct cairn_buf *b, const struct ck_instr *in)
{
    cairn_buf_printf(b, "%s@%d-%d", ck_instr_name(in->kind), in->line, in->end_line);
    for (size_t i = 0; i < in->nflags; i++) {
        cairn_buf_printf(b, " --%s", in->flags[i].name);
        if (in->flags[i].value) {
            cairn_buf_putc(b, '=');
            put_escaped(b, in->flags[i].value);
        }
    }
    cairn_buf_puts(b, in->json ? " json " : " shell ");
    for (size_t i = 0; i < in->nargs; i++) {
        cairn_buf_putc(b, '<');
        put_escaped(b, in->args[i]);
        cairn_buf_putc(b, '>');
    }
    for (size_t i = 0; i < in->nheredocs; i++) {
        const struct ck_heredoc *h = &in->heredocs[i];
        cairn_buf_printf(b, " hd(%s %s%s)<", h->name, h->expand ? "expand" : "noexpand",
                         h->chomp ? " chomp" : "");
        put_escaped(b, h->content);
        cairn_buf_putc(b, '>');
    }
    if (in->sub) {
        cairn_buf_puts(b, " {");
        dump_instr(b, in->sub);
        cairn_buf_putc(b, '}');
    }
}

static char *dump(const struct ck_dockerfile *df)
{
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    if (df->escape != '\\')
        cairn_buf_printf(&b, "escape=%c\n", df->escape);
    for (size_t i = 0; i < df->ninstrs; i++) {
        if (i)
            cairn_buf_putc(&b, '\n');
        dump_instr(&b, &df->instrs[i]);
    }
    return cairn_buf_take(&b);
}

struct ok_case {
    const char *text;
    const char *want;
};

static const struct ok_case ok_cases[] = {
    /* FROM */
    {"FROM alpine", "FROM@1-1 shell <alpine>"},
    {"from alpine:3.19 as Build", "FROM@1-1 shell <alpine:3.19><as><Build>"},
    {"FROM --platform=$BUILDPLATFORM golang:1.22 AS build-env_1.x",
     "FROM@1-1 --platform=$BUILDPLATFORM shell <golang:1.22><AS><build-env_1.x>"},
    {"FROM\tscratch", "FROM@1-1 shell <scratch>"},

    /* RUN: shell, exec, flags */
    {"RUN echo hello  world ", "RUN@1-1 shell <echo hello  world>"},
    {"RUN [\"/bin/sh\", \"-c\", \"echo hi\"]", "RUN@1-1 json </bin/sh><-c><echo hi>"},
    {"RUN [ \"a\\\"b\" , \"c\\\\d\\u00e9\\t\\/\" ] ", "RUN@1-1 json <a\"b><c\\d\xc3\xa9\\t/>"},
    {"RUN [\"\\ud83d\\ude00\", \"\\ud83d\"]", "RUN@1-1 json <\xf0\x9f\x98\x80><\xef\xbf\xbd>"},
    {"RUN []", "RUN@1-1 json "},
    {"RUN [\"a\"] trailing", "RUN@1-1 shell <[\"a\"] trailing>"},
    {"RUN [\"a\",]", "RUN@1-1 shell <[\"a\",]>"},
    {"RUN ['a']", "RUN@1-1 shell <['a']>"},
    {"RUN [\"a\\q\"]", "RUN@1-1 shell <[\"a\\q\"]>"},
    {"RUN [\"a\"", "RUN@1-1 shell <[\"a\">"},
    {"RUN [echo]", "RUN@1-1 shell <[echo]>"},
    {"RUN", "RUN@1-1 shell <>"},
    {"run --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok "
     "--network=none --security=insecure make",
     "RUN@1-1 --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok "
     "--network=none --security=insecure shell <make>"},
    {"RUN --mount=type=bind,source=\"a b\" ls", "RUN@1-1 --mount=type=bind,source=a b shell <ls>"},
    {"RUN --network=host -- --not-a-flag", "RUN@1-1 --network=host shell <--not-a-flag>"},
    {"RUN --network=none [\"ls\", \"-l\"]", "RUN@1-1 --network=none json <ls><-l>"},
    {"RUN -x", "RUN@1-1 shell <-x>"},

    /* CMD, ENTRYPOINT */
    {"CMD [\"nginx\", \"-g\", \"daemon off;\"]", "CMD@1-1 json <nginx><-g><daemon off;>"},
    {"CMD nginx -g 'daemon off;'", "CMD@1-1 shell <nginx -g 'daemon off;'>"},
    {"CMD", "CMD@1-1 shell <>"},
    {"CMD []", "CMD@1-1 json "},
    {"ENTRYPOINT [\"/entry.sh\"]", "ENTRYPOINT@1-1 json </entry.sh>"},
    {"entrypoint exec /entry.sh \"$@\"", "ENTRYPOINT@1-1 shell <exec /entry.sh \"$@\">"},

    /* ENV, LABEL: raw pairs, legacy form */
    {"ENV A=1 B=\"two words\" C='x y' D=a\\ b E=",
     "ENV@1-1 shell <A><1><B><\"two words\"><C><'x y'><D><a\\ b><E><>"},
    {"ENV PATH=$PATH:/opt/bin", "ENV@1-1 shell <PATH><$PATH:/opt/bin>"},
    {"ENV MY_NAME John  Doe ", "ENV@1-1 shell <MY_NAME><John  Doe>"},
    {"ENV K \"quoted value\"", "ENV@1-1 shell <K><\"quoted value\">"},
    {"ENV A=\"x=y\" B=c=d", "ENV@1-1 shell <A><\"x=y\"><B><c=d>"},
    {"LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0",
     "LABEL@1-1 shell <\"com.example.vendor\"><\"ACME Inc\"><version><1.0>"},
    {"LABEL description=\"multi \\\"quoted\\\"\"",
     "LABEL@1-1 shell <description><\"multi \\\"quoted\\\"\">"},
    {"LABEL maintainer value", "LABEL@1-1 shell <maintainer><value>"},

    /* MAINTAINER, USER, WORKDIR, STOPSIGNAL: rest of line */
    {"MAINTAINER Jane Doe <jane@example.com>", "MAINTAINER@1-1 shell <Jane Doe <jane@example.com>>"},
    {"USER  app:app ", "USER@1-1 shell <app:app>"},
    {"WORKDIR /path with spaces/$DIR", "WORKDIR@1-1 shell </path with spaces/$DIR>"},
    {"STOPSIGNAL SIGKILL", "STOPSIGNAL@1-1 shell <SIGKILL>"},

    /* EXPOSE, VOLUME */
    {"EXPOSE 80/tcp  443 53/udp", "EXPOSE@1-1 shell <80/tcp><443><53/udp>"},
    {"VOLUME /data /var/log", "VOLUME@1-1 shell </data></var/log>"},
    {"VOLUME [\"/data\", \"/my logs\"]", "VOLUME@1-1 json </data></my logs>"},

    /* ADD, COPY */
    {"COPY a b /dst/", "COPY@1-1 shell <a><b></dst/>"},
    {"COPY [\"my file\", \"/dst dir/\"]", "COPY@1-1 json <my file></dst dir/>"},
    {"COPY --from=build --chown=1000:1000 --chmod=0755 --link --parents "
     "--exclude=*.md --exclude=.git ./src /app",
     "COPY@1-1 --from=build --chown=1000:1000 --chmod=0755 --link --parents "
     "--exclude=*.md --exclude=.git shell <./src></app>"},
    {"COPY --chown=\"user name\":grp --link=false a b",
     "COPY@1-1 --chown=user name:grp --link=false shell <a><b>"},
    {"ADD --checksum=sha256:abc --keep-git-dir=true --link --chown=1 --chmod=644 "
     "--exclude=x --unpack=False https://example.com/a.tar.gz /",
     "ADD@1-1 --checksum=sha256:abc --keep-git-dir=true --link --chown=1 --chmod=644 "
     "--exclude=x --unpack=False shell <https://example.com/a.tar.gz></>"},
    {"ADD [\"a\", \"b\"]", "ADD@1-1 json <a><b>"},

    /* ARG */
    {"ARG VERSION", "ARG@1-1 shell <VERSION>"},
    {"ARG A=1 B C=\"x y\" D=", "ARG@1-1 shell <A=1><B><C=\"x y\"><D=>"},

    /* HEALTHCHECK */
    {"HEALTHCHECK NONE", "HEALTHCHECK@1-1 shell <NONE>"},
    {"healthcheck none", "HEALTHCHECK@1-1 shell <NONE>"},
    {"HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --start-interval=1s "
     "--retries=3 CMD curl -f http://localhost/ || exit 1",
     "HEALTHCHECK@1-1 --interval=30s --timeout=3s --start-period=5s --start-interval=1s "
     "--retries=3 shell <CMD><curl -f http://localhost/ || exit 1>"},
    {"HEALTHCHECK cmd [\"curl\", \"-f\", \"http://x/\"]",
     "HEALTHCHECK@1-1 json <CMD><curl><-f><http://x/>"},

    /* SHELL */
    {"SHELL [\"powershell\", \"-command\"]", "SHELL@1-1 json <powershell><-command>"},

    /* ONBUILD */
    {"ONBUILD RUN make", "ONBUILD@1-1 shell  {RUN@1-1 shell <make>}"},
    {"onbuild copy --from=base . /app",
     "ONBUILD@1-1 shell  {COPY@1-1 --from=base shell <.></app>}"},
    {"ONBUILD ENV A=1", "ONBUILD@1-1 shell  {ENV@1-1 shell <A><1>}"},

    /* Keywords in any case; several instructions; line numbers */
    {"fRoM a\nRuN b\n\nCmD c\n", "FROM@1-1 shell <a>\nRUN@2-2 shell <b>\nCMD@4-4 shell <c>"},

    /* Continuations */
    {"RUN apt-get update && \\\n    apt-get install -y curl",
     "RUN@1-2 shell <apt-get update &&     apt-get install -y curl>"},
    {"RUN a \\  \t\n b", "RUN@1-2 shell <a  b>"},
    {"RUN a \\\n# a comment\n   # indented comment\n\n  \t\n b \\\n c",
     "RUN@1-7 shell <a  b  c>"},
    {"RUN a\\\nb", "RUN@1-2 shell <ab>"},
    {"RUN echo \\\\\nRUN b", "RUN@1-1 shell <echo \\\\>\nRUN@2-2 shell <b>"},
    {"\\\nRUN a", "RUN@1-2 shell <a>"},
    {"RUN a \\", "RUN@1-1 shell <a>"},
    {"COPY \\\n  a \\\n  b", "COPY@1-3 shell <a><b>"},
    {"ENV A=1 \\\n    B=2", "ENV@1-2 shell <A><1><B><2>"},
    {"  RUN indented", "RUN@1-1 shell <indented>"},
    {"RUN a # not a comment", "RUN@1-1 shell <a # not a comment>"},
    {"# comment\nRUN a\n  # indented comment\nRUN b", "RUN@2-2 shell <a>\nRUN@4-4 shell <b>"},

    /* Directives and the backtick escape */
    {"# escape=`\nRUN dir C:\\Windows `\n  /b\nCOPY C:\\src\\ C:\\dst\\",
     "escape=`\nRUN@2-3 shell <dir C:\\Windows   /b>\nCOPY@4-4 shell <C:\\src\\><C:\\dst\\>"},
    {"#  ESCAPE  =  `  \nRUN a`\nb", "escape=`\nRUN@2-3 shell <ab>"},
    {"# escape=\\\nRUN a\\\nb", "RUN@2-3 shell <ab>"},
    {"# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nRUN a `\n b",
     "escape=`\nRUN@4-5 shell <a  b>"},
    {"# escape=`\nENV A=a`\"b C=d\\e", "escape=`\nENV@2-2 shell <A><a`\"b><C><d\\e>"},
    {"# hello\n# escape=`\nRUN a\\\nb", "RUN@3-4 shell <ab>"},
    {"\n# escape=`\nRUN a\\\nb", "RUN@3-4 shell <ab>"},
    {"# unknown=1\n# escape=`\nRUN a\\\nb", "RUN@3-4 shell <ab>"},
    {"RUN a\n# escape=`\n# escape=`\nRUN b", "RUN@1-1 shell <a>\nRUN@4-4 shell <b>"},
    {"# escape=\\\n# syntax=x\nRUN a", "RUN@3-3 shell <a>"},

    /* Line endings, BOM, tabs */
    {"FROM a\r\nRUN b \\\r\n  c\r\n", "FROM@1-1 shell <a>\nRUN@2-3 shell <b   c>"},
    {"\xef\xbb\xbf# escape=`\nRUN a`\nb", "escape=`\nRUN@2-3 shell <ab>"},
    {"\xef\xbb\xbf" "FROM a", "FROM@1-1 shell <a>"},
    {"\tFROM\ta\tAS\tb\t", "FROM@1-1 shell <a><AS><b>"},

    /* Heredocs */
    {"RUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nRUN next",
     "RUN@1-4 shell <<<EOF> hd(EOF expand)<apt-get update\\napt-get install -y vim\\n>\n"
     "RUN@5-5 shell <next>"},
    {"RUN <<-EOF\n\t\techo a\n\techo \\\n\t# b\n\tEOF",
     "RUN@1-5 shell <<<-EOF> hd(EOF expand chomp)<echo a\\necho \\\\n# b\\n>"},
    {"RUN <<'EOF' bash\necho $HOME\nEOF", "RUN@1-3 shell <<<'EOF' bash> hd(EOF noexpand)<echo $HOME\\n>"},
    {"RUN <<\"EOF\"\nx\nEOF", "RUN@1-3 shell <<<\"EOF\"> hd(EOF noexpand)<x\\n>"},
    {"RUN python3 <<PY > /out\nprint(1)\nPY",
     "RUN@1-3 shell <python3 <<PY > /out> hd(PY expand)<print(1)\\n>"},
    {"RUN <<A <<-B cat\na\nA\n\tb\n\tB\nRUN z",
     "RUN@1-5 shell <<<A <<-B cat> hd(A expand)<a\\n> hd(B expand chomp)<b\\n>\n"
     "RUN@6-6 shell <z>"},
    {"COPY <<EOF /etc/motd\nwelcome\n\nEOF", "COPY@1-4 shell <<<EOF></etc/motd> hd(EOF expand)<welcome\\n\\n>"},
    {"ADD --chmod=600 <<EOF /f\nx\nEOF", "ADD@1-3 --chmod=600 shell <<<EOF></f> hd(EOF expand)<x\\n>"},
    {"RUN <<EOF\nEOF", "RUN@1-2 shell <<<EOF> hd(EOF expand)<>"},
    {"RUN <<EOF\r\na\r\nEOF\r\n", "RUN@1-3 shell <<<EOF> hd(EOF expand)<a\\n>"},
    {"RUN 3<<EOF cat /dev/fd/3\nx\nEOF", "RUN@1-3 shell <3<<EOF cat /dev/fd/3> hd(EOF expand)<x\\n>"},
    {"RUN \\\n  <<EOF\nbody\nEOF", "RUN@1-4 shell <<<EOF> hd(EOF expand)<body\\n>"},
    {"ONBUILD RUN <<EOF\nx\nEOF",
     "ONBUILD@1-3 shell  {RUN@1-3 shell <<<EOF> hd(EOF expand)<x\\n>}"},
    {"RUN echo \"<<EOF\"", "RUN@1-1 shell <echo \"<<EOF\">"},
    {"RUN cat << EOF", "RUN@1-1 shell <cat << EOF>"},
    {"RUN echo a<<b", "RUN@1-1 shell <echo a<<b>"},
    {"CMD <<EOF", "CMD@1-1 shell <<<EOF>"},
    {"RUN <<E\"O\"F\nx\nEOF", "RUN@1-3 shell <<<E\"O\"F> hd(EOF noexpand)<x\\n>"},
};

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const struct ok_case *c = &ok_cases[i];
        struct ck_dockerfile *df = NULL;
        struct cairn_err err;
        cairn_err_clear(&err);
        int rc = ck_dockerfile_parse("Dockerfile", c->text, strlen(c->text), &df, &err);
        if (rc != 0)
            fail_msg("case %zu (%s): rc=%d %s", i, c->text, rc, err.msg);
        char *got = dump(df);
        if (strcmp(got, c->want) != 0)
            fail_msg("case %zu:\ninput:\n%s\nwant:\n%s\ngot:\n%s", i, c->text, c->want, got);
        free(got);
        ck_dockerfile_free(df);
    }
}

struct orig_case {
    const char *text;
    size_t index;
    const char *original;
};

static const struct orig_case orig_cases[] = {
    {"  RUN  a  \\\n    b  ", 0, "RUN  a      b"},
    {"FROM a\nCOPY --chown=1 x \\\n# c\n  y", 1, "COPY --chown=1 x   y"},
    {"RUN <<EOF\nbody\nEOF", 0, "RUN <<EOF"},
    {"ONBUILD  RUN x", 0, "ONBUILD  RUN x"},
    {"# escape=`\nRUN a `\nb", 0, "RUN a b"},
    {"RUN a\r\n", 0, "RUN a"},
};

static void test_original(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof orig_cases / sizeof orig_cases[0]; i++) {
        const struct orig_case *c = &orig_cases[i];
        struct ck_dockerfile *df = NULL;
        assert_int_equal(ck_dockerfile_parse("Dockerfile", c->text, strlen(c->text), &df, NULL), 0);
        assert_true(c->index < df->ninstrs);
        if (strcmp(df->instrs[c->index].original, c->original) != 0)
            fail_msg("case %zu: want [%s] got [%s]", i, c->original,
                     df->instrs[c->index].original);
        ck_dockerfile_free(df);
    }
    /* The ONBUILD trigger's original is the text after the keyword. */
    struct ck_dockerfile *df = NULL;
    assert_int_equal(ck_dockerfile_parse("Dockerfile", "ONBUILD  RUN x ", 15, &df, NULL), 0);
    assert_string_equal(df->instrs[0].sub->original, "RUN x");
    ck_dockerfile_free(df);
}

struct err_case {
    const char *text;
    int code;
    const char *msg;
};

static const struct err_case err_cases[] = {
    /* Keywords */
    {"FROM a\nRUN b\nRUN c\nRUN d\nRUN e\nRUN f\nRUNN g", CAIRN_E_PARSE,
     "Dockerfile:7: unknown instruction \"RUNN\""},
    {"from a\nfoo bar", CAIRN_E_PARSE, "Dockerfile:2: unknown instruction \"foo\""},
    {"\\\nRUNN\\\nx", CAIRN_E_PARSE, "Dockerfile:1: unknown instruction \"RUNNx\""},

    /* FROM */
    {"FROM", CAIRN_E_PARSE, "Dockerfile:1: FROM requires either one or three arguments"},
    {"FROM a b", CAIRN_E_PARSE, "Dockerfile:1: FROM requires either one or three arguments"},
    {"FROM a IS b", CAIRN_E_PARSE, "Dockerfile:1: FROM requires either one or three arguments"},
    {"FROM a AS b c", CAIRN_E_PARSE, "Dockerfile:1: FROM requires either one or three arguments"},
    {"FROM a AS 1st", CAIRN_E_PARSE,
     "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number "
     "or contain symbols"},
    {"FROM a AS b$c", CAIRN_E_PARSE,
     "Dockerfile:1: invalid name for build stage: \"b$c\", name can't start with a number "
     "or contain symbols"},

    /* ENV, LABEL, ARG */
    {"ENV", CAIRN_E_PARSE, "Dockerfile:1: ENV requires at least one argument"},
    {"ENV k", CAIRN_E_PARSE, "Dockerfile:1: ENV must have two arguments"},
    {"LABEL k", CAIRN_E_PARSE, "Dockerfile:1: LABEL must have two arguments"},
    {"ENV a=b c", CAIRN_E_PARSE,
     "Dockerfile:1: Syntax error - can't find = in \"c\". Must be of the form: name=value"},
    {"LABEL =x", CAIRN_E_PARSE, "Dockerfile:1: LABEL names can not be blank"},
    {"ARG", CAIRN_E_PARSE, "Dockerfile:1: ARG requires at least one argument"},
    {"ARG a =b", CAIRN_E_PARSE, "Dockerfile:1: ARG names can not be blank"},

    /* ADD, COPY */
    {"COPY a", CAIRN_E_PARSE,
     "Dockerfile:1: COPY requires at least two arguments, but only one was provided. "
     "Destination could not be determined"},
    {"ADD [\"a\"]", CAIRN_E_PARSE,
     "Dockerfile:1: ADD requires at least two arguments, but only one was provided. "
     "Destination could not be determined"},
    {"COPY\t\n\t\tquux \\\n      bar", CAIRN_E_PARSE,
     "Dockerfile:1: COPY requires at least two arguments, but only one was provided. "
     "Destination could not be determined"},
    {"COPY a <<EOF\nx\nEOF", CAIRN_E_PARSE,
     "Dockerfile:1: COPY cannot accept a heredoc as a destination"},

    /* One-argument instructions */
    {"USER", CAIRN_E_PARSE, "Dockerfile:1: USER requires exactly one argument"},
    {"WORKDIR  ", CAIRN_E_PARSE, "Dockerfile:1: WORKDIR requires exactly one argument"},
    {"STOPSIGNAL", CAIRN_E_PARSE, "Dockerfile:1: STOPSIGNAL requires exactly one argument"},
    {"MAINTAINER", CAIRN_E_PARSE, "Dockerfile:1: MAINTAINER requires exactly one argument"},
    {"EXPOSE", CAIRN_E_PARSE, "Dockerfile:1: EXPOSE requires at least one argument"},
    {"VOLUME", CAIRN_E_PARSE, "Dockerfile:1: VOLUME requires at least one argument"},
    {"VOLUME []", CAIRN_E_PARSE, "Dockerfile:1: VOLUME requires at least one argument"},
    {"VOLUME [\"/a\", \" \"]", CAIRN_E_PARSE,
     "Dockerfile:1: VOLUME specified can not be an empty string"},

    /* SHELL */
    {"SHELL /bin/sh -c", CAIRN_E_PARSE,
     "Dockerfile:1: SHELL requires the arguments to be in JSON form"},
    {"SHELL []", CAIRN_E_PARSE, "Dockerfile:1: SHELL requires at least one argument"},
    {"SHELL", CAIRN_E_PARSE, "Dockerfile:1: SHELL requires at least one argument"},

    /* HEALTHCHECK */
    {"HEALTHCHECK", CAIRN_E_PARSE, "Dockerfile:1: HEALTHCHECK requires at least one argument"},
    {"HEALTHCHECK NONE x", CAIRN_E_PARSE, "Dockerfile:1: HEALTHCHECK NONE takes no arguments"},
    {"HEALTHCHECK CMD", CAIRN_E_PARSE, "Dockerfile:1: Missing command after HEALTHCHECK CMD"},
    {"HEALTHCHECK CMD []", CAIRN_E_PARSE, "Dockerfile:1: Missing command after HEALTHCHECK CMD"},
    {"HEALTHCHECK cmd-shell x", CAIRN_E_PARSE,
     "Dockerfile:1: Unknown type \"CMD-SHELL\" in HEALTHCHECK (try CMD)"},
    {"HEALTHCHECK --interval=1s --retries=2 --timeout=3s --foo=1 CMD x", CAIRN_E_PARSE,
     "Dockerfile:1: unknown flag \"--foo\" for HEALTHCHECK"},

    /* ONBUILD */
    {"ONBUILD", CAIRN_E_PARSE, "Dockerfile:1: ONBUILD requires at least one argument"},
    {"ONBUILD ONBUILD RUN x", CAIRN_E_PARSE,
     "Dockerfile:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"},
    {"ONBUILD from scratch", CAIRN_E_PARSE,
     "Dockerfile:1: FROM isn't allowed as an ONBUILD trigger"},
    {"ONBUILD MAINTAINER me", CAIRN_E_PARSE,
     "Dockerfile:1: MAINTAINER isn't allowed as an ONBUILD trigger"},
    {"ONBUILD RUNN x", CAIRN_E_PARSE, "Dockerfile:1: unknown instruction \"RUNN\""},
    {"ONBUILD COPY a", CAIRN_E_PARSE,
     "Dockerfile:1: COPY requires at least two arguments, but only one was provided. "
     "Destination could not be determined"},
    {"ONBUILD RUN <<EOF\nx", CAIRN_E_PARSE, "Dockerfile:1: unterminated heredoc \"EOF\""},

    /* Flags */
    {"COPY --foo a b", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--foo\" for COPY"},
    {"ADD --from=x a b", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--from\" for ADD"},
    {"COPY --checksum=x a b", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--checksum\" for COPY"},
    {"FROM --network=none a", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--network\" for FROM"},
    {"ENV --x=1 a=b", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--x\" for ENV"},
    {"MAINTAINER --boo joe@example.com", CAIRN_E_PARSE,
     "Dockerfile:1: unknown flag \"--boo\" for MAINTAINER"},
    {"CMD --help", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--help\" for CMD"},
    {"RUN --mount=a --network=none --network=host x", CAIRN_E_PARSE,
     "Dockerfile:1: duplicate flag specified: --network"},
    {"COPY --from=a --from=b x y", CAIRN_E_PARSE,
     "Dockerfile:1: duplicate flag specified: --from"},
    {"COPY --link --link=true x y", CAIRN_E_PARSE,
     "Dockerfile:1: duplicate flag specified: --link"},
    {"COPY --chown a b", CAIRN_E_PARSE, "Dockerfile:1: missing a value on flag: --chown"},
    {"RUN --mount x", CAIRN_E_PARSE, "Dockerfile:1: missing a value on flag: --mount"},
    {"COPY --link= a b", CAIRN_E_PARSE, "Dockerfile:1: missing a value on flag: --link"},
    {"COPY --link=maybe a b", CAIRN_E_PARSE,
     "Dockerfile:1: expecting boolean value for flag --link, not: maybe"},
    {"ONBUILD RUN --foo x", CAIRN_E_PARSE, "Dockerfile:1: unknown flag \"--foo\" for RUN"},

    /* JSON that is valid but not all strings */
    {"RUN [\"a\", 1]", CAIRN_E_PARSE,
     "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only"},
    {"CMD [[\"a\"], {\"k\": [true, null, -1.5e3]}]", CAIRN_E_PARSE,
     "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only"},
    {"COPY [\"a\", false]", CAIRN_E_PARSE,
     "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only"},
    {"RUN [\"a\\u0000b\"]", CAIRN_E_PARSE,
     "Dockerfile:1: JSON strings must not contain NUL characters"},

    /* Directives */
    {"# escape=x\nRUN a", CAIRN_E_PARSE,
     "Dockerfile:1: invalid escape token 'x' does not match ` or \\"},
    {"# escape=``\nRUN a", CAIRN_E_PARSE,
     "Dockerfile:1: invalid escape token '``' does not match ` or \\"},
    {"# escape=\\\n# escape=`\nRUN a", CAIRN_E_PARSE,
     "Dockerfile:2: only one escape parser directive can be used"},
    {"# syntax=a\n# SYNTAX=b\nRUN a", CAIRN_E_PARSE,
     "Dockerfile:2: only one syntax parser directive can be used"},

    /* Heredocs */
    {"FROM a\n\nRUN <<EOF\nline\n", CAIRN_E_PARSE, "Dockerfile:3: unterminated heredoc \"EOF\""},
    {"RUN <<A <<B\na\nA\nb\n", CAIRN_E_PARSE, "Dockerfile:1: unterminated heredoc \"B\""},
    {"RUN <<EOF\n EOF\n", CAIRN_E_PARSE, "Dockerfile:1: unterminated heredoc \"EOF\""},
    {"RUN <<EOF\n\tEOF\n", CAIRN_E_PARSE, "Dockerfile:1: unterminated heredoc \"EOF\""},

    /* Errors in continued instructions name their first line */
    {"FROM a\nCOPY \\\n  a\\\n\n", CAIRN_E_PARSE,
     "Dockerfile:2: COPY requires at least two arguments, but only one was provided. "
     "Destination could not be determined"},

    /* Whole-file problems */
    {"", CAIRN_E_PARSE, "Dockerfile:1: file with no instructions"},
    {"# just a comment\n\n  \n", CAIRN_E_PARSE, "Dockerfile:3: file with no instructions"},
    {"# escape=`\n", CAIRN_E_PARSE, "Dockerfile:1: file with no instructions"},
};

static void test_error_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const struct err_case *c = &err_cases[i];
        struct ck_dockerfile *df = NULL;
        struct cairn_err err;
        cairn_err_clear(&err);
        int rc = ck_dockerfile_parse("Dockerfile", c->text, strlen(c->text), &df, &err);
        if (rc != c->code || strcmp(err.msg, c->msg) != 0)
            fail_msg("case %zu (%s):\nwant %d [%s]\ngot  %d [%s]", i, c->text, c->code,
                     c->msg, rc, err.msg);
        assert_null(df);
        assert_int_equal(err.code, c->code);
    }
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "FROM a\nRUN b\0c\n";
    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    assert_int_equal(ck_dockerfile_parse("x/Dockerfile.dev", text, sizeof text - 1, &df, &err),
                     CAIRN_E_PARSE);
    assert_string_equal(err.msg, "x/Dockerfile.dev:2: NUL byte in the file");
    assert_null(df);
}

/* Repeats s until the buffer holds at least n bytes. */
static char *repeat(const char *s, size_t n, size_t *len)
{
    size_t sl = strlen(s), count = (n + sl - 1) / sl;
    char *b = malloc(count * sl + 1);
    assert_non_null(b);
    for (size_t i = 0; i < count; i++)
        memcpy(b + i * sl, s, sl);
    b[count * sl] = '\0';
    *len = count * sl;
    return b;
}

static void test_caps(void **state)
{
    (void)state;
    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    size_t len;

    /* Whole file. */
    char *big = repeat("#", CK_DOCKERFILE_MAX_SIZE + 1, &len);
    assert_int_equal(ck_dockerfile_parse("Dockerfile", big, len, &df, &err), CAIRN_E_TOOBIG);
    assert_string_equal(err.msg,
                        "Dockerfile: file is 4194305 bytes, larger than the limit of 4194304 bytes");
    free(big);

    /* One logical line, made of many continuation lines. */
    char *body = repeat("aaaaaaa \\\n", 2 * CK_DOCKERFILE_MAX_LINE, &len);
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    assert_int_equal(cairn_buf_puts(&b, "FROM a\nRUN \\\n"), 0);
    assert_int_equal(cairn_buf_append(&b, body, len), 0);
    free(body);
    assert_int_equal(ck_dockerfile_parse("Dockerfile", b.data, b.len, &df, &err),
                     CAIRN_E_TOOBIG);
    assert_string_equal(err.msg,
                        "Dockerfile:2: the instruction is longer than the limit of 262144 bytes");
    cairn_buf_free(&b);

    /* Just under the line cap is fine. */
    body = repeat("a", CK_DOCKERFILE_MAX_LINE - 4, &len);
    cairn_buf_init(&b, 0);
    assert_int_equal(cairn_buf_puts(&b, "RUN "), 0);
    assert_int_equal(cairn_buf_append(&b, body, len), 0);
    free(body);
    if (ck_dockerfile_parse("Dockerfile", b.data, b.len, &df, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(strlen(df->instrs[0].args[0]), CK_DOCKERFILE_MAX_LINE - 4);
    ck_dockerfile_free(df);
    df = NULL;
    cairn_buf_free(&b);

    /* Many tiny instructions cost more parsed than written: the memory cap
     * stops them. */
    char *tiny = repeat("CMD\n", CK_DOCKERFILE_MAX_SIZE - 8, &len);
    assert_int_equal(ck_dockerfile_parse("Dockerfile", tiny, len, &df, &err), CAIRN_E_TOOBIG);
    assert_non_null(strstr(err.msg, "more than the limit of 67108864 bytes of memory"));
    assert_null(df);
    free(tiny);
}

static void test_heredoc_content_large(void **state)
{
    (void)state;
    size_t len;
    char *body = repeat("0123456789abcdef\n", 1 << 20, &len);
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    assert_int_equal(cairn_buf_puts(&b, "RUN <<EOF\n"), 0);
    assert_int_equal(cairn_buf_append(&b, body, len), 0);
    assert_int_equal(cairn_buf_puts(&b, "EOF\n"), 0);
    struct ck_dockerfile *df = NULL;
    assert_int_equal(ck_dockerfile_parse("Dockerfile", b.data, b.len, &df, NULL), 0);
    assert_int_equal(df->instrs[0].nheredocs, 1);
    assert_string_equal(df->instrs[0].heredocs[0].content, body);
    assert_int_equal(df->instrs[0].end_line, (int)(len / 17) + 2);
    ck_dockerfile_free(df);
    cairn_buf_free(&b);
    free(body);
}

/* Arrays that grow one element at a time (flags, heredocs) must grow
 * geometrically: many repeats parse quickly and within the memory cap. */
static void test_many_repeats(void **state)
{
    (void)state;
    size_t len;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    char *flags = repeat("--mount=x ", 20000 * 10, &len);
    assert_int_equal(cairn_buf_puts(&b, "RUN "), 0);
    assert_int_equal(cairn_buf_append(&b, flags, len), 0);
    assert_int_equal(cairn_buf_puts(&b, "true\nRUN cat"), 0);
    free(flags);
    char *markers = repeat(" <<A", 5000 * 4, &len);
    assert_int_equal(cairn_buf_append(&b, markers, len), 0);
    free(markers);
    char *ends = repeat("\nA", 5000 * 2, &len);
    assert_int_equal(cairn_buf_append(&b, ends, len), 0);
    free(ends);

    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    if (ck_dockerfile_parse("Dockerfile", b.data, b.len, &df, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(df->instrs[0].nflags, 20000);
    assert_string_equal(df->instrs[0].flags[19999].value, "x");
    assert_string_equal(df->instrs[0].args[0], "true");
    assert_int_equal(df->instrs[1].nheredocs, 5000);
    assert_string_equal(df->instrs[1].heredocs[4999].content, "");
    assert_int_equal(df->instrs[1].end_line, 5002);
    ck_dockerfile_free(df);
    cairn_buf_free(&b);
}

static void test_flag_lookup(void **state)
{
    (void)state;
    static const char text[] =
        "COPY --from=build --link --exclude=a --exclude=b x y\nRUN z";
    struct ck_dockerfile *df = NULL;
    assert_int_equal(ck_dockerfile_parse("Dockerfile", text, sizeof text - 1, &df, NULL), 0);
    bool present = true;
    assert_string_equal(ck_instr_flag(&df->instrs[0], "from", &present), "build");
    assert_true(present);
    assert_null(ck_instr_flag(&df->instrs[0], "link", &present));
    assert_true(present);
    assert_null(ck_instr_flag(&df->instrs[0], "chown", &present));
    assert_false(present);
    assert_string_equal(ck_instr_flag(&df->instrs[0], "exclude", NULL), "a");
    assert_null(ck_instr_flag(&df->instrs[1], "from", &present));
    assert_false(present);
    assert_int_equal(df->ninstrs, 2);
    assert_string_equal(df->name, "Dockerfile");
    assert_int_equal(df->escape, '\\');
    ck_dockerfile_free(df);
}

static void test_names(void **state)
{
    (void)state;
    static const char *const want[] = {
        "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
        "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
        "HEALTHCHECK", "SHELL",
    };
    for (int k = CK_INSTR_FROM; k <= CK_INSTR_SHELL; k++)
        assert_string_equal(ck_instr_name((enum ck_instr_kind)k), want[k]);
    /* Every keyword parses back to its own kind. */
    for (int k = CK_INSTR_FROM; k <= CK_INSTR_SHELL; k++) {
        char text[128];
        static const char *const args[] = {
            "a", "a", "a", "a=b", "a", "1", "a=b", "a b", "a b", "a", "/v", "u", "/w",
            "a", "RUN a", "TERM", "NONE", "[\"sh\"]",
        };
        int n = snprintf(text, sizeof text, "%s %s", want[k], args[k]);
        struct ck_dockerfile *df = NULL;
        struct cairn_err err;
        assert_int_equal(ck_dockerfile_parse("Dockerfile", text, (size_t)n, &df, &err), 0);
        assert_int_equal(df->instrs[0].kind, k);
        ck_dockerfile_free(df);
    }
    ck_dockerfile_free(NULL);
}

static void test_parse_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-test-dockerfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/Dockerfile", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# escape=`\nFROM scratch\nCOPY a `\n  b\n", f);
    fclose(f);

    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    assert_int_equal(ck_dockerfile_parse_file(path, &df, &err), 0);
    assert_int_equal(df->ninstrs, 2);
    assert_int_equal(df->escape, '`');
    assert_string_equal(df->name, path);
    assert_int_equal(df->instrs[1].line, 3);
    assert_int_equal(df->instrs[1].end_line, 4);
    ck_dockerfile_free(df);
    df = NULL;

    /* Errors name the path. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("FROM a\nRUNN b\n", f);
    fclose(f);
    assert_int_equal(ck_dockerfile_parse_file(path, &df, &err), CAIRN_E_PARSE);
    char want[512];
    snprintf(want, sizeof want, "%s:2: unknown instruction \"RUNN\"", path);
    assert_string_equal(err.msg, want);

    /* Too big: refused from its size, before reading. */
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, CK_DOCKERFILE_MAX_SIZE + 1), 0);
    close(fd);
    assert_int_equal(ck_dockerfile_parse_file(path, &df, &err), CAIRN_E_TOOBIG);
    snprintf(want, sizeof want,
             "%s: file is 4194305 bytes, larger than the limit of 4194304 bytes", path);
    assert_string_equal(err.msg, want);
    assert_null(df);
    unlink(path);

    /* Missing file and a directory: negative errno with its text. */
    assert_int_equal(ck_dockerfile_parse_file(path, &df, &err), -ENOENT);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(ck_dockerfile_parse_file(dir, &df, &err), -EISDIR);
    snprintf(want, sizeof want, "%s: Is a directory", dir);
    assert_string_equal(err.msg, want);
    assert_null(df);
    rmdir(dir);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    assert_int_equal(ck_dockerfile_parse("Dockerfile", NULL, 3, &df, &err), CAIRN_E_INVAL);
    assert_int_equal(ck_dockerfile_parse("Dockerfile", "RUN a", 5, NULL, &err), CAIRN_E_INVAL);
    /* Only len bytes count: text need not be NUL-terminated. */
    assert_int_equal(ck_dockerfile_parse(NULL, "RUN abcdef", 5, &df, NULL), 0);
    assert_string_equal(df->instrs[0].args[0], "a");
    assert_string_equal(df->name, "Dockerfile");
    ck_dockerfile_free(df);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_original),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_heredoc_content_large),
        cmocka_unit_test(test_many_repeats),
        cmocka_unit_test(test_flag_lookup),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
