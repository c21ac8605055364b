/* cairn keys: prints the cache key of every instruction of a Dockerfile,
 * in build order, optionally with the key material of each (--explain) or
 * as JSON (--json). */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"

#include "cachekey/context.h"
#include "cachekey/dockerfile.h"
#include "cachekey/dockerignore.h"
#include "cachekey/key.h"
#include "cachekey/plan.h"
#include "cachekey/statcache.h"
#include "client/engine/build.h"
#include "client/engine/explain.h"
#include "client/store/json.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keys_opts {
    const char *dockerfile;
    const char *context;
    const char *target;
    struct cairn_strvec build_args;
    bool json;
    bool explain;
    const char *tag; /* --explain compares with this tag's last build */
    bool has_epoch;  /* --source-date-epoch or SOURCE_DATE_EPOCH */
    int64_t epoch;
};

/* What --explain -t compares with; last is NULL when the tag has no
 * remembered build. */
struct keys_explain {
    const char *tag;
    const struct cairn_explain_build *last;
    struct ck_context *ctx;
};

static void keys_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn keys [OPTIONS] CONTEXT\n\n"
            "Prints the cache key of every instruction, in build order.\n\n"
            "Options:\n"
            "  -f, --file PATH        Dockerfile (default CONTEXT/Dockerfile)\n"
            "      --build-arg K=V    set a build-time variable (repeatable)\n"
            "      --target STAGE     stop at this stage\n"
            "      --source-date-epoch N\n"
            "                         the build's epoch (or SOURCE_DATE_EPOCH):\n"
            "                         it is part of every key\n"
            "      --json             print a JSON array\n"
            "      --explain          also print every field of the key "
            "material\n"
            "  -t, --tag NAME[:TAG]   with --explain: say why each key "
            "differs from\n"
            "                         the last build of this tag\n");
}


static int parse_opts(int argc, char **argv, struct keys_opts *o)
{
    /* As cairn build reads it: the environment, then the flag. */
    const char *env_epoch = getenv("SOURCE_DATE_EPOCH");
    if (env_epoch && env_epoch[0]) {
        if (!cairn_cli_epoch_parse(env_epoch, &o->epoch)) {
            fprintf(stderr, "cairn keys: invalid SOURCE_DATE_EPOCH \"%s\"\n",
                    env_epoch);
            return -1;
        }
        o->has_epoch = true;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        bool missing = false;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            keys_usage(stdout);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--explain") == 0) {
            o->explain = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--tag", "-t",
                                            &missing))) {
            o->tag = v;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--file", "-f", &missing))) {
            o->dockerfile = v;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--build-arg", NULL,
                                  &missing))) {
            if (cairn_strvec_push(&o->build_args, v))
                return -1;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--target", NULL,
                                  &missing))) {
            o->target = v;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i,
                                            "--source-date-epoch", NULL,
                                            &missing))) {
            if (!cairn_cli_epoch_parse(v, &o->epoch)) {
                fprintf(stderr,
                        "cairn keys: invalid --source-date-epoch \"%s\"\n", v);
                return -1;
            }
            o->has_epoch = true;
        } else if (missing) {
            fprintf(stderr, "cairn keys: %s needs a value\n", a);
            return -1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn keys: unknown option %s\n", a);
            return -1;
        } else if (o->context == NULL) {
            o->context = a;
        } else {
            fprintf(stderr, "cairn keys: only one CONTEXT may be given\n");
            return -1;
        }
    }
    if (o->context == NULL) {
        fprintf(stderr, "cairn keys: missing CONTEXT\n");
        keys_usage(stderr);
        return -1;
    }
    return 0;
}

/* Text for one line: newlines and control characters escaped, and any run
 * of 64 or more hex digits (an image digest in FROM or --from) shortened,
 * so that the key is the only 64-hex string on its line. */
static int display_text(struct cairn_buf *b, const char *s)
{
    int rc = 0;
    while (!rc && *s) {
        size_t hex = strspn(s, "0123456789abcdefABCDEF");
        if (hex >= CK_SHA256_HEX_LEN) {
            rc = cairn_buf_append(b, s, 12);
            if (!rc)
                rc = cairn_buf_puts(b, "...");
            s += hex;
            continue;
        }
        if (hex > 0) {
            rc = cairn_buf_append(b, s, hex);
            s += hex;
            continue;
        }
        unsigned char c = (unsigned char)*s++;
        if (c == '\n')
            rc = cairn_buf_puts(b, "\\n");
        else if (c == '\t')
            rc = cairn_buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            rc = cairn_buf_printf(b, "\\x%02x", c);
        else
            rc = cairn_buf_putc(b, (char)c);
    }
    return rc;
}

/* A material value for --explain: printable text, escapes otherwise. */
static void print_value(FILE *out, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\\')
            fputs("\\\\", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}

static void stage_label(const struct ck_stage *st, char *buf, size_t n)
{
    if (st->name)
        snprintf(buf, n, "%s", st->name);
    else
        snprintf(buf, n, "stage-%zu", st->index);
}

/* The causes for step i (nothing when its key is the remembered one). */
static int step_causes(const struct keys_explain *x, const struct ck_plan *plan,
                       const struct ck_keys *keys, size_t i,
                       struct cairn_strvec *causes)
{
    if (x == NULL || x->last == NULL)
        return 0;
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = cairn_explain_plan_step(x->last, x->tag, plan, keys, i, x->ctx,
                                     true, causes, &e);
    if (rc)
        fprintf(stderr, "cairn keys: cannot explain step %d: %s\n",
                plan->steps[i].number, e.msg[0] ? e.msg : cairn_strerror(rc));
    return rc == CAIRN_E_NOMEM ? rc : 0;
}

static int print_plain(const struct ck_plan *plan, const struct ck_keys *keys,
                       bool explain, const struct keys_explain *x)
{
    int total = 0;
    for (size_t i = 0; i < plan->nsteps; i++)
        if (keys->keys[i].computed)
            total++;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    if (x && x->last == NULL)
        printf("no previous build of %s\n", x->tag);
    for (size_t i = 0; i < plan->nsteps; i++) {
        const struct ck_step_key *k = &keys->keys[i];
        const struct ck_step *s = &plan->steps[i];
        if (!k->computed)
            continue;
        char label[128];
        stage_label(&plan->stages[s->stage], label, sizeof label);
        cairn_buf_reset(&b);
        if (display_text(&b, s->text)) {
            cairn_buf_free(&b);
            return CAIRN_E_NOMEM;
        }
        printf("%-10s %d/%d  %s  %s%s\n", label, s->number, total,
               b.data ? b.data : "", k->hex,
               k->unresolved ? "  (unresolved: base image not in the store)"
                             : "");
        if (!explain)
            continue;
        struct cairn_strvec causes;
        cairn_strvec_init(&causes);
        if (step_causes(x, plan, keys, i, &causes)) {
            cairn_strvec_free(&causes);
            cairn_buf_free(&b);
            return CAIRN_E_NOMEM;
        }
        for (size_t c = 0; c < causes.n; c++) {
            fputs(" ---> cache miss: ", stdout);
            print_value(stdout, causes.v[c], strlen(causes.v[c]));
            putchar('\n');
        }
        cairn_strvec_free(&causes);
        size_t pos = 0;
        const char *l, *v;
        size_t ln, vn;
        while (ck_material_next(k->material.data, k->material.len, &pos, &l,
                                &ln, &v, &vn) == 1) {
            printf("    %.*s: ", (int)ln, l);
            print_value(stdout, v, vn);
            putchar('\n');
        }
    }
    cairn_buf_free(&b);
    return 0;
}

static int print_json(const struct ck_plan *plan, const struct ck_keys *keys,
                      bool explain, const struct keys_explain *x)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < plan->nsteps; i++) {
        const struct ck_step_key *k = &keys->keys[i];
        const struct ck_step *s = &plan->steps[i];
        if (!k->computed)
            continue;
        const struct ck_stage *st = &plan->stages[s->stage];
        char label[128];
        stage_label(st, label, sizeof label);
        /* Stage names and instructions come from the Dockerfile and need
         * not be UTF-8: "o" with cairn_json_string, never "s" (which
         * fails on them). */
        json_t *o = json_pack("{s:o, s:I, s:I, s:o, s:s, s:s, s:b, s:b}",
                              "stage", cairn_json_string(label), "stage_index",
                              (json_int_t)st->index, "step",
                              (json_int_t)s->number, "instruction",
                              cairn_json_string(s->text), "kind",
                              ck_instr_name(s->instr->kind), "key", k->hex,
                              "layer", k->layer, "unresolved", k->unresolved);
        if (o == NULL) {
            json_decref(arr);
            return CAIRN_E_NOMEM;
        }
        /* The REAPI action digest of the step is {key, material_size}
         * (docs/remote.md). */
        json_object_set_new(o, "material_size",
                            json_integer((json_int_t)k->material.len));
        if (explain) {
            json_t *mat = json_array();
            size_t pos = 0;
            const char *l, *v;
            size_t ln, vn;
            while (mat && ck_material_next(k->material.data, k->material.len,
                                           &pos, &l, &ln, &v, &vn) == 1)
                json_array_append_new(
                    mat, json_pack("[o, o]", cairn_json_stringn(l, ln),
                                   cairn_json_stringn(v, vn)));
            json_object_set_new(o, "material", mat);
        }
        if (explain && x) {
            /* "causes": why the key differs from the tag's last build
             * (empty: same key). */
            struct cairn_strvec causes;
            cairn_strvec_init(&causes);
            int crc = 0;
            if (x->last == NULL) {
                char line[512];
                snprintf(line, sizeof line, "no previous build of %s", x->tag);
                crc = cairn_strvec_push(&causes, line);
            } else {
                crc = step_causes(x, plan, keys, i, &causes);
            }
            json_t *ca = json_array();
            for (size_t c = 0; ca && c < causes.n; c++)
                json_array_append_new(ca, cairn_json_string(causes.v[c]));
            cairn_strvec_free(&causes);
            if (crc || ca == NULL) {
                json_decref(ca);
                json_decref(o);
                json_decref(arr);
                return CAIRN_E_NOMEM;
            }
            json_object_set_new(o, "causes", ca);
        }
        json_array_append_new(arr, o);
    }
    char *text = json_dumps(arr, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(arr);
    if (text == NULL)
        return CAIRN_E_NOMEM;
    puts(text);
    free(text);
    return 0;
}

int cairn_cmd_keys(int argc, char **argv)
{
    struct keys_opts o;
    memset(&o, 0, sizeof o);
    cairn_strvec_init(&o.build_args);
    struct cairn_err err;
    cairn_err_clear(&err);
    struct ck_dockerfile *df = NULL;
    struct ck_ignore *ig = NULL;
    struct cairn_store *store = NULL;
    struct ck_statcache *sc = NULL;
    struct ck_context *ctx = NULL;
    struct ck_plan *plan = NULL;
    struct ck_keys *keys = NULL;
    char dfpath[4096];
    int status = 1;

    int prc = parse_opts(argc, argv, &o);
    if (prc != 0) {
        status = prc > 0 ? 0 : 2;
        goto out;
    }
    if (o.dockerfile == NULL) {
        snprintf(dfpath, sizeof dfpath, "%s/Dockerfile", o.context);
        o.dockerfile = dfpath;
    }
    int rc = ck_dockerfile_parse_file(o.dockerfile, &df, &err);
    if (rc)
        goto fail;
    rc = ck_ignore_load(o.context, o.dockerfile, &ig, &err);
    if (rc)
        goto fail;

    /* The store gives the stat cache and the base images' digests; without
     * one the keys are computed all the same, slower and with bases marked
     * unresolved. */
    struct cairn_err ierr;
    cairn_err_clear(&ierr);
    if (cairn_cli_store_open(&store, &ierr) == 0)
        cairn_store_statcache_open(store, &sc, &ierr);
    if (ierr.code)
        fprintf(stderr, "cairn keys: warning: no local store (%s)\n", ierr.msg);

    struct ck_context_opts copts = {.ignore = ig, .cache = sc, .threads = 0};
    rc = ck_context_open(o.context, &copts, &ctx, &err);
    if (rc)
        goto fail;

    struct ck_plan_opts popts = {
        .build_args = (const char *const *)o.build_args.v,
        .nbuild_args = o.build_args.n,
        .target = o.target,
        .resolve = store ? cairn_build_resolve : NULL,
        .resolve_arg = store,
        .allow_unresolved = true,
        .has_source_date_epoch = o.has_epoch,
        .source_date_epoch = o.epoch,
    };
    rc = ck_plan_build(df, &popts, &plan, &err);
    if (rc)
        goto fail;
    if (plan->nunused_build_args > 0) {
        fprintf(stderr, "[Warning] One or more build-args [");
        for (size_t i = 0; i < plan->nunused_build_args; i++)
            fprintf(stderr, "%s%s", i ? " " : "", plan->unused_build_args[i]);
        fprintf(stderr, "] were not consumed\n");
    }
    rc = ck_keys_compute(plan, ctx, &keys, &err);
    if (rc)
        goto fail;
    struct cairn_explain_build last;
    memset(&last, 0, sizeof last);
    struct keys_explain x = {.tag = o.tag, .last = NULL, .ctx = ctx};
    if (o.explain && o.tag) {
        struct cairn_err le;
        cairn_err_clear(&le);
        if (store && cairn_explain_load(store, o.tag, &last, &le) == 0)
            x.last = &last;
        else if (le.code != CAIRN_E_NOTFOUND && le.code != 0)
            fprintf(stderr, "cairn keys: warning: %s\n", le.msg);
    }
    const struct keys_explain *xp = o.explain && o.tag ? &x : NULL;
    rc = o.json ? print_json(plan, keys, o.explain, xp)
                : print_plain(plan, keys, o.explain, xp);
    cairn_explain_build_clear(&last);
    if (rc)
        goto fail;
    status = 0;
    goto out;
fail:
    fprintf(stderr, "cairn keys: %s\n", err.msg[0] ? err.msg : cairn_strerror(rc));
out:
    ck_keys_free(keys);
    ck_plan_free(plan);
    ck_context_close(ctx);
    cairn_store_statcache_close(store, sc);
    cairn_store_close(store);
    ck_ignore_free(ig);
    ck_dockerfile_free(df);
    cairn_strvec_free(&o.build_args);
    return status;
}
