/* The image record as an action result (client/remote/imagerec.c):
 * make/parse round trip, the action's material, and every malformed
 * record refused with CAIRN_E_CORRUPT (not a record: CAIRN_E_NOTFOUND). */
#include "client/remote/imagerec.h"
#include "cachekey/digest.h"
#include "client/store/image.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"

static struct cairn_imagerec sample(void)
{
    struct cairn_imagerec r;
    memset(&r, 0, sizeof r);
    snprintf(r.config_digest, sizeof r.config_digest, "sha256:" H1);
    r.config_size = 1234;
    snprintf(r.manifest_digest, sizeof r.manifest_digest, "sha256:" H2);
    r.manifest_size = 567;
    r.created = 1700000000;
    return r;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct cairn_imagerec in = sample(), out;
    struct cairn_remote_result res;
    cairn_imagerec_result_make(&in, &res);
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cairn_imagerec_result_parse(&res, &out, &err), 0);
    assert_memory_equal(&in, &out, sizeof in);
}

static void test_action(void **state)
{
    (void)state;
    struct cairn_imagerec_key k = {.final_key = H1, .target = "0",
                                   .platform = "linux/amd64"};
    struct cairn_buf m;
    cairn_buf_init(&m, 0);
    struct cairn_remote_digest a, b;
    assert_int_equal(cairn_imagerec_action(&k, &m, &a), 0);
    const char want[] = "cairn image record v1\0" H1 "\0"
                        "0\0linux/amd64";
    assert_int_equal(m.len, sizeof want); /* the last NUL included */
    assert_memory_equal(m.data, want, sizeof want);
    uint8_t h[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_sha256(want, sizeof want, h);
    ck_hex_encode(h, hex);
    assert_string_equal(a.hash, hex);
    assert_int_equal(a.size, (int64_t)sizeof want);
    /* Another target is another action. */
    k.target = "build";
    cairn_buf_free(&m);
    assert_int_equal(cairn_imagerec_action(&k, &m, &b), 0);
    assert_string_not_equal(a.hash, b.hash);
    cairn_buf_free(&m);
}

static void set_prop(struct cairn_remote_file *f, const char *name,
                     const char *value)
{
    for (size_t i = 0; i < f->nprops; i++)
        if (strcmp(f->props[i].name, name) == 0)
            snprintf(f->props[i].value, sizeof f->props[i].value, "%s", value);
}

static int parse_mutated(void (*mutate)(struct cairn_remote_result *))
{
    struct cairn_imagerec in = sample(), out;
    memset(&out, 0x5a, sizeof out);
    struct cairn_imagerec before = out;
    struct cairn_remote_result res;
    cairn_imagerec_result_make(&in, &res);
    mutate(&res);
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_imagerec_result_parse(&res, &out, &err);
    if (rc)
        assert_memory_equal(&out, &before, sizeof out); /* untouched */
    return rc;
}

static void m_media(struct cairn_remote_result *r)
{
    set_prop(&r->files[0], "cairn.media_type", "text/plain");
}
static void m_manifest_media(struct cairn_remote_result *r)
{
    set_prop(&r->files[1], "cairn.media_type", CAIRN_MEDIA_CONFIG);
}
static void m_no_manifest(struct cairn_remote_result *r) { r->nfiles = 1; }
static void m_size0(struct cairn_remote_result *r) { r->files[0].digest.size = 0; }
static void m_huge(struct cairn_remote_result *r)
{
    r->files[1].digest.size = (int64_t)CAIRN_IMAGE_MAX_JSON + 1;
}
static void m_upper(struct cairn_remote_result *r)
{
    r->files[0].digest.hash[0] = 'A';
}
static void m_created_sign(struct cairn_remote_result *r)
{
    set_prop(&r->files[0], "cairn.created", "-5");
}
static void m_created_zero(struct cairn_remote_result *r)
{
    set_prop(&r->files[0], "cairn.created", "0017");
}
static void m_created_big(struct cairn_remote_result *r)
{
    set_prop(&r->files[0], "cairn.created", "999999999999");
}
static void m_created_none(struct cairn_remote_result *r)
{
    set_prop(&r->files[0], "cairn.created", "");
}
static void m_layer(struct cairn_remote_result *r)
{
    /* A step's layer result is not an image record. */
    snprintf(r->files[0].path, sizeof r->files[0].path, "layer");
}
static void m_exit(struct cairn_remote_result *r) { r->exit_code = 1; }

static void test_refused(void **state)
{
    (void)state;
    void (*corrupt[])(struct cairn_remote_result *) = {
        m_media,         m_manifest_media, m_no_manifest, m_size0,
        m_huge,          m_upper,          m_created_sign, m_created_zero,
        m_created_big,   m_created_none,
    };
    for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++)
        assert_int_equal(parse_mutated(corrupt[i]), CAIRN_E_CORRUPT);
    assert_int_equal(parse_mutated(m_layer), CAIRN_E_NOTFOUND);
    assert_int_equal(parse_mutated(m_exit), CAIRN_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_action),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
