/* Unit tests of signed cache entries (client/remote/sign.h): key text
 * forms, the canonical message, sign/verify with one bit changed in each
 * field, trust scopes, key files, and the settings that name them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/remote/cache.h"
#include "client/remote/config.h"
#include "client/remote/sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HASH_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static struct cairn_sign_key *k1, *k2;

static int setup(void **state)
{
    (void)state;
    return cairn_sign_key_generate(&k1, NULL) || cairn_sign_key_generate(&k2, NULL);
}

static int teardown(void **state)
{
    (void)state;
    cairn_sign_key_free(k1);
    cairn_sign_key_free(k2);
    return 0;
}

/* A layer step's result as cairn makes it. */
static void layer_result(struct cairn_remote_result *res)
{
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.layer.media_type = CAIRN_MEDIA_LAYER_GZIP;
    snprintf(rec.layer.digest, sizeof rec.layer.digest, "sha256:%s", HASH_A);
    snprintf(rec.layer.diff_id, sizeof rec.layer.diff_id, "sha256:%s", HASH_B);
    rec.layer.size = 1234;
    cairn_cache_result_make(&rec, res);
}

static const struct cairn_remote_digest action = {HASH_B, 77};

static int verify(const struct cairn_sign_pub *keys, size_t n,
                  const char *inst, const struct cairn_remote_digest *a,
                  const struct cairn_remote_result *res, char *msg, size_t ml)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_sign_result_verify(keys, n, inst, a, res, &err);
    if (msg)
        snprintf(msg, ml, "%s", err.msg);
    return rc;
}

static const char *prop(const struct cairn_remote_file *f, const char *name)
{
    for (size_t i = 0; i < f->nprops; i++)
        if (strcmp(f->props[i].name, name) == 0)
            return f->props[i].value;
    return NULL;
}

static void test_pub_text(void **state)
{
    (void)state;
    struct cairn_sign_pub p, q;
    cairn_sign_key_public(k1, &p);
    char text[CAIRN_SIGN_PUB_TEXT_LEN + 1];
    cairn_sign_pub_format(&p, text, sizeof text);
    assert_int_equal(strlen(text), CAIRN_SIGN_PUB_TEXT_LEN);
    assert_int_equal(cairn_sign_pub_parse(text, &q, NULL), 0);
    assert_memory_equal(p.raw, q.raw, sizeof p.raw);
    assert_string_equal(p.id, q.id);
    assert_int_equal(strlen(p.id), CAIRN_SIGN_ID_LEN);
    /* 32 zero bytes: 43 'A' and one '='. The last 'A' carries two bits
     * past the key, so "...AB=" is the same bytes written non-canonically. */
    char zero[64] = "ed25519:";
    memset(zero + 8, 'A', 43);
    strcat(zero, "=");
    assert_int_equal(cairn_sign_pub_parse(zero, &q, NULL), 0);
    char bad[64];
    snprintf(bad, sizeof bad, "%s", zero);
    bad[50] = 'B';
    assert_int_equal(cairn_sign_pub_parse(bad, &q, NULL), CAIRN_E_INVAL);
    const char *const others[] = {
        "", "ed25519:", "ED25519:" "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",   /* 31 bytes */
        "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* no pad */
        "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=",   /* bad char */
        "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ",  /* space */
        "rsa:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        assert_int_equal(cairn_sign_pub_parse(others[i], &q, NULL),
                         CAIRN_E_INVAL);
}

/* The message is the same whatever the order of files and properties,
 * ignores the signature and non-cairn properties, and has the version,
 * instance and action first as length-prefixed fields. */
static void test_message_canonical(void **state)
{
    (void)state;
    struct cairn_remote_result a, b;
    memset(&a, 0, sizeof a);
    a.nfiles = 2;
    snprintf(a.files[0].path, sizeof a.files[0].path, "manifest");
    snprintf(a.files[0].digest.hash, 65, HASH_A);
    a.files[0].digest.size = 5;
    snprintf(a.files[1].path, sizeof a.files[1].path, "config");
    snprintf(a.files[1].digest.hash, 65, HASH_B);
    a.files[1].digest.size = 6;
    a.files[1].nprops = 2;
    snprintf(a.files[1].props[0].name, 64, "cairn.z");
    snprintf(a.files[1].props[0].value, 128, "1");
    snprintf(a.files[1].props[1].name, 64, "cairn.a");
    snprintf(a.files[1].props[1].value, 128, "2");
    b = a;
    /* Reversed files and properties, plus a server's own property and a
     * signature: the same message. */
    b.files[0] = a.files[1];
    b.files[1] = a.files[0];
    b.files[0].props[0] = a.files[1].props[1];
    b.files[0].props[1] = a.files[1].props[0];
    b.files[0].nprops = 4;
    snprintf(b.files[0].props[2].name, 64, "mtime");
    snprintf(b.files[0].props[2].value, 128, "123");
    snprintf(b.files[0].props[3].name, 64, CAIRN_SIGN_PROP);
    snprintf(b.files[0].props[3].value, 128, "xx");
    struct cairn_buf ma, mb;
    cairn_buf_init(&ma, 0);
    cairn_buf_init(&mb, 0);
    assert_int_equal(cairn_sign_message("main", &action, &a, &ma), 0);
    assert_int_equal(cairn_sign_message("main", &action, &b, &mb), 0);
    assert_int_equal(ma.len, mb.len);
    assert_memory_equal(ma.data, mb.data, ma.len);
    /* field("cairn.sig.v1"): an 8-byte big-endian length 12, the text. */
    static const uint8_t head[] = {0, 0, 0, 0, 0, 0, 0, 12};
    assert_memory_equal(ma.data, head, 8);
    assert_memory_equal(ma.data + 8, "cairn.sig.v1", 12);
    assert_memory_equal(ma.data + 20, head, 7);
    assert_int_equal((uint8_t)ma.data[27], 4);
    assert_memory_equal(ma.data + 28, "main", 4);
    /* "config" comes before "manifest", "cairn.a" before "cairn.z". */
    const char *c = memmem(ma.data, ma.len, "config", 6);
    const char *m = memmem(ma.data, ma.len, "manifest", 8);
    const char *pa = memmem(ma.data, ma.len, "cairn.a", 7);
    const char *pz = memmem(ma.data, ma.len, "cairn.z", 7);
    assert_true(c && m && c < m && pa && pz && pa < pz);
    assert_null(memmem(ma.data, ma.len, "mtime", 5));
    /* Two files of one path: refused, not silently ordered. */
    b = a;
    snprintf(b.files[1].path, sizeof b.files[1].path, "manifest");
    cairn_buf_reset(&mb);
    assert_int_equal(cairn_sign_message("main", &action, &b, &mb),
                     CAIRN_E_CORRUPT);
    cairn_buf_free(&ma);
    cairn_buf_free(&mb);
}

static void test_sign_verify(void **state)
{
    (void)state;
    struct cairn_sign_pub p1, p2;
    cairn_sign_key_public(k1, &p1);
    cairn_sign_key_public(k2, &p2);
    struct cairn_remote_result res;
    layer_result(&res);
    char msg[1024];
    assert_int_equal(verify(&p1, 1, "a", &action, &res, msg, sizeof msg),
                     CAIRN_E_CRYPTO);
    assert_non_null(strstr(msg, "not signed"));
    assert_int_equal(cairn_sign_result(k1, "a", &action, &res, NULL), 0);
    /* The two properties, in name order after the record's. */
    const struct cairn_remote_file *f = &res.files[0];
    assert_int_equal(f->nprops, 4);
    assert_string_equal(f->props[0].name, "cairn.diff_id");
    assert_string_equal(f->props[1].name, "cairn.media_type");
    assert_string_equal(f->props[2].name, CAIRN_SIGN_PROP);
    assert_string_equal(f->props[3].name, CAIRN_SIGN_PROP_KEY);
    assert_int_equal(strlen(prop(f, CAIRN_SIGN_PROP)), 88);
    assert_string_equal(prop(f, CAIRN_SIGN_PROP_KEY), p1.id);
    assert_int_equal(verify(&p1, 1, "a", &action, &res, NULL, 0), 0);
    /* The record still parses; re-signing replaces, never duplicates. */
    struct cairn_layer_rec rec;
    assert_int_equal(cairn_cache_result_parse(&res, &rec, NULL), 0);
    assert_int_equal(cairn_sign_result(k1, "a", &action, &res, NULL), 0);
    assert_int_equal(res.files[0].nprops, 4);
    /* Rotation: either of two trusted keys. */
    struct cairn_sign_pub both[2] = {p2, p1};
    assert_int_equal(verify(both, 2, "a", &action, &res, NULL, 0), 0);
    assert_int_equal(verify(&p2, 1, "a", &action, &res, msg, sizeof msg),
                     CAIRN_E_CRYPTO);
    assert_non_null(strstr(msg, "not trusted"));
    assert_non_null(strstr(msg, p1.id));
    /* Another instance or step. */
    assert_int_equal(verify(&p1, 1, "b", &action, &res, msg, sizeof msg),
                     CAIRN_E_CRYPTO);
    assert_non_null(strstr(msg, "bad signature"));
    struct cairn_remote_digest other = action;
    other.size++;
    assert_int_equal(verify(&p1, 1, "a", &other, &res, NULL, 0), CAIRN_E_CRYPTO);
    other = action;
    other.hash[63] ^= 1;
    assert_int_equal(verify(&p1, 1, "a", &other, &res, NULL, 0), CAIRN_E_CRYPTO);
}

/* One bit changed in any field the entry asserts breaks the signature. */
static void test_flipped_bits(void **state)
{
    (void)state;
    struct cairn_sign_pub p1;
    cairn_sign_key_public(k1, &p1);
    struct cairn_remote_result good;
    layer_result(&good);
    assert_int_equal(cairn_sign_result(k1, "a", &action, &good, NULL), 0);
    enum { PATH, HASH, SIZE, DIFF, MEDIA, NAME, EXIT, SIG, NCASES };
    for (int c = 0; c < NCASES; c++) {
        struct cairn_remote_result r = good;
        struct cairn_remote_file *f = &r.files[0];
        switch (c) {
        case PATH: f->path[0] ^= 1; break;
        case HASH: f->digest.hash[10] ^= 1; break;
        case SIZE: f->digest.size ^= 1; break;
        case DIFF: f->props[0].value[70] ^= 1; break;
        case MEDIA: f->props[1].value[5] ^= 1; break;
        case NAME: f->props[1].name[7] ^= 1; break;
        case EXIT: r.exit_code ^= 1; break;
        case SIG: f->props[2].value[3] ^= 1; break;
        }
        char msg[1024];
        assert_int_equal(verify(&p1, 1, "a", &action, &r, msg, sizeof msg),
                         CAIRN_E_CRYPTO);
        /* (A changed signature may no longer be base64 at all.) */
        if (c != SIG)
            assert_non_null(strstr(msg, "bad signature"));
    }
    /* A cairn.* property or a file added after signing. */
    struct cairn_remote_result r = good;
    snprintf(r.files[0].props[4].name, 64, "cairn.extra");
    r.files[0].nprops = 5;
    assert_int_equal(verify(&p1, 1, "a", &action, &r, NULL, 0), CAIRN_E_CRYPTO);
    r = good;
    r.nfiles = 2;
    snprintf(r.files[1].path, sizeof r.files[1].path, "z");
    assert_int_equal(verify(&p1, 1, "a", &action, &r, NULL, 0), CAIRN_E_CRYPTO);
    /* A property of another namespace is not covered (servers add them). */
    r = good;
    snprintf(r.files[0].props[4].name, 64, "server.mtime");
    r.files[0].nprops = 5;
    assert_int_equal(verify(&p1, 1, "a", &action, &r, NULL, 0), 0);
    /* An empty step's entry. */
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.empty = true;
    cairn_cache_result_make(&rec, &r);
    assert_int_equal(cairn_sign_result(k1, "a", &action, &r, NULL), 0);
    assert_int_equal(verify(&p1, 1, "a", &action, &r, NULL, 0), 0);
    r.files[0].props[0].value[0] ^= 1; /* "true" */
    assert_int_equal(verify(&p1, 1, "a", &action, &r, NULL, 0), CAIRN_E_CRYPTO);
}

/* Signatures cut short, given twice, or without a key id. */
static void test_malformed_signature(void **state)
{
    (void)state;
    struct cairn_sign_pub p1;
    cairn_sign_key_public(k1, &p1);
    struct cairn_remote_result good, r;
    layer_result(&good);
    assert_int_equal(cairn_sign_result(k1, "a", &action, &good, NULL), 0);
    char msg[1024];
    size_t cuts[] = {0, 1, 44, 84, 86, 87};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        r = good;
        r.files[0].props[2].value[cuts[i]] = '\0';
        assert_int_equal(verify(&p1, 1, "a", &action, &r, msg, sizeof msg),
                         CAIRN_E_CRYPTO);
        assert_non_null(strstr(msg, "truncated"));
    }
    r = good; /* the key id alone */
    r.files[0].nprops = 2;
    r.files[0].props[2] = good.files[0].props[3];
    r.files[0].nprops = 3;
    assert_int_equal(verify(&p1, 1, "a", &action, &r, msg, sizeof msg),
                     CAIRN_E_CRYPTO);
    assert_non_null(strstr(msg, "without its key id"));
    r = good; /* a second signature on another file */
    r.nfiles = 2;
    snprintf(r.files[1].path, sizeof r.files[1].path, "z");
    r.files[1].nprops = 2;
    r.files[1].props[0] = good.files[0].props[2];
    r.files[1].props[1] = good.files[0].props[3];
    assert_int_equal(verify(&p1, 1, "a", &action, &r, msg, sizeof msg),
                     CAIRN_E_CRYPTO);
    assert_non_null(strstr(msg, "two signatures"));
    /* No room left for the signature: an error, not a cut signature. */
    r = good;
    r.files[0].nprops = CAIRN_REMOTE_MAX_PROPS;
    for (size_t i = 2; i < CAIRN_REMOTE_MAX_PROPS; i++)
        snprintf(r.files[0].props[i].name, 64, "cairn.p%zu", i);
    assert_int_equal(cairn_sign_result(k1, "a", &action, &r, NULL),
                     CAIRN_E_TOOBIG);
}

static void test_trust_scopes(void **state)
{
    (void)state;
    char text[CAIRN_SIGN_PUB_TEXT_LEN + 1], entry[700], scope[512];
    struct cairn_sign_pub p1, q;
    cairn_sign_key_public(k1, &p1);
    cairn_sign_pub_format(&p1, text, sizeof text);
    snprintf(entry, sizeof entry, "grpc://h:1/main  %s", text);
    assert_int_equal(cairn_sign_trust_parse(entry, scope, sizeof scope, &q, NULL), 0);
    assert_string_equal(scope, "grpc://h:1/main");
    assert_string_equal(q.id, p1.id);
    assert_true(cairn_sign_trust_covers(scope, "grpc://h:1/main/", "main"));
    assert_false(cairn_sign_trust_covers(scope, "grpc://h:1/main2", "main2"));
    assert_false(cairn_sign_trust_covers(scope, "grpc://h:2/main", "main"));
    assert_true(cairn_sign_trust_covers("/main", "grpc://x:9/main", "main"));
    assert_true(cairn_sign_trust_covers("main", "grpcs://y:9/main", "main"));
    assert_false(cairn_sign_trust_covers("main", "grpc://x:9/pr", "pr"));
    assert_true(cairn_sign_trust_covers("/", "grpc://x:9", ""));
    assert_true(cairn_sign_trust_covers("*", "grpc://x:9/pr", "pr"));
    const char *const bad[] = {"", text, "main", "main ed25519:AAAA",
                               "main ed25519:x y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cairn_sign_trust_parse(bad[i], scope, sizeof scope,
                                                &q, NULL),
                         CAIRN_E_INVAL);
    /* Settings: a bad trust entry is refused where it is written. */
    struct cairn_config cfg;
    cairn_config_init(&cfg);
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cairn_config_set(&cfg, "trust", "main ed25519:AAAA", &err),
                     CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "not a public key"));
    assert_int_equal(cairn_config_set(&cfg, "trust", entry, &err), 0);
    assert_int_equal(cairn_config_set(&cfg, "trust", entry, &err), 0);
    assert_int_equal(cfg.trust.n, 2);
    assert_int_equal(cairn_config_set(&cfg, "trust", "", &err), 0);
    assert_int_equal(cfg.trust.n, 0);
    assert_int_equal(cairn_config_set(&cfg, "sign-key", "/k", &err), 0);
    assert_string_equal(cfg.sign_key, "/k");
    cairn_config_clear(&cfg);
}

static void test_key_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-test-sign.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], junk[256];
    snprintf(path, sizeof path, "%s/k.pem", dir);
    snprintf(junk, sizeof junk, "%s/junk", dir);
    assert_int_equal(cairn_sign_key_save(k1, path, NULL), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* Never overwritten. */
    assert_int_equal(cairn_sign_key_save(k2, path, NULL), CAIRN_E_EXISTS);
    struct cairn_sign_key *back = NULL;
    assert_int_equal(cairn_sign_key_load(path, &back, NULL), 0);
    struct cairn_sign_pub a, b;
    cairn_sign_key_public(k1, &a);
    cairn_sign_key_public(back, &b);
    assert_memory_equal(a.raw, b.raw, sizeof a.raw);
    /* What the loaded key signs, the original's public key accepts. */
    struct cairn_remote_result res;
    layer_result(&res);
    assert_int_equal(cairn_sign_result(back, "a", &action, &res, NULL), 0);
    assert_int_equal(verify(&a, 1, "a", &action, &res, NULL, 0), 0);
    cairn_sign_key_free(back);
    back = NULL;
    struct cairn_err err;
    cairn_err_clear(&err);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(cairn_sign_key_load(junk, &back, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, junk));
    f = fopen(junk, "w");
    for (int i = 0; i < 2000; i++)
        fputs("0123456789", f);
    fclose(f);
    assert_int_equal(cairn_sign_key_load(junk, &back, &err), CAIRN_E_TOOBIG);
    snprintf(junk, sizeof junk, "%s/missing", dir);
    assert_true(cairn_sign_key_load(junk, &back, &err) < 0);
    assert_null(back);
    unlink(path);
    snprintf(junk, sizeof junk, "%s/junk", dir);
    unlink(junk);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pub_text),
        cmocka_unit_test(test_message_canonical),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_flipped_bits),
        cmocka_unit_test(test_malformed_signature),
        cmocka_unit_test(test_trust_scopes),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
