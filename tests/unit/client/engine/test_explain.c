/* Explaining misses (client/engine/explain.c): the diff of two key materials
 * gives one cause per changed input, the record survives encoding, bad
 * records are refused, steps are matched to the right remembered step,
 * and the store keeps one record per tag within its cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachekey/field.h"
#include "client/engine/explain.h"
#include "client/store/store.h"

/* A step from label/value pairs (NULL-terminated list). */
static void step_make(struct cairn_explain_step *s, int number,
                      const char *const *lv)
{
    memset(s, 0, sizeof *s);
    cairn_buf_init(&s->material, 0);
    cairn_strvec_init(&s->args);
    s->number = number;
    snprintf(s->key, sizeof s->key, "%064d", number);
    for (size_t i = 0; lv[i]; i += 2) {
        assert_int_equal(ck_field_append_str(&s->material, lv[i]), 0);
        assert_int_equal(ck_field_append_str(&s->material, lv[i + 1]), 0);
    }
}

static void source_add(struct cairn_explain_step *s, const char *src,
                       bool listed, const char *const *files)
{
    s->sources = realloc(s->sources, (s->nsources + 1) * sizeof *s->sources);
    assert_non_null(s->sources);
    struct cairn_explain_source *o = &s->sources[s->nsources++];
    memset(o, 0, sizeof *o);
    o->src = strdup(src);
    o->listed = listed;
    /* files: "path", "f0644", "content" triples; content hashed to a
     * stand-in digest (its first bytes). */
    for (size_t i = 0; files && files[i]; i += 3) {
        o->files = realloc(o->files, (o->nfiles + 1) * sizeof *o->files);
        assert_non_null(o->files);
        struct cairn_explain_file *f = &o->files[o->nfiles++];
        memset(f, 0, sizeof *f);
        f->path = strdup(files[i]);
        f->type = files[i + 1][0];
        f->mode = (unsigned)strtoul(files[i + 1] + 1, NULL, 8);
        if (f->type == 'f') {
            f->has_digest = true;
            snprintf((char *)f->digest, sizeof f->digest, "%s", files[i + 2]);
        }
    }
}

/* The causes of old -> cur joined by '\n'. */
static char *causes_of(const struct cairn_explain_step *old,
                       const struct cairn_explain_step *cur)
{
    struct cairn_strvec c;
    cairn_strvec_init(&c);
    assert_int_equal(cairn_explain_step_diff(old, cur, &c), 0);
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(cairn_buf_printf(&b, "%s%s", i ? "\n" : "", c.v[i]),
                         0);
    cairn_strvec_free(&c);
    return cairn_buf_take(&b);
}

#define P_OLD "aaaa"
#define P_NEW "bbbb"

static void test_equal_gives_nothing(void **state)
{
    (void)state;
    const char *m[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make", NULL};
    struct cairn_explain_step a, b;
    step_make(&a, 2, m);
    step_make(&b, 2, m);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_parent_only(void **state)
{
    (void)state;
    const char *o[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make", NULL};
    const char *n[] = {"version", "1", "parent", P_NEW, "op", "RUN",
                       "instruction", "RUN make", NULL};
    struct cairn_explain_step a, b;
    step_make(&a, 2, o);
    step_make(&b, 2, n);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "parent step changed");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_build_arg_and_env(void **state)
{
    (void)state;
    const char *o[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make", "argv", "/bin/sh",
                       "env", "GONE=x", "env", "MODE=fast",
                       "env", "VERSION=1.0", "workdir", "/src", NULL};
    const char *n[] = {"version", "1", "parent", P_NEW, "op", "RUN",
                       "instruction", "RUN make", "argv", "/bin/sh",
                       "env", "MODE=slow", "env", "NEW=y",
                       "env", "VERSION=2.0", "workdir", "/build", NULL};
    struct cairn_explain_step a, b;
    step_make(&a, 3, o);
    step_make(&b, 3, n);
    assert_int_equal(cairn_strvec_push(&a.args, "VERSION=1.0"), 0);
    assert_int_equal(cairn_strvec_push(&b.args, "VERSION=2.0"), 0);
    char *c = causes_of(&a, &b);
    /* The parent differs too, but the step's own causes say more. */
    assert_string_equal(c, "RUN: ENV GONE changed (x -> unset)\n"
                           "RUN: ENV MODE changed (fast -> slow)\n"
                           "RUN: ENV NEW changed (unset -> y)\n"
                           "RUN: build arg VERSION changed (1.0 -> 2.0)\n"
                           "RUN: WORKDIR changed (/src -> /build)");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_instruction_and_shell(void **state)
{
    (void)state;
    const char *o[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make", "argv", "/bin/sh",
                       "argv", "make", NULL};
    const char *n[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make all", "argv", "/bin/sh",
                       "argv", "make all", NULL};
    const char *s[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                       "instruction", "RUN make", "argv", "/bin/bash",
                       "argv", "make", NULL};
    struct cairn_explain_step a, b, sh;
    step_make(&a, 2, o);
    step_make(&b, 2, n);
    step_make(&sh, 2, s);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "RUN: instruction changed");
    free(c);
    c = causes_of(&a, &sh);
    assert_string_equal(c, "RUN: SHELL changed");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
    cairn_explain_step_clear(&sh);
}

static void test_from_digest(void **state)
{
    (void)state;
    const char *o[] = {"version", "1", "parent", "", "op", "FROM",
                       "instruction", "FROM busybox", "base", "image",
                       "digest", "sha256:11", "platform", "linux/amd64",
                       NULL};
    const char *n[] = {"version", "1", "parent", "", "op", "FROM",
                       "instruction", "FROM busybox", "base", "image",
                       "digest", "sha256:22", "platform", "linux/amd64",
                       NULL};
    const char *u[] = {"version", "1", "parent", "", "op", "FROM",
                       "instruction", "FROM busybox", "base", "unresolved",
                       "ref", "busybox", "platform", "linux/amd64", NULL};
    struct cairn_explain_step a, b, c3;
    step_make(&a, 1, o);
    step_make(&b, 1, n);
    step_make(&c3, 1, u);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "FROM: base image digest changed");
    free(c);
    c = causes_of(&a, &c3);
    assert_string_equal(c, "FROM: base image not in the local store");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
    cairn_explain_step_clear(&c3);
}

static const char *const COPY_OLD[] = {
    "version", "1", "parent", P_OLD, "op", "COPY", "instruction",
    "COPY app/ /app/", "workdir", "/", "from", "context", "dest", "/app/",
    "src", "app/", "src-tree", "1111", NULL};
static const char *const COPY_NEW[] = {
    "version", "1", "parent", P_OLD, "op", "COPY", "instruction",
    "COPY app/ /app/", "workdir", "/", "from", "context", "dest", "/app/",
    "src", "app/", "src-tree", "2222", NULL};

static void test_copy_files(void **state)
{
    (void)state;
    struct cairn_explain_step a, b;
    step_make(&a, 3, COPY_OLD);
    step_make(&b, 3, COPY_NEW);
    const char *of[] = {"app", "d0755", "", "app/f7", "f0644", "old",
                        "app/old.txt", "f0644", "x", "app/run.sh", "f0644",
                        "s", "app/z", "f0644", "z", NULL};
    /* Listed in another order than the old one: the diff sorts. */
    const char *nf[] = {"app/z", "l0777", "", "app", "d0755", "",
                        "app/run.sh", "f0755", "s", "app/new.txt", "f0644",
                        "n", "app/f7", "f0644", "new", NULL};
    source_add(&a, "app/", true, of);
    source_add(&b, "app/", true, nf);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "COPY app/: content of app/f7 changed\n"
                           "COPY app/: app/new.txt added\n"
                           "COPY app/: app/old.txt removed\n"
                           "COPY app/: mode of app/run.sh changed "
                           "(0644 -> 0755)\n"
                           "COPY app/: type of app/z changed");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_copy_unlisted(void **state)
{
    (void)state;
    struct cairn_explain_step a, b;
    step_make(&a, 3, COPY_OLD);
    step_make(&b, 3, COPY_NEW);
    const char *files[] = {"app/f", "f0644", "1", NULL};
    source_add(&a, "app/", false, NULL); /* over the listing cap */
    source_add(&b, "app/", true, files);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "COPY app/: content changed");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_copy_many_files_capped(void **state)
{
    (void)state;
    struct cairn_explain_step a, b;
    step_make(&a, 3, COPY_OLD);
    step_make(&b, 3, COPY_NEW);
    source_add(&a, "app/", true, NULL);
    source_add(&b, "app/", true, NULL);
    /* 25 files added: 20 named, then one line for the rest. */
    char p[32];
    for (int i = 0; i < 25; i++) {
        snprintf(p, sizeof p, "app/f%02d", i);
        struct cairn_explain_source *s = &b.sources[0];
        s->files = realloc(s->files, (s->nfiles + 1) * sizeof *s->files);
        assert_non_null(s->files);
        struct cairn_explain_file *e = &s->files[s->nfiles++];
        memset(e, 0, sizeof *e);
        e->path = strdup(p);
        e->type = 'f';
        e->mode = 0644;
        e->has_digest = true;
    }
    struct cairn_strvec c;
    cairn_strvec_init(&c);
    assert_int_equal(cairn_explain_step_diff(&a, &b, &c), 0);
    assert_int_equal(c.n, CAIRN_EXPLAIN_MAX_FILE_CAUSES + 1);
    assert_string_equal(c.v[0], "COPY app/: app/f00 added");
    assert_string_equal(c.v[c.n - 1], "COPY app/: ... and 5 more files changed");
    cairn_strvec_free(&c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

/* Values are shown escaped and short: one cause, one line. */
static void test_values_escaped(void **state)
{
    (void)state;
    char longv[200];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    char env[220];
    snprintf(env, sizeof env, "L=%s", longv);
    const char *o[] = {"op", "RUN", "instruction", "RUN x", "env", "A=a\nb",
                       "env", "L=1", NULL};
    const char *n[] = {"op", "RUN", "instruction", "RUN x", "env", "A=c",
                       "env", env, NULL};
    struct cairn_explain_step a, b;
    step_make(&a, 2, o);
    step_make(&b, 2, n);
    struct cairn_strvec c;
    cairn_strvec_init(&c);
    assert_int_equal(cairn_explain_step_diff(&a, &b, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.v[0], "RUN: ENV A changed (a\\nb -> c)");
    assert_null(strchr(c.v[1], '\n'));
    assert_true(strlen(c.v[1]) < 120);
    assert_non_null(strstr(c.v[1], "...)"));
    cairn_strvec_free(&c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

static void test_other_label_named(void **state)
{
    (void)state;
    const char *o[] = {"op", "COPY", "instruction", "COPY <<EOF /f",
                       "heredoc-body", "one", NULL};
    const char *n[] = {"op", "COPY", "instruction", "COPY <<EOF /f",
                       "heredoc-body", "two", NULL};
    struct cairn_explain_step a, b;
    step_make(&a, 2, o);
    step_make(&b, 2, n);
    char *c = causes_of(&a, &b);
    assert_string_equal(c, "COPY: heredoc-body changed");
    free(c);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
}

/* The source date epoch (docs/cachekey.md) is said with its values, on
 * every step it is in, whether it appears, changes or goes away. */
static void test_source_date_epoch(void **state)
{
    (void)state;
    const char *none[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                          "instruction", "RUN make", "argv", "/bin/sh", NULL};
    const char *e1[] = {"version", "1", "parent", P_NEW, "op", "RUN",
                        "instruction", "RUN make", "source-date-epoch",
                        "1700000000", "argv", "/bin/sh", NULL};
    const char *e2[] = {"version", "1", "parent", P_OLD, "op", "RUN",
                        "instruction", "RUN make", "source-date-epoch",
                        "1600000000", "argv", "/bin/sh", NULL};
    struct cairn_explain_step a, b, c;
    step_make(&a, 2, none);
    step_make(&b, 2, e1);
    step_make(&c, 2, e2);
    char *t = causes_of(&a, &b);
    assert_string_equal(t,
                        "RUN: source date epoch changed (unset -> 1700000000)");
    free(t);
    t = causes_of(&b, &a);
    assert_string_equal(t,
                        "RUN: source date epoch changed (1700000000 -> unset)");
    free(t);
    t = causes_of(&c, &b);
    assert_string_equal(
        t, "RUN: source date epoch changed (1600000000 -> 1700000000)");
    free(t);
    cairn_explain_step_clear(&a);
    cairn_explain_step_clear(&b);
    cairn_explain_step_clear(&c);
}

static void build_fixture(struct cairn_explain_build *eb)
{
    eb->nsteps = 3;
    eb->steps = calloc(3, sizeof *eb->steps);
    assert_non_null(eb->steps);
    const char *f[] = {"op", "FROM", "instruction", "FROM busybox", NULL};
    const char *r[] = {"op", "RUN", "instruction", "RUN make", NULL};
    step_make(&eb->steps[0], 1, f);
    step_make(&eb->steps[1], 2, COPY_OLD);
    step_make(&eb->steps[2], 3, r);
    assert_int_equal(cairn_strvec_push(&eb->steps[2].args, "V=1"), 0);
    const char *files[] = {"app/a", "f0644", "a", "app", "d0755", "", NULL};
    source_add(&eb->steps[1], "app/", true, files);
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    struct cairn_explain_build eb = {0}, back = {0};
    build_fixture(&eb);
    struct cairn_buf rec;
    cairn_buf_init(&rec, 0);
    assert_int_equal(cairn_explain_build_encode(&eb, true, &rec), 0);
    assert_int_equal(cairn_explain_build_decode(rec.data, rec.len, &back), 0);
    assert_int_equal(back.nsteps, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(back.steps[i].number, eb.steps[i].number);
        assert_string_equal(back.steps[i].key, eb.steps[i].key);
        assert_int_equal(back.steps[i].material.len, eb.steps[i].material.len);
        assert_memory_equal(back.steps[i].material.data,
                            eb.steps[i].material.data,
                            eb.steps[i].material.len);
    }
    assert_string_equal(back.steps[2].args.v[0], "V=1");
    const struct cairn_explain_source *s = &back.steps[1].sources[0];
    assert_true(s->listed);
    assert_int_equal(s->nfiles, 2);
    assert_string_equal(s->files[0].path, "app/a");
    assert_int_equal(s->files[0].mode, 0644);
    assert_true(s->files[0].has_digest);
    assert_memory_equal(s->files[0].digest, eb.steps[1].sources[0].files[0].digest,
                        CK_SHA256_LEN);
    assert_int_equal(s->files[1].type, 'd');
    assert_false(s->files[1].has_digest);

    /* Without listings: the source is kept, marked unlisted. */
    struct cairn_explain_build bare = {0};
    cairn_buf_reset(&rec);
    assert_int_equal(cairn_explain_build_encode(&eb, false, &rec), 0);
    assert_int_equal(cairn_explain_build_decode(rec.data, rec.len, &bare), 0);
    assert_false(bare.steps[1].sources[0].listed);
    assert_int_equal(bare.steps[1].sources[0].nfiles, 0);

    cairn_explain_build_clear(&bare);
    cairn_explain_build_clear(&back);
    cairn_explain_build_clear(&eb);
    cairn_buf_free(&rec);
}

static void test_record_corrupt(void **state)
{
    (void)state;
    struct cairn_explain_build eb = {0}, back = {0};
    build_fixture(&eb);
    struct cairn_buf rec;
    cairn_buf_init(&rec, 0);
    assert_int_equal(cairn_explain_build_encode(&eb, true, &rec), 0);
    /* Every truncation is refused, never read past its end (ASan). */
    for (size_t n = 0; n < rec.len; n++) {
        char *cut = malloc(n + 1);
        memcpy(cut, rec.data, n);
        assert_int_equal(cairn_explain_build_decode(cut, n, &back),
                         CAIRN_E_CORRUPT);
        free(cut);
    }
    /* Trailing bytes, a bad magic, a huge count. */
    assert_int_equal(cairn_buf_putc(&rec, 'x'), 0);
    assert_int_equal(cairn_explain_build_decode(rec.data, rec.len, &back),
                     CAIRN_E_CORRUPT);
    struct cairn_buf bad;
    cairn_buf_init(&bad, 0);
    assert_int_equal(ck_field_append_str(&bad, "cairn-lastbuild-9"), 0);
    assert_int_equal(ck_field_append_str(&bad, "0"), 0);
    assert_int_equal(cairn_explain_build_decode(bad.data, bad.len, &back),
                     CAIRN_E_CORRUPT);
    cairn_buf_reset(&bad);
    assert_int_equal(ck_field_append_str(&bad, "cairn-lastbuild-1"), 0);
    assert_int_equal(ck_field_append_str(&bad, "99999999999"), 0);
    assert_int_equal(cairn_explain_build_decode(bad.data, bad.len, &back),
                     CAIRN_E_CORRUPT);
    cairn_buf_free(&bad);
    cairn_buf_free(&rec);
    cairn_explain_build_clear(&eb);
}

static void test_match(void **state)
{
    (void)state;
    struct cairn_explain_build eb = {0};
    build_fixture(&eb);
    /* Same place, same kind. */
    struct cairn_explain_step s;
    const char *r[] = {"op", "RUN", "instruction", "RUN make all", NULL};
    step_make(&s, 3, r);
    assert_ptr_equal(cairn_explain_build_match(&eb, &s), &eb.steps[2]);
    cairn_explain_step_clear(&s);
    /* A step inserted before: same kind and text, one number later. */
    const char *r2[] = {"op", "RUN", "instruction", "RUN make", NULL};
    step_make(&s, 4, r2);
    assert_ptr_equal(cairn_explain_build_match(&eb, &s), &eb.steps[2]);
    cairn_explain_step_clear(&s);
    /* Another kind at the same place: compared with it. */
    const char *e[] = {"op", "ENV", "instruction", "ENV A=1", NULL};
    step_make(&s, 2, e);
    assert_ptr_equal(cairn_explain_build_match(&eb, &s), &eb.steps[1]);
    cairn_explain_step_clear(&s);
    /* Another stage: nothing. */
    step_make(&s, 2, e);
    s.stage = 1;
    assert_null(cairn_explain_build_match(&eb, &s));
    cairn_explain_step_clear(&s);
    cairn_explain_build_clear(&eb);
}

static void test_store_roundtrip(void **state)
{
    (void)state;
    char root[] = "/tmp/cairn-test-explain.XXXXXX";
    assert_non_null(mkdtemp(root));
    struct cairn_store *st = NULL;
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cairn_store_open(root, &st, &err), 0);
    struct cairn_explain_build eb = {0}, back = {0};
    assert_int_equal(cairn_explain_load(st, "app", &back, &err),
                     CAIRN_E_NOTFOUND);
    build_fixture(&eb);
    const char *tags[] = {"app", "other:v1"};
    assert_int_equal(cairn_explain_remember(st, tags, 2, &eb, &err), 0);
    /* "app" and "app:latest" are one tag. */
    assert_int_equal(cairn_explain_load(st, "app:latest", &back, &err), 0);
    assert_int_equal(back.nsteps, 3);
    cairn_explain_build_clear(&back);
    assert_int_equal(cairn_explain_load(st, "other:v1", &back, &err), 0);
    cairn_explain_build_clear(&back);
    assert_int_equal(cairn_explain_load(st, "other", &back, &err),
                     CAIRN_E_NOTFOUND);

    /* Over the cap: refused by the store. */
    size_t big = CAIRN_STORE_LASTBUILD_MAX + 1;
    char *data = calloc(1, big);
    assert_non_null(data);
    assert_int_equal(cairn_store_lastbuild_put(st, "app", data, big, &err),
                     CAIRN_E_TOOBIG);
    free(data);
    /* A corrupt record is as good as none. */
    assert_int_equal(cairn_store_lastbuild_put(st, "app", "junk", 4, &err), 0);
    assert_int_equal(cairn_explain_load(st, "app", &back, &err),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_lastbuild_remove(st, "app", &err), 0);
    assert_int_equal(cairn_store_lastbuild_remove(st, "app", &err), 0);

    cairn_explain_build_clear(&eb);
    cairn_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_gives_nothing),
        cmocka_unit_test(test_parent_only),
        cmocka_unit_test(test_build_arg_and_env),
        cmocka_unit_test(test_instruction_and_shell),
        cmocka_unit_test(test_from_digest),
        cmocka_unit_test(test_copy_files),
        cmocka_unit_test(test_copy_unlisted),
        cmocka_unit_test(test_copy_many_files_capped),
        cmocka_unit_test(test_values_escaped),
        cmocka_unit_test(test_other_label_named),
        cmocka_unit_test(test_source_date_epoch),
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_corrupt),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_store_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
