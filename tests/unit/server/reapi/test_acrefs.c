/* server/acrefs: the digests an ActionResult references, read off the wire.
 * Inputs are packed by protobuf-c, so the scanner is checked against an
 * independent encoder; hand-made bytes cover what protobuf-c never writes
 * (repeated fields inside a Digest, truncation, wrong wire types). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "server/reapi/acrefs.h"
#include "server/reapi/reapi.h"

typedef Build__Bazel__Remote__Execution__V2__NodeProperties PbNodeProperties;
typedef Build__Bazel__Remote__Execution__V2__NodeProperty PbNodeProperty;

/* 64 hex digits made from one repeated character. */
static void hex_of(char c, char out[65])
{
    memset(out, c, 64);
    out[64] = '\0';
}

static uint8_t *pack(const PbActionResult *ar, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&ar->base);
    uint8_t *p = malloc(*len ? *len : 1);
    assert_non_null(p);
    assert_int_equal(protobuf_c_message_pack(&ar->base, p), *len);
    return p;
}

static void assert_digest(const struct cd_digest *d, char c, int64_t size)
{
    char want[65], got[96];
    hex_of(c, want);
    cd_digest_format(d, got, sizeof got);
    char line[96];
    snprintf(line, sizeof line, "%s/%lld", want, (long long)size);
    assert_string_equal(got, line);
}

/* Every place a digest can be, in wire order, with fields the scanner
 * does not know around them (node properties, exit code, inline
 * contents, symlinks), as cairn's own layer results carry. */
static void test_all_places(void **state)
{
    (void)state;
    char h1[65], h2[65], h3[65], h4[65];
    hex_of('a', h1);
    hex_of('b', h2);
    hex_of('c', h3);
    hex_of('d', h4);
    PbDigest d1 = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT,
             d2 = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT,
             d3 = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT,
             d4 = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    d1.hash = h1;
    d1.size_bytes = 10;
    d2.hash = h2;
    d2.size_bytes = 0;
    d3.hash = h3;
    d3.size_bytes = 1 << 20;
    d4.hash = h4;
    d4.size_bytes = 7;
    PbNodeProperty prop = BUILD__BAZEL__REMOTE__EXECUTION__V2__NODE_PROPERTY__INIT;
    prop.name = "cairn.diff_id";
    prop.value = "sha256:0123";
    PbNodeProperty *props[] = {&prop};
    PbNodeProperties np = BUILD__BAZEL__REMOTE__EXECUTION__V2__NODE_PROPERTIES__INIT;
    np.n_properties = 1;
    np.properties = props;
    PbOutputFile f1 = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT,
                 f2 = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
    f1.path = "layer";
    f1.digest = &d1;
    f1.node_properties = &np;
    f2.path = "bin/tool";
    f2.digest = &d2;
    f2.is_executable = 1;
    f2.contents.data = (uint8_t *)"inline";
    f2.contents.len = 6;
    PbOutputFile *files[] = {&f1, &f2};
    PbOutputDirectory od = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_DIRECTORY__INIT;
    od.path = "out";
    od.tree_digest = &d3;
    PbOutputDirectory *dirs[] = {&od};
    PbActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.n_output_files = 2;
    ar.output_files = files;
    ar.n_output_directories = 1;
    ar.output_directories = dirs;
    ar.exit_code = 3;
    ar.stdout_digest = &d4;
    ar.stdout_raw.data = (uint8_t *)"out";
    ar.stdout_raw.len = 3;
    size_t len;
    uint8_t *p = pack(&ar, &len);
    struct cd_acrefs r;
    cd_acrefs_init(&r);
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cd_acrefs_scan(p, len, &r, &err), 0);
    assert_int_equal(r.n, 4);
    assert_digest(&r.d[0], 'a', 10);
    assert_digest(&r.d[1], 'b', 0);
    assert_digest(&r.d[2], 'c', 1 << 20);
    assert_digest(&r.d[3], 'd', 7);
    cd_acrefs_free(&r);
    free(p);
}

static void test_empty_result(void **state)
{
    (void)state;
    struct cd_acrefs r;
    cd_acrefs_init(&r);
    struct cairn_err err;
    assert_int_equal(cd_acrefs_scan((const uint8_t *)"", 0, &r, &err), 0);
    assert_int_equal(r.n, 0);
    cd_acrefs_free(&r);
}

/* More references than the inline array holds go to the heap; past the
 * cap the result is refused. */
static void test_many_and_too_many(void **state)
{
    (void)state;
    const size_t n = CD_ACREFS_MAX + 1;
    PbOutputFile *fs = calloc(n, sizeof *fs);
    PbOutputFile **fp = calloc(n, sizeof *fp);
    assert_non_null(fs);
    assert_non_null(fp);
    char h[65];
    hex_of('e', h);
    PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    d.hash = h;
    d.size_bytes = 1;
    for (size_t i = 0; i < n; i++) {
        PbOutputFile init = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
        fs[i] = init;
        fs[i].path = "f";
        fs[i].digest = &d;
        fp[i] = &fs[i];
    }
    PbActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.output_files = fp;
    struct cd_acrefs r;
    struct cairn_err err;
    /* CD_ACREFS_INLINE + 1: the first reference past the inline array. */
    ar.n_output_files = CD_ACREFS_INLINE + 1;
    size_t len;
    uint8_t *p = pack(&ar, &len);
    cd_acrefs_init(&r);
    assert_int_equal(cd_acrefs_scan(p, len, &r, &err), 0);
    assert_int_equal(r.n, CD_ACREFS_INLINE + 1);
    assert_true(r.d != r.inline_d);
    assert_digest(&r.d[CD_ACREFS_INLINE], 'e', 1);
    cd_acrefs_free(&r);
    assert_true(r.d == r.inline_d);
    free(p);
    /* Exactly the cap is accepted; one more is TOOBIG. */
    ar.n_output_files = CD_ACREFS_MAX;
    p = pack(&ar, &len);
    cd_acrefs_init(&r);
    assert_int_equal(cd_acrefs_scan(p, len, &r, &err), 0);
    assert_int_equal(r.n, CD_ACREFS_MAX);
    cd_acrefs_free(&r);
    free(p);
    ar.n_output_files = n;
    p = pack(&ar, &len);
    cd_acrefs_init(&r);
    assert_int_equal(cd_acrefs_scan(p, len, &r, &err), CAIRN_E_TOOBIG);
    assert_non_null(strstr(err.msg, "more than"));
    cd_acrefs_free(&r);
    free(p);
    free(fs);
    free(fp);
}

/* An output file whose digest is bad is named by its path. */
static void test_bad_digests(void **state)
{
    (void)state;
    static const struct {
        const char *hash;
        int64_t size;
        const char *msg;
    } cases[] = {
        {"abc", 1, "64 hex digits"},
        {"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 1, "hex"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
        d.hash = (char *)cases[i].hash;
        d.size_bytes = cases[i].size;
        PbOutputFile f = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
        f.path = "dir/the-file";
        f.digest = &d;
        PbOutputFile *fp[] = {&f};
        PbActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
        ar.n_output_files = 1;
        ar.output_files = fp;
        size_t len;
        uint8_t *p = pack(&ar, &len);
        struct cd_acrefs r;
        cd_acrefs_init(&r);
        struct cairn_err err;
        cairn_err_clear(&err);
        assert_int_equal(cd_acrefs_scan(p, len, &r, &err), CAIRN_E_INVAL);
        assert_non_null(strstr(err.msg, "output file 'dir/the-file'"));
        assert_non_null(strstr(err.msg, cases[i].msg));
        cd_acrefs_free(&r);
        free(p);
    }
    /* An output file without a digest at all. */
    PbOutputFile f = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
    f.path = "nodigest";
    PbOutputFile *fp[] = {&f};
    PbActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.n_output_files = 1;
    ar.output_files = fp;
    size_t len;
    uint8_t *p = pack(&ar, &len);
    struct cd_acrefs r;
    cd_acrefs_init(&r);
    struct cairn_err err;
    assert_int_equal(cd_acrefs_scan(p, len, &r, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "digest is missing"));
    cd_acrefs_free(&r);
    free(p);
}

/* Hand-made bytes: a hash field repeated inside a Digest (the last one
 * wins, as protobuf decodes it), then every truncation of the message is
 * refused, never read past its end (ASan watches the heap copy). */
static void test_last_wins_and_truncations(void **state)
{
    (void)state;
    uint8_t msg[256];
    size_t n = 0;
    /* Digest: hash 'a'x64, size 5, hash 'b'x64. */
    uint8_t dig[160];
    size_t dn = 0;
    dig[dn++] = 0x0a;
    dig[dn++] = 64;
    memset(dig + dn, 'a', 64);
    dn += 64;
    dig[dn++] = 0x10;
    dig[dn++] = 5;
    dig[dn++] = 0x0a;
    dig[dn++] = 64;
    memset(dig + dn, 'b', 64);
    dn += 64;
    /* OutputFile: path "p" (1), digest (2). */
    uint8_t of[200];
    size_t on = 0;
    of[on++] = 0x0a;
    of[on++] = 1;
    of[on++] = 'p';
    of[on++] = 0x12;
    of[on++] = (uint8_t)(dn | 0x80); /* 134: a two-byte varint */
    of[on++] = (uint8_t)(dn >> 7);
    memcpy(of + on, dig, dn);
    on += dn;
    /* ActionResult: output_files (2). */
    msg[n++] = 0x12;
    msg[n++] = (uint8_t)(on | 0x80);
    msg[n++] = (uint8_t)(on >> 7);
    memcpy(msg + n, of, on);
    n += on;
    struct cd_acrefs r;
    struct cairn_err err;
    cd_acrefs_init(&r);
    assert_int_equal(cd_acrefs_scan(msg, n, &r, &err), 0);
    assert_int_equal(r.n, 1);
    assert_digest(&r.d[0], 'b', 5);
    cd_acrefs_free(&r);
    for (size_t cut = 1; cut < n; cut++) {
        uint8_t *p = malloc(cut);
        assert_non_null(p);
        memcpy(p, msg, cut);
        cd_acrefs_init(&r);
        assert_int_equal(cd_acrefs_scan(p, cut, &r, &err), CAIRN_E_INVAL);
        cd_acrefs_free(&r);
        free(p);
    }
    /* output_files with a varint wire type instead of a length. */
    const uint8_t wrong[] = {0x10, 0x01};
    cd_acrefs_init(&r);
    assert_int_equal(cd_acrefs_scan(wrong, sizeof wrong, &r, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "malformed ActionResult"));
    cd_acrefs_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_places),
        cmocka_unit_test(test_empty_result),
        cmocka_unit_test(test_many_and_too_many),
        cmocka_unit_test(test_bad_digests),
        cmocka_unit_test(test_last_wins_and_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
