/* Plan: ARG/ENV scoping, expansion per instruction, stages, --target,
 * ONBUILD triggers, and the errors a Docker user would get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachekey/dockerfile.h"
#include "cachekey/plan.h"
#include "common/error.h"

struct fixture {
    struct ck_dockerfile *df;
    struct ck_plan *plan;
    struct cairn_err err;
};

static int build(struct fixture *f, const char *text, const char *const *args,
                 size_t nargs, const char *target, ck_image_resolve_fn res)
{
    memset(f, 0, sizeof *f);
    int rc = ck_dockerfile_parse("Dockerfile", text, strlen(text), &f->df,
                                 &f->err);
    if (rc)
        return rc;
    struct ck_plan_opts o = {
        .build_args = args,
        .nbuild_args = nargs,
        .target = target,
        .resolve = res,
        .allow_unresolved = true,
    };
    return ck_plan_build(f->df, &o, &f->plan, &f->err);
}

static void done(struct fixture *f)
{
    ck_plan_free(f->plan);
    ck_dockerfile_free(f->df);
}

static const char *env_of(const struct ck_step *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->nenv; i++)
        if (strncmp(s->env[i], name, n) == 0 && s->env[i][n] == '=')
            return s->env[i] + n + 1;
    return NULL;
}

/* Bytes the heap holds now: ASan's own count in sanitizer builds (its
 * allocator replaces malloc's, and mallinfo2 then says nothing), glibc's
 * otherwise. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

/* The text of FROM scratch, n distinct ENV lines of vlen-byte values and,
 * after every ENV when run_each (else once at the end), a RUN. */
static char *env_dockerfile(size_t n, size_t vlen, bool run_each)
{
    size_t cap = 64 + n * (vlen + 48);
    char *t = malloc(cap);
    assert_non_null(t);
    size_t len = (size_t)snprintf(t, cap, "FROM scratch\n");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(t + len, cap - len, "ENV V%zu=", i);
        memset(t + len, 'v', vlen);
        len += vlen;
        len += (size_t)snprintf(t + len, cap - len, "\n%s",
                                run_each ? "RUN true\n" : "");
    }
    snprintf(t + len, cap - len, "RUN env\n");
    return t;
}

/* N distinct ENV lines cost O(N): the plan of 8,000 (some 150 KB of
 * Dockerfile) holds a few MB. When every step kept a copy of the whole
 * environment it held N^2/2 strings, some 1.5 GB here: the bound below
 * fails by orders of magnitude, whatever the machine's load. */
static void test_env_many_is_linear(void **state)
{
    (void)state;
    enum { N = 8000 };
    char *text = env_dockerfile(N, 8, false);
    struct fixture f;
    size_t before = heap_in_use();
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    size_t held = heap_in_use() - before;
    assert_true(held < (size_t)32 << 20);
    assert_true(f.plan->state_bytes < (size_t)N * 64);
    const struct ck_step *run = &f.plan->steps[f.plan->nsteps - 1];
    assert_int_equal(run->nenv, N + 1); /* and PATH */
    assert_string_equal(env_of(run, "V7999"), "vvvvvvvv");
    assert_int_equal(f.plan->steps[N / 2].nenv, 0); /* an ENV step */
    done(&f);
    free(text);
}

/* A RUN after each ENV does keep N environments (its key needs all of
 * it): that product is capped, with an error naming the line. */
static void test_env_state_is_capped(void **state)
{
    (void)state;
    char *text = env_dockerfile(2000, 100, true);
    struct fixture f;
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), CAIRN_E_TOOBIG);
    assert_non_null(strstr(f.err.msg, "Dockerfile:"));
    assert_non_null(strstr(f.err.msg, "too many variables"));
    done(&f);
    free(text);
}

static void test_arg_scoping(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "ARG TAG=3.19\n"
                       "ARG BASE=scratch\n"
                       "FROM ${BASE}\n"
                       "RUN echo $TAG\n"
                       "ARG TAG\n"
                       "RUN echo $TAG\n"
                       "ARG LOCAL=x-${TAG}\n"
                       "COPY ${LOCAL} /dst/${TAG}\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_plan *p = f.plan;
    assert_int_equal(p->nstages, 1);
    assert_int_equal(p->stages[0].base_kind, CK_BASE_SCRATCH);
    assert_int_equal(p->nsteps, 6);
    /* Before redeclaration the global ARG is not in scope. */
    assert_null(env_of(&p->steps[1], "TAG"));
    assert_string_equal(env_of(&p->steps[3], "TAG"), "3.19");
    assert_string_equal(p->steps[5].text, "COPY x-3.19 /dst/3.19");
    /* RUN is not expanded: the shell does it. */
    assert_string_equal(p->steps[3].text, "RUN echo $TAG");
    done(&f);

    const char *over[] = {"TAG=edge", "UNUSED=1", "HTTP_PROXY=http://p:3128"};
    assert_int_equal(build(&f, text, over, 3, NULL, NULL), 0);
    assert_string_equal(env_of(&f.plan->steps[3], "TAG"), "edge");
    assert_string_equal(f.plan->steps[5].text, "COPY x-edge /dst/edge");
    /* Proxy args are never part of the environment that is keyed. */
    assert_null(env_of(&f.plan->steps[3], "HTTP_PROXY"));
    assert_int_equal(f.plan->nunused_build_args, 1);
    assert_string_equal(f.plan->unused_build_args[0], "UNUSED");
    done(&f);
}

static void test_env_wins_over_arg_and_path_default(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "FROM scratch\n"
                       "ARG V=fromarg\n"
                       "ENV V=fromenv W=\"two words\" X=${V}\n"
                       "RUN env\n"
                       "LABEL a=$V b=\"$W\"\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_step *run = &f.plan->steps[3];
    assert_string_equal(env_of(run, "V"), "fromenv");
    assert_string_equal(env_of(run, "W"), "two words");
    assert_string_equal(env_of(run, "X"), "fromarg");
    assert_string_equal(env_of(run, "PATH"), CK_DEFAULT_PATH);
    /* Sorted by name. */
    for (size_t i = 1; i < run->nenv; i++)
        assert_true(strcmp(run->env[i - 1], run->env[i]) < 0);
    assert_string_equal(f.plan->steps[4].text, "LABEL a=fromenv b=\"two words\"");
    assert_string_equal(f.plan->steps[2].text,
                        "ENV V=fromenv W=\"two words\" X=fromarg");
    done(&f);
}

static void test_workdir_user_shell(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "FROM scratch\n"
                       "ENV D=/srv\n"
                       "WORKDIR $D\n"
                       "WORKDIR app/../web/./x\n"
                       "USER ${D}user\n"
                       "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n"
                       "RUN true\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_step *run = &f.plan->steps[6];
    assert_string_equal(run->workdir, "/srv/web/x");
    assert_string_equal(run->user, "/srvuser");
    assert_int_equal(run->nshell, 4);
    assert_string_equal(run->shell[0], "/bin/bash");
    assert_string_equal(run->shell[3], "-c");
    assert_string_equal(f.plan->steps[0].shell[0], "/bin/sh");
    assert_string_equal(run->network, "default");
    done(&f);
}

static void test_stages_and_target(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "FROM scratch AS Base\n"
                       "ENV A=1\n"
                       "FROM base AS build\n"
                       "RUN echo $A\n"
                       "FROM scratch AS unrelated\n"
                       "RUN true\n"
                       "FROM scratch\n"
                       "COPY --from=build /a /a\n"
                       "COPY --from=0 /b /b\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_plan *p = f.plan;
    assert_int_equal(p->nstages, 4);
    assert_string_equal(p->stages[0].name, "base");
    assert_int_equal(p->stages[1].base_kind, CK_BASE_STAGE);
    assert_int_equal(p->stages[1].base_stage, 0);
    /* The base stage's ENV carries over. */
    assert_string_equal(env_of(&p->steps[3], "A"), "1");
    assert_int_equal(p->target, 3);
    assert_true(p->stages[0].needed && p->stages[1].needed &&
                p->stages[3].needed);
    assert_false(p->stages[2].needed);
    assert_int_equal(p->steps[7].from_kind, CK_FROM_STAGE);
    assert_int_equal(p->steps[7].from_stage, 1);
    assert_int_equal(p->steps[8].from_stage, 0);
    assert_int_equal(p->steps[5].number, 0); /* unrelated: not built */
    assert_int_equal(p->steps[8].number, 7);
    done(&f);

    assert_int_equal(build(&f, text, NULL, 0, "BUILD", NULL), 0);
    assert_int_equal(f.plan->target, 1);
    assert_false(f.plan->stages[3].needed);
    done(&f);

    assert_int_equal(build(&f, text, NULL, 0, "nope", NULL), CAIRN_E_NOTFOUND);
    assert_string_equal(f.err.msg, "target stage \"nope\" could not be found");
    done(&f);
}

static void test_copy_from_image(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "FROM scratch\nARG IMG=busybox:1.36\n"
                       "COPY --from=${IMG} --chown=${IMG}:0 /bin/sh /sh\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_step *s = &f.plan->steps[2];
    assert_int_equal(s->from_kind, CK_FROM_IMAGE);
    assert_string_equal(s->from_ref, "busybox:1.36");
    assert_true(s->from_unresolved);
    assert_string_equal(s->chown, "busybox:1.36:0");
    assert_string_equal(s->text,
                        "COPY --from=busybox:1.36 --chown=busybox:1.36:0 /bin/sh /sh");
    done(&f);
}

static int fake_resolve(void *arg, const char *ref, const char *platform,
                        struct ck_image_info *out, struct cairn_err *err)
{
    (void)arg;
    (void)platform;
    if (strcmp(ref, "base:1") != 0)
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "no %s", ref);
    out->digest = strdup("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    out->env = calloc(2, sizeof(char *));
    out->env[0] = strdup("IMGVAR=yes");
    out->nenv = 1;
    out->workdir = strdup("/opt");
    out->user = strdup("nobody");
    out->onbuild = calloc(2, sizeof(char *));
    out->onbuild[0] = strdup("RUN echo triggered in $IMGVAR");
    out->nonbuild = 1;
    return 0;
}

static void test_base_image_and_onbuild(void **state)
{
    (void)state;
    struct fixture f;
    const char *text = "FROM base:1\nRUN pwd\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, fake_resolve), 0);
    const struct ck_plan *p = f.plan;
    assert_false(p->stages[0].base_unresolved);
    assert_int_equal(p->nsteps, 3);
    assert_true(p->steps[1].from_onbuild);
    assert_string_equal(p->steps[1].text, "RUN echo triggered in $IMGVAR");
    assert_string_equal(p->steps[2].workdir, "/opt");
    assert_string_equal(p->steps[2].user, "nobody");
    assert_string_equal(env_of(&p->steps[2], "IMGVAR"), "yes");
    done(&f);

    /* A build (allow_unresolved false) refuses an unknown image. */
    memset(&f, 0, sizeof f);
    assert_int_equal(ck_dockerfile_parse("Dockerfile", "FROM nope:1\n", 12,
                                         &f.df, &f.err), 0);
    struct ck_plan_opts o = {.resolve = fake_resolve};
    assert_int_equal(ck_plan_build(f.df, &o, &f.plan, &f.err), CAIRN_E_NOTFOUND);
    assert_non_null(strstr(f.err.msg, "Dockerfile:1"));
    done(&f);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int code;
        const char *msg;
    } cases[] = {
        {"RUN true\nFROM scratch\n", CAIRN_E_PARSE,
         "Dockerfile:1: no build stage in current context"},
        {"ARG A\n", CAIRN_E_PARSE, "Dockerfile: the Dockerfile has no FROM instruction"},
        {"FROM scratch AS 1abc\n", CAIRN_E_PARSE,
         "Dockerfile:1: invalid name for build stage: \"1abc\", name can't start "
         "with a number or contain symbols"},
        {"FROM scratch AS a\nFROM scratch AS A\n", CAIRN_E_PARSE,
         "Dockerfile:2: duplicate stage name \"a\""},
        {"FROM scratch AS a\nCOPY --from=a /x /y\n", CAIRN_E_PARSE,
         "Dockerfile:2: invalid from flag value a: a stage can only copy from "
         "an earlier stage"},
        {"FROM scratch\nCOPY --from=later /x /y\nFROM scratch AS later\n",
         CAIRN_E_PARSE,
         "Dockerfile:2: invalid from flag value later: stage \"later\" is "
         "defined after its use"},
        {"FROM scratch\nENV A=${B:?must be set}\n", CAIRN_E_PARSE, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture f;
        int rc = build(&f, cases[i].text, NULL, 0, NULL, NULL);
        assert_int_equal(rc, cases[i].code);
        if (cases[i].msg)
            assert_string_equal(f.err.msg, cases[i].msg);
        else
            assert_non_null(strstr(f.err.msg, "Dockerfile:2:"));
        done(&f);
    }
}

static void test_run_mounts(void **state)
{
    (void)state;
    struct fixture f;
    const char *text =
        "FROM scratch AS a\n"
        "FROM scratch AS skipped\n"
        "FROM scratch\n"
        "ARG CACHE=/var/cache\n"
        "WORKDIR /w\n"
        "RUN --mount=type=cache,target=$CACHE/apt "
        "--mount=target=rel/./dir/ --mount=from=a,target=/a "
        "--mount=type=secret,id=tok "
        "--mount=type=secret,target=/k/key.pem "
        "--mount=type=ssh --network=none --security=insecure true\n"
        "COPY --parents --exclude=*.md --exclude=$CACHE x /y/\n";
    assert_int_equal(build(&f, text, NULL, 0, NULL, NULL), 0);
    const struct ck_step *s = &f.plan->steps[f.plan->nsteps - 2];
    assert_int_equal(s->nmounts, 6);
    /* Values are expanded; the target is absolute against WORKDIR. */
    assert_string_equal(s->mounts[0].m.target, "/var/cache/apt");
    assert_string_equal(s->mounts[0].m.id, "/var/cache/apt");
    assert_string_equal(s->mounts[1].m.target, "/w/rel/dir");
    assert_int_equal(s->mounts[1].from_kind, CK_FROM_CONTEXT);
    assert_int_equal(s->mounts[2].from_kind, CK_FROM_STAGE);
    assert_int_equal(s->mounts[2].from_stage, 0);
    assert_string_equal(s->mounts[3].m.target, "/run/secrets/tok");
    assert_string_equal(s->mounts[4].m.id, "key.pem");
    assert_string_equal(s->mounts[5].m.target, "/run/buildkit/ssh_agent.0");
    assert_string_equal(s->network, "none");
    assert_true(s->insecure);
    /* A stage reached only through a mount is built; others are not. */
    assert_true(f.plan->stages[0].needed);
    assert_false(f.plan->stages[1].needed);
    const struct ck_step *c = &f.plan->steps[f.plan->nsteps - 1];
    assert_true(c->parents);
    assert_int_equal(c->nexcludes, 2);
    assert_string_equal(c->excludes[1], "/var/cache");
    done(&f);

    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"FROM scratch\nRUN --network=bridge true\n",
         "Dockerfile:2: RUN --network=bridge: network mode not supported"},
        {"FROM scratch\nRUN --security=root true\n",
         "Dockerfile:2: RUN --security=root: security mode not supported"},
        {"FROM scratch\nRUN --mount=type=cache true\n",
         "Dockerfile:2: RUN --mount: target is required"},
        {"FROM scratch\nRUN --mount=target=/ true\n",
         "Dockerfile:2: RUN --mount: invalid mount target \"/\""},
        {"FROM scratch\nRUN --mount=target=/a --mount=type=tmpfs,target=/a/ "
         "true\n",
         "Dockerfile:2: RUN --mount: two mounts on target /a"},
        {"FROM scratch\nRUN --mount=type=nfs,target=/a true\n",
         "Dockerfile:2: RUN --mount=type=nfs,target=/a: unsupported mount "
         "type"},
        {"FROM scratch AS me\nRUN --mount=from=me,target=/a true\n",
         "invalid from flag value me"},
        {"FROM scratch\nCOPY --exclude= a /b\n",
         "Dockerfile:2: --exclude requires a pattern"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = build(&f, bad[i].text, NULL, 0, NULL, NULL);
        if (rc == 0 || strstr(f.err.msg, bad[i].msg) == NULL)
            fail_msg("%s: rc %d, \"%s\", want \"%s\"", bad[i].text, rc,
                     f.err.msg, bad[i].msg);
        done(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arg_scoping),
        cmocka_unit_test(test_env_wins_over_arg_and_path_default),
        cmocka_unit_test(test_env_many_is_linear),
        cmocka_unit_test(test_env_state_is_capped),
        cmocka_unit_test(test_workdir_user_shell),
        cmocka_unit_test(test_stages_and_target),
        cmocka_unit_test(test_copy_from_image),
        cmocka_unit_test(test_base_image_and_onbuild),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_run_mounts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
