/* Key derivation v1: golden vectors (any change of keys must be a
 * deliberate version bump) and the properties docs/cachekey.md promises.
 *
 * The fixture contexts are written by the test with explicit modes, so the
 * vectors do not depend on the checkout's umask. To print the current keys
 * (when deliberately bumping the version): CAIRN_GOLDEN_PRINT=1 test_key */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachekey/context.h"
#include "cachekey/dockerfile.h"
#include "cachekey/dockerignore.h"
#include "cachekey/key.h"
#include "cachekey/plan.h"

struct file {
    const char *path; /* ends in '/' for a directory */
    const char *content; /* symlink target for mode 0 */
    unsigned mode;       /* 0: symlink */
};

static void write_tree(const char *root, const struct file *files, size_t n)
{
    char p[4096];
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i].path);
        size_t len = strlen(p);
        if (p[len - 1] == '/') {
            p[len - 1] = '\0';
            assert_int_equal(mkdir(p, 0755), 0);
            assert_int_equal(chmod(p, files[i].mode), 0);
        } else if (files[i].mode == 0) {
            assert_int_equal(symlink(files[i].content, p), 0);
        } else {
            int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            assert_true(fd >= 0);
            size_t cl = strlen(files[i].content);
            assert_int_equal(write(fd, files[i].content, cl), (ssize_t)cl);
            close(fd);
            assert_int_equal(chmod(p, files[i].mode), 0);
        }
    }
}

static void rm_tree(const char *root)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

struct result {
    struct ck_dockerfile *df;
    struct ck_plan *plan;
    struct ck_keys *keys;
    struct cairn_err err;
};

static int compute_opts(const char *root, const char *dockerfile,
                        const struct ck_plan_opts *po, struct result *r)
{
    memset(r, 0, sizeof *r);
    struct ck_ignore *ig = NULL;
    struct ck_context *ctx = NULL;
    int rc = ck_dockerfile_parse("Dockerfile", dockerfile, strlen(dockerfile),
                                 &r->df, &r->err);
    if (!rc)
        rc = ck_ignore_load(root, NULL, &ig, &r->err);
    struct ck_context_opts co = {.ignore = ig, .threads = 2};
    if (!rc)
        rc = ck_context_open(root, &co, &ctx, &r->err);
    if (!rc)
        rc = ck_plan_build(r->df, po, &r->plan, &r->err);
    if (!rc)
        rc = ck_keys_compute(r->plan, ctx, &r->keys, &r->err);
    ck_context_close(ctx);
    ck_ignore_free(ig);
    return rc;
}

static int compute(const char *root, const char *dockerfile,
                   const char *const *args, size_t nargs, struct result *r)
{
    struct ck_plan_opts po = {.build_args = args, .nbuild_args = nargs,
                              .allow_unresolved = true};
    return compute_opts(root, dockerfile, &po, r);
}

static void release(struct result *r)
{
    ck_keys_free(r->keys);
    ck_plan_free(r->plan);
    ck_dockerfile_free(r->df);
}

static char *make_root(void)
{
    char *t = strdup("/tmp/cairn-key.XXXXXX");
    assert_non_null(mkdtemp(t));
    return t;
}

/* ---- golden vectors ----------------------------------------------------- */

static const struct file golden_files[] = {
    {"app/", NULL, 0755},
    {"app/main.c", "int main(void) { return 0; }\n", 0644},
    {"app/run.sh", "#!/bin/sh\nexec ./main\n", 0755},
    {"app/lib/", NULL, 0750},
    {"app/lib/util.h", "#define UTIL 1\n", 0600},
    {"app/current", "main.c", 0},
    {"app/debug.log", "ignored\n", 0644},
    {"config.json", "{\"port\": 8080}\n", 0644},
    {".dockerignore", "**/*.log\n!keep.log\n", 0644},
};

static const char golden_dockerfile[] =
    "# syntax=docker/dockerfile:1\n"
    "ARG BASE=scratch\n"
    "FROM ${BASE} AS build\n"
    "ARG VERSION=1.0\n"
    "ENV APP=/app PATH=/app/bin:$PATH\n"
    "WORKDIR $APP\n"
    "COPY app/ src/\n"
    "COPY --chmod=0640 --chown=1000:1000 config.json /etc/app/\n"
    "RUN cc -o bin/app src/main.c && \\\n"
    "    echo $VERSION > VERSION\n"
    "RUN <<EOF\n"
    "set -e\n"
    "echo built\n"
    "EOF\n"
    "LABEL org.opencontainers.image.version=$VERSION\n"
    "\n"
    "FROM scratch\n"
    "COPY --from=build /app/bin/app /usr/local/bin/app\n"
    "COPY <<EOF /etc/motd\n"
    "hello\n"
    "EOF\n"
    "EXPOSE 8080/tcp\n"
    "USER 1000\n"
    "ENTRYPOINT [\"/usr/local/bin/app\"]\n";

/* Pinned keys of golden_dockerfile over golden_files, one per step. */
static const char *const golden_keys[] = {
    "44894f499827550866a370d3ce9c54bf8c567afa6928b31431adb796ac69562c",
    /* FROM scratch AS build */
    "8f89010400675013a8e85277ae597997083fd4a56c45cdb8ebc354ede47d1369",
    /* ARG VERSION=1.0 */
    "9033795262b5d1a2bdf6a0dca6d0a715694c309c94a929bdb4678120463d5c62",
    /* ENV APP=/app PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/u */
    "a40e2183b56c23116da2efd9aca49a251b87c0170574006e1e743098d3ec9d42",
    /* WORKDIR /app */
    "b8909fd6401d6c83d462b40c482f568af4df193d5623593b84ee02894bc6f2c4",
    /* COPY app/ src/ */
    "99f8598b9f8d1dfa896557e82c9dc2bd100700591e57957978af843cae9724b3",
    /* COPY --chmod=0640 --chown=1000:1000 config.json /etc/app/ */
    "d3d8a6f0ac64e50acf7ff804cc31410a2a9acf787b68d460c77f311fdcd772ff",
    /* RUN cc -o bin/app src/main.c &&     echo $VERSION > VERSION */
    "d351b844a69251f0ff97a147156de3d749a3f28d374c1207bab45abf19fe85cc",
    /* RUN <<EOF */
    "6b99f52b037ed5f19d6e9fef955694ef0f7c0d444dbac3c75a6c3229579b6067",
    /* LABEL org.opencontainers.image.version=1.0 */
    "7e490f0e91802fe3e22bd3f367f7fba588b32bdbd222f8de70bb1138964ab1c1",
    /* FROM scratch */
    "1ac05e0d8434c73f7c2cf2e0e4ab05152b15a70f31314d3e085ee8643dfef478",
    /* COPY --from=build /app/bin/app /usr/local/bin/app */
    "b453f30d843cf5520ff7c7dd07dd96ad72667075494e2b3e2a734c05eb8ee59b",
    /* COPY <<EOF /etc/motd */
    "79353ff51bed4780045c40a66d4e0ec7ae71aad2f8ce76968cbd195bfc6c16b7",
    /* EXPOSE 8080/tcp */
    "0490f7383947448508c68e6ad6d5208acaed9eb15be96d8447cedd510b22624a",
    /* USER 1000 */
    "bb097a07f081b11d0765e9bc2a8105015744041c17a08eef7ff1f45820bfba5e",
    /* ENTRYPOINT ["/usr/local/bin/app"] */
};

static void test_golden_vectors(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files, sizeof golden_files / sizeof golden_files[0]);
    struct result r;
    assert_int_equal(compute(root, golden_dockerfile, NULL, 0, &r), 0);
    size_t ngolden = sizeof golden_keys / sizeof golden_keys[0];
    if (getenv("CAIRN_GOLDEN_PRINT")) {
        for (size_t i = 0; i < r.keys->n; i++)
            printf("    \"%s\", /* %s */\n", r.keys->keys[i].hex,
                   r.plan->steps[i].text);
    }
    assert_int_equal(r.keys->n, ngolden);
    for (size_t i = 0; i < ngolden; i++) {
        assert_true(r.keys->keys[i].computed);
        assert_string_equal(r.keys->keys[i].hex, golden_keys[i]);
    }
    release(&r);
    rm_tree(root);
    free(root);
}

/* ---- properties --------------------------------------------------------- */

static const char prop_dockerfile[] = "FROM scratch\n"
                                      "ARG UNUSED=a\n"
                                      "ARG USED=b\n"
                                      "COPY app/ /app/\n"
                                      "RUN echo $USED\n"
                                      "COPY config.json /\n";

static void keys_of(const char *root, const char *const *args, size_t n,
                    char out[][CK_SHA256_HEX_LEN + 1], size_t max)
{
    struct result r;
    assert_int_equal(compute(root, prop_dockerfile, args, n, &r), 0);
    assert_int_equal(r.keys->n, max);
    for (size_t i = 0; i < max; i++)
        memcpy(out[i], r.keys->keys[i].hex, CK_SHA256_HEX_LEN + 1);
    release(&r);
}

static void test_inputs_change_exactly_their_steps(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files, sizeof golden_files / sizeof golden_files[0]);
    char base[6][CK_SHA256_HEX_LEN + 1], other[6][CK_SHA256_HEX_LEN + 1];
    keys_of(root, NULL, 0, base, 6);

    /* A build arg no ARG declares changes nothing. */
    const char *undeclared[] = {"NOTDECLARED=zzz"};
    keys_of(root, undeclared, 1, other, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(base[i], other[i]);

    /* A declared one is in RUN's environment (as in Docker): the steps
     * before the first RUN keep their keys. */
    const char *unused[] = {"UNUSED=zzz"};
    keys_of(root, unused, 1, other, 6);
    for (int i = 0; i < 4; i++)
        assert_string_equal(base[i], other[i]);
    assert_string_not_equal(base[4], other[4]);

    /* A build arg RUN sees changes RUN and what follows only. */
    const char *used[] = {"USED=c"};
    keys_of(root, used, 1, other, 6);
    for (int i = 0; i < 4; i++)
        assert_string_equal(base[i], other[i]);
    assert_string_not_equal(base[4], other[4]);
    assert_string_not_equal(base[5], other[5]);

    /* A mode change of a COPY source changes that COPY and later. */
    char p[4096];
    snprintf(p, sizeof p, "%s/app/main.c", root);
    assert_int_equal(chmod(p, 0600), 0);
    keys_of(root, NULL, 0, other, 6);
    for (int i = 0; i < 3; i++)
        assert_string_equal(base[i], other[i]);
    for (int i = 3; i < 6; i++)
        assert_string_not_equal(base[i], other[i]);
    assert_int_equal(chmod(p, 0644), 0);

    /* A symlink target change too. */
    snprintf(p, sizeof p, "%s/app/current", root);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("run.sh", p), 0);
    keys_of(root, NULL, 0, other, 6);
    assert_string_equal(base[2], other[2]);
    assert_string_not_equal(base[3], other[3]);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("main.c", p), 0);

    /* An ignored file does not count; back to the original keys. */
    snprintf(p, sizeof p, "%s/app/debug.log", root);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("other content\n", f);
    fclose(f);
    keys_of(root, NULL, 0, other, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(base[i], other[i]);

    /* Editing the last COPY's source changes only the last key. */
    snprintf(p, sizeof p, "%s/config.json", root);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("{}\n", f);
    fclose(f);
    keys_of(root, NULL, 0, other, 6);
    for (int i = 0; i < 5; i++)
        assert_string_equal(base[i], other[i]);
    assert_string_not_equal(base[5], other[5]);

    rm_tree(root);
    free(root);
}

static void test_material_layout(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files, sizeof golden_files / sizeof golden_files[0]);
    struct result r;
    assert_int_equal(compute(root, prop_dockerfile, NULL, 0, &r), 0);
    const struct ck_step_key *k = &r.keys->keys[4]; /* RUN */
    size_t pos = 0;
    const char *l, *v;
    size_t ln, vn;
    const char *want[] = {"version", "parent", "op", "instruction", "form"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(ck_material_next(k->material.data, k->material.len,
                                          &pos, &l, &ln, &v, &vn), 1);
        assert_int_equal(ln, strlen(want[i]));
        assert_memory_equal(l, want[i], ln);
        if (i == 1) /* the parent is the previous step's key */
            assert_memory_equal(v, r.keys->keys[3].hex, CK_SHA256_HEX_LEN);
        if (i == 2)
            assert_memory_equal(v, "RUN", 3);
    }
    bool saw_env = false;
    int more;
    while ((more = ck_material_next(k->material.data, k->material.len, &pos,
                                    &l, &ln, &v, &vn)) == 1)
        if (ln == 3 && memcmp(l, "env", 3) == 0 && vn == 6 &&
            memcmp(v, "USED=b", 6) == 0)
            saw_env = true;
    assert_int_equal(more, 0);
    assert_true(saw_env);
    assert_true(r.keys->keys[4].layer);
    assert_false(r.keys->keys[1].layer);
    /* The key is the sha256 of the material. */
    uint8_t d[CK_SHA256_LEN];
    assert_int_equal(ck_sha256(k->material.data, k->material.len, d), 0);
    assert_memory_equal(d, k->key, CK_SHA256_LEN);
    /* A truncated material is reported, not overrun. */
    pos = 0;
    size_t cut = 12;
    while ((more = ck_material_next(k->material.data, cut, &pos, &l, &ln, &v,
                                    &vn)) == 1)
        ;
    assert_int_equal(more, CAIRN_E_CORRUPT);
    release(&r);
    rm_tree(root);
    free(root);
}

/* Keys of prop_dockerfile with a source date epoch (epoch < 0: none). */
static void keys_epoch(const char *root, int64_t epoch,
                       char out[][CK_SHA256_HEX_LEN + 1], size_t max)
{
    struct ck_plan_opts po = {.allow_unresolved = true,
                              .has_source_date_epoch = epoch >= 0,
                              .source_date_epoch = epoch};
    struct result r;
    assert_int_equal(compute_opts(root, prop_dockerfile, &po, &r), 0);
    assert_int_equal(r.keys->n, max);
    for (size_t i = 0; i < max; i++)
        memcpy(out[i], r.keys->keys[i].hex, CK_SHA256_HEX_LEN + 1);
    release(&r);
}

/* Pinned keys of prop_dockerfile over golden_files with epoch 1700000000:
 * the source-date-epoch field of docs/cachekey.md. */
static const char *const epoch_keys[] = {
    "8b32159f474d809c9e421fd89918ed07addc84566b8b5911974a3e25db3cae75",
    /* FROM scratch */
    "d3e06a566b357fc17763f21a34ec7e6f253473cde14a83c15f7df18c1cce0d38",
    /* ARG UNUSED=a */
    "cf04bbd1c84ce25cb9e1a3abf283918e6dc6205cf674fa2fa7e777392731ba58",
    /* ARG USED=b */
    "b21225925d442ec6c62f31fdbff373ec5a8e2e49a584cfc33a3fde2acf85a848",
    /* COPY app/ /app/ */
    "02eb970fb8737dd09be7769fa7ec1a15ede314c2bcb82466889e7f5281d0a79d",
    /* RUN echo $USED */
    "931627e415488688c68fa1f16bb197f705437f4500f04afe8ed46a6dce9ae19b",
    /* COPY config.json / */
};

/* The epoch clamps a layer's file times: a build with one never shares a
 * key with a build without one or with another epoch, and a build
 * without one keeps the keys it always had (the golden vectors). */
static void test_source_date_epoch(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files, sizeof golden_files / sizeof golden_files[0]);
    char none[6][CK_SHA256_HEX_LEN + 1], a[6][CK_SHA256_HEX_LEN + 1],
        b[6][CK_SHA256_HEX_LEN + 1];
    keys_epoch(root, -1, none, 6);
    keys_of(root, NULL, 0, a, 6);
    for (int i = 0; i < 6; i++) /* no epoch: the material is as before */
        assert_string_equal(none[i], a[i]);

    keys_epoch(root, 1700000000, a, 6);
    if (getenv("CAIRN_GOLDEN_PRINT"))
        for (int i = 0; i < 6; i++)
            printf("    \"%s\",\n", a[i]);
    for (int i = 0; i < 6; i++) {
        assert_string_not_equal(none[i], a[i]);
        assert_string_equal(a[i], epoch_keys[i]);
    }
    keys_epoch(root, 1700000000, b, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(a[i], b[i]);
    keys_epoch(root, 1700000001, b, 6);
    for (int i = 0; i < 6; i++)
        assert_string_not_equal(a[i], b[i]);
    /* 0 is an epoch, not "none". */
    keys_epoch(root, 0, b, 6);
    for (int i = 0; i < 6; i++)
        assert_string_not_equal(none[i], b[i]);

    /* The field follows the instruction, in decimal. */
    struct ck_plan_opts po = {.allow_unresolved = true,
                              .has_source_date_epoch = true,
                              .source_date_epoch = 1700000000};
    struct result r;
    assert_int_equal(compute_opts(root, prop_dockerfile, &po, &r), 0);
    const struct ck_step_key *k = &r.keys->keys[4]; /* RUN */
    size_t pos = 0;
    const char *l = NULL, *v = NULL;
    size_t ln = 0, vn = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(ck_material_next(k->material.data, k->material.len,
                                          &pos, &l, &ln, &v, &vn), 1);
    assert_int_equal(ln, strlen("source-date-epoch"));
    assert_memory_equal(l, "source-date-epoch", ln);
    assert_int_equal(vn, 10);
    assert_memory_equal(v, "1700000000", 10);
    release(&r);

    /* A negative epoch is refused, not keyed. */
    po.source_date_epoch = -5;
    assert_int_equal(compute_opts(root, prop_dockerfile, &po, &r),
                     CAIRN_E_INVAL);
    assert_non_null(strstr(r.err.msg, "epoch"));
    release(&r);
    rm_tree(root);
    free(root);
}

static void test_unresolved_and_missing_source(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files, sizeof golden_files / sizeof golden_files[0]);
    struct result r;
    const char *df = "FROM debian:12 AS a\nRUN true\nFROM scratch\n"
                     "COPY app /\nCOPY --from=a / /\n";
    assert_int_equal(compute(root, df, NULL, 0, &r), 0);
    assert_true(r.keys->keys[0].unresolved);
    assert_true(r.keys->keys[1].unresolved);
    assert_false(r.keys->keys[2].unresolved);
    assert_false(r.keys->keys[3].unresolved);
    /* Copying from an unresolved stage makes the copy unresolved too. */
    assert_true(r.keys->keys[4].unresolved);
    release(&r);

    assert_int_equal(compute(root, "FROM scratch\nCOPY nothere /\n", NULL, 0, &r),
                     CAIRN_E_NOTFOUND);
    assert_non_null(strstr(r.err.msg, "Dockerfile:2"));
    release(&r);
    assert_int_equal(compute(root, "FROM scratch\nCOPY ../etc/passwd /\n", NULL,
                             0, &r),
                     CAIRN_E_OUTSIDE);
    release(&r);
    rm_tree(root);
    free(root);
}

/* ---- RUN --mount and COPY --exclude ------------------------------------ */

/* Pinned with the bind mount fields (docs/cachekey.md, RUN): a bind
 * mount's key covers the tree digest of what it mounts. Steps without a
 * bind mount kept their v1 keys (golden_keys above are unchanged), so
 * this was added without a version bump: the only keys that changed are
 * those of RUN steps with a bind mount, whose cached results were made
 * while cairn ignored --mount and are wrong anyway. */
static const char mount_dockerfile[] =
    "FROM scratch\n"
    "COPY --exclude=**/*.sh app /app/\n"
    "RUN --mount=source=app,target=/src make -C /src\n"
    "RUN --mount=type=cache,target=/root/.cache true\n";

static const char
    *const
        mount_keys[] =
            {
                "7e490f0e91802fe3e22bd3f367f7fba588b32bdbd222f8de70bb1138964ab1"
                "c1", /* FROM scratch */
                "5cde17967f6c520bf1cb8bf1c5380832d599c62e28c44d05534755bd9a2c49"
                "21", /* COPY --exclude (all .sh files) app /app/ */
                "a8eba1e0f9676185eb0042a2a0b523fa72834b2911dde1abd1526bb7fd60ea"
                "be", /* RUN --mount=source=app,target=/src make -C /src */
                "f647da74925b090217aa5cc4767c614066350b958da12681ff2071cda0d7ff"
                "12", /* RUN --mount=type=cache,target=/root/.cache true */
};

static void mount_keys_of(const char *root, char out[][CK_SHA256_HEX_LEN + 1])
{
    struct result r;
    assert_int_equal(compute(root, mount_dockerfile, NULL, 0, &r), 0);
    assert_int_equal(r.keys->n, 4);
    for (size_t i = 0; i < 4; i++)
        memcpy(out[i], r.keys->keys[i].hex, CK_SHA256_HEX_LEN + 1);
    if (getenv("CAIRN_GOLDEN_PRINT"))
        for (size_t i = 0; i < 4; i++)
            printf("    \"%s\", /* %s */\n", out[i], r.plan->steps[i].text);
    release(&r);
}

static void rewrite(const char *root, const char *rel, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_mount_and_exclude_keys(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files,
               sizeof golden_files / sizeof golden_files[0]);
    char base[4][CK_SHA256_HEX_LEN + 1], other[4][CK_SHA256_HEX_LEN + 1];
    mount_keys_of(root, base);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(base[i], mount_keys[i]);

    /* A file outside the COPY source and the bind mount changes nothing. */
    rewrite(root, "config.json", "{}\n");
    mount_keys_of(root, other);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(base[i], other[i]);

    /* A file the COPY excludes keeps the COPY's key; the bind mount shows
     * it, so the mount's RUN (and what follows) changes. The cache
     * mount's content is never an input: it changes only through its
     * parent. */
    rewrite(root, "app/run.sh", "#!/bin/sh\nexit 1\n");
    mount_keys_of(root, other);
    assert_string_equal(base[1], other[1]);
    assert_string_not_equal(base[2], other[2]);
    assert_string_not_equal(base[3], other[3]);

    /* A file the COPY includes changes it. */
    rewrite(root, "app/run.sh", "#!/bin/sh\nexec ./main\n");
    rewrite(root, "app/main.c", "int main(void) { return 1; }\n");
    mount_keys_of(root, other);
    assert_string_not_equal(base[1], other[1]);

    /* Back to the original content: back to the original keys. */
    rewrite(root, "app/main.c", "int main(void) { return 0; }\n");
    mount_keys_of(root, other);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(base[i], other[i]);

    rm_tree(root);
    free(root);
}

static void test_mount_from_stage_key(void **state)
{
    (void)state;
    char *root = make_root();
    write_tree(root, golden_files,
               sizeof golden_files / sizeof golden_files[0]);
    struct result r;
    const char *df =
        "FROM scratch AS a\nCOPY config.json /\n"
        "FROM scratch AS unused\nRUN false\n"
        "FROM scratch\nRUN --mount=from=a,target=/a cat /a/config.json\n";
    assert_int_equal(compute(root, df, NULL, 0, &r), 0);
    /* The mounted stage is needed (built and keyed), the other is not. */
    assert_true(r.plan->stages[0].needed);
    assert_false(r.plan->stages[1].needed);
    const struct ck_step_key *k = &r.keys->keys[5];
    size_t pos = 0;
    const char *l, *v;
    size_t ln, vn;
    bool saw = false;
    while (ck_material_next(k->material.data, k->material.len, &pos, &l, &ln,
                            &v, &vn) == 1)
        if (ln == 14 && memcmp(l, "mount-from-key", 14) == 0) {
            assert_memory_equal(v, r.keys->keys[1].hex, CK_SHA256_HEX_LEN);
            saw = true;
        }
    assert_true(saw);
    release(&r);
    rm_tree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_vectors),
        cmocka_unit_test(test_inputs_change_exactly_their_steps),
        cmocka_unit_test(test_material_layout),
        cmocka_unit_test(test_source_date_epoch),
        cmocka_unit_test(test_unresolved_and_missing_source),
        cmocka_unit_test(test_mount_and_exclude_keys),
        cmocka_unit_test(test_mount_from_stage_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
