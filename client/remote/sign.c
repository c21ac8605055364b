/* Ed25519 signatures over cache entries; see sign.h. OpenSSL's errors are
 * translated here (to CAIRN_E_CRYPTO with a sentence) and nowhere else. */
#include "client/remote/sign.h"

#include "cachekey/digest.h"
#include "cachekey/field.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIGN_VERSION "cairn.sig.v1"
#define SIGN_PUB_PREFIX "ed25519:"
/* base64 of 64 bytes. */
#define SIGN_SIG_TEXT_LEN 88

struct cairn_sign_key {
    EVP_PKEY *pkey;
    struct cairn_sign_pub pub;
};

/* The last OpenSSL error as a sentence, for err. */
static int ossl_fail(struct cairn_err *err, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "unknown error");
    ERR_clear_error();
    return cairn_err_set(err, CAIRN_E_CRYPTO, "%s: %s", what, buf);
}

/* ---- base64 (RFC 4648, with padding, strict) ----------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4 * ceil(n / 3) characters and a NUL into out. */
static void b64_encode(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    const char *at = c ? strchr(b64, c) : NULL;
    return at ? (int)(at - b64) : -1;
}

/* Decodes exactly n bytes from s, which must be their canonical encoding
 * (right length, padding, and zero bits past the last byte). */
static int b64_decode_exact(const char *s, uint8_t *out, size_t n)
{
    size_t len = strlen(s);
    if (len != 4 * ((n + 2) / 3))
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            int d = b64_value(s[i + k]);
            if (s[i + k] == '=' && i + 4 == len && k >= 2) {
                pad++;
                d = 0;
            } else if (d < 0 || pad > 0) {
                return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        uint8_t bytes[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        for (int k = 0; k < 3 - pad; k++) {
            if (o == n)
                return -1;
            out[o++] = bytes[k];
        }
        /* Non-canonical: bits set past the last byte. */
        if (pad > 0 && bytes[3 - pad] != 0)
            return -1;
    }
    return o == n ? 0 : -1;
}

/* ---- keys --------------------------------------------------------------- */

static void pub_fill_id(struct cairn_sign_pub *p)
{
    uint8_t h[CK_SHA256_LEN];
    ck_sha256(p->raw, sizeof p->raw, h);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < CAIRN_SIGN_ID_LEN / 2; i++) {
        p->id[2 * i] = hex[h[i] >> 4];
        p->id[2 * i + 1] = hex[h[i] & 15];
    }
    p->id[CAIRN_SIGN_ID_LEN] = '\0';
}

/* Takes pkey (freed on failure) into a new key. */
static int key_wrap(EVP_PKEY *pkey, struct cairn_sign_key **out,
                    struct cairn_err *err)
{
    struct cairn_sign_key *k = calloc(1, sizeof *k);
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return CAIRN_E_NOMEM;
    }
    size_t n = sizeof k->pub.raw;
    if (EVP_PKEY_get_raw_public_key(pkey, k->pub.raw, &n) != 1 ||
        n != sizeof k->pub.raw) {
        free(k);
        EVP_PKEY_free(pkey);
        return ossl_fail(err, "reading the public key");
    }
    pub_fill_id(&k->pub);
    k->pkey = pkey;
    *out = k;
    return 0;
}

int cairn_sign_key_generate(struct cairn_sign_key **out, struct cairn_err *err)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_keygen(ctx, &pkey) != 1) {
        EVP_PKEY_CTX_free(ctx);
        return ossl_fail(err, "generating an Ed25519 key");
    }
    EVP_PKEY_CTX_free(ctx);
    return key_wrap(pkey, out, err);
}

/* A passphrase callback that gives none: an encrypted key fails to load
 * instead of prompting on the terminal in the middle of a build. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int cairn_sign_key_load(const char *path, struct cairn_sign_key **out,
                        struct cairn_err *err)
{
    char *data = NULL;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "sign-key %s: %s", path,
                             strerror(errno));
    data = malloc(CAIRN_SIGN_MAX_KEY_FILE + 1);
    size_t len = 0;
    while (data != NULL && len <= CAIRN_SIGN_MAX_KEY_FILE) {
        ssize_t r = read(fd, data + len, CAIRN_SIGN_MAX_KEY_FILE + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = cairn_err_set(err, -errno, "sign-key %s: %s", path,
                               strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (data == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    if (len > CAIRN_SIGN_MAX_KEY_FILE) {
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "sign-key %s: over %d bytes; not a key", path,
                           CAIRN_SIGN_MAX_KEY_FILE);
        goto out;
    }
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    EVP_PKEY *pkey =
        bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL) {
        ERR_clear_error();
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "sign-key %s: not an unencrypted PEM private key "
                           "(make one with `cairn key generate`)",
                           path);
        goto out;
    }
    if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(pkey);
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "sign-key %s: not an Ed25519 key", path);
        goto out;
    }
    rc = key_wrap(pkey, out, err);
    if (rc)
        cairn_err_prefix(err, "sign-key %s", path);
out:
    if (data != NULL)
        OPENSSL_cleanse(data, CAIRN_SIGN_MAX_KEY_FILE + 1);
    free(data);
    close(fd);
    return rc;
}

int cairn_sign_key_save(const struct cairn_sign_key *k, const char *path,
                        struct cairn_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long n = 0;
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
    if (bio == NULL ||
        PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(bio, &pem)) <= 0) {
        BIO_free(bio);
        return ossl_fail(err, "encoding the private key");
    }
    int rc = 0;
    bool out_std = strcmp(path, "-") == 0;
    int fd = out_std ? STDOUT_FILENO
                     : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                            0600);
    if (fd < 0) {
        rc = cairn_err_set(err, errno == EEXIST ? CAIRN_E_EXISTS : -errno,
                           "%s: %s%s", path, strerror(errno),
                           errno == EEXIST ? " (a key is never overwritten)"
                                           : "");
        goto out;
    }
    for (long off = 0; off < n;) {
        ssize_t w = write(fd, pem + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        off += w;
    }
    if (!out_std) {
        if (!rc && fsync(fd) != 0)
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        close(fd);
        if (rc)
            unlink(path);
    }
out:
    OPENSSL_cleanse(pem, (size_t)n);
    BIO_free(bio);
    return rc;
}

void cairn_sign_key_free(struct cairn_sign_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

void cairn_sign_key_public(const struct cairn_sign_key *k,
                           struct cairn_sign_pub *out)
{
    *out = k->pub;
}

int cairn_sign_pub_parse(const char *text, struct cairn_sign_pub *out,
                         struct cairn_err *err)
{
    struct cairn_sign_pub p;
    size_t pl = strlen(SIGN_PUB_PREFIX);
    if (strncmp(text, SIGN_PUB_PREFIX, pl) != 0 ||
        b64_decode_exact(text + pl, p.raw, sizeof p.raw) != 0)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "\"%.80s\" is not a public key (expected "
                             "ed25519:<base64 of 32 bytes>, as `cairn key "
                             "public` prints)",
                             text);
    pub_fill_id(&p);
    *out = p;
    return 0;
}

void cairn_sign_pub_format(const struct cairn_sign_pub *p, char *buf, size_t n)
{
    char enc[48];
    b64_encode(p->raw, sizeof p->raw, enc);
    snprintf(buf, n, "%s%s", SIGN_PUB_PREFIX, enc);
}

/* ---- trust scopes -------------------------------------------------------- */

/* Length of s without trailing slashes. */
static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return n;
}

int cairn_sign_trust_parse(const char *entry, char *scope, size_t slen,
                           struct cairn_sign_pub *key, struct cairn_err *err)
{
    const char *sp = entry + strcspn(entry, " \t");
    const char *k = sp + strspn(sp, " \t");
    size_t n = (size_t)(sp - entry);
    if (n == 0 || *k == '\0' || k[strcspn(k, " \t")] != '\0')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "trust \"%.100s\": expected \"SCOPE KEY\" (SCOPE "
                             "a cache URL, an instance or *; KEY "
                             "ed25519:...)",
                             entry);
    if (n >= slen)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "trust: scope longer than %zu bytes", slen - 1);
    struct cairn_sign_pub p;
    int rc = cairn_sign_pub_parse(k, &p, err);
    if (rc) {
        cairn_err_prefix(err, "trust");
        return rc;
    }
    memcpy(scope, entry, n);
    scope[n] = '\0';
    *key = p;
    return 0;
}

bool cairn_sign_trust_covers(const char *scope, const char *url,
                             const char *instance)
{
    if (strcmp(scope, "*") == 0)
        return true;
    if (strncmp(scope, "grpc://", 7) == 0 || strncmp(scope, "grpcs://", 8) == 0) {
        size_t a = trimmed_len(scope), b = trimmed_len(url);
        return a == b && memcmp(scope, url, a) == 0;
    }
    while (*scope == '/')
        scope++;
    size_t a = trimmed_len(scope);
    return a == strlen(instance) && memcmp(scope, instance, a) == 0;
}

/* ---- the canonical message ----------------------------------------------- */

static bool is_sig_prop(const char *name)
{
    return strcmp(name, CAIRN_SIGN_PROP) == 0 ||
           strcmp(name, CAIRN_SIGN_PROP_KEY) == 0;
}

static bool is_covered_prop(const char *name)
{
    return strncmp(name, "cairn.", 6) == 0 && !is_sig_prop(name);
}

static int cmp_file(const void *a, const void *b)
{
    const struct cairn_remote_file *const *x = a, *const *y = b;
    return strcmp((*x)->path, (*y)->path);
}

static int cmp_prop(const void *a, const void *b)
{
    const struct cairn_remote_prop *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int append_num(struct cairn_buf *b, long long v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    return ck_field_append_str(b, s);
}

/* One file: path, digest, then its covered properties in name order. */
static int append_file(struct cairn_buf *out, const struct cairn_remote_file *f)
{
    const struct cairn_remote_prop *props[CAIRN_REMOTE_MAX_PROPS];
    size_t np = 0;
    for (size_t i = 0; i < f->nprops && i < CAIRN_REMOTE_MAX_PROPS; i++)
        if (is_covered_prop(f->props[i].name))
            props[np++] = &f->props[i];
    qsort(props, np, sizeof props[0], cmp_prop);
    for (size_t i = 1; i < np; i++)
        if (strcmp(props[i - 1]->name, props[i]->name) == 0)
            return CAIRN_E_CORRUPT;
    int rc = ck_field_append_str(out, f->path);
    if (!rc)
        rc = ck_field_append_str(out, f->digest.hash);
    if (!rc)
        rc = append_num(out, f->digest.size);
    if (!rc)
        rc = append_num(out, (long long)np);
    for (size_t i = 0; !rc && i < np; i++) {
        rc = ck_field_append_str(out, props[i]->name);
        if (!rc)
            rc = ck_field_append_str(out, props[i]->value);
    }
    return rc;
}

int cairn_sign_message(const char *instance,
                       const struct cairn_remote_digest *action,
                       const struct cairn_remote_result *res,
                       struct cairn_buf *out)
{
    const struct cairn_remote_file *files[CAIRN_REMOTE_MAX_FILES];
    size_t nf = res->nfiles < CAIRN_REMOTE_MAX_FILES ? res->nfiles
                                                     : CAIRN_REMOTE_MAX_FILES;
    for (size_t i = 0; i < nf; i++)
        files[i] = &res->files[i];
    qsort(files, nf, sizeof files[0], cmp_file);
    for (size_t i = 1; i < nf; i++)
        if (strcmp(files[i - 1]->path, files[i]->path) == 0)
            return CAIRN_E_CORRUPT;
    int rc = ck_field_append_str(out, SIGN_VERSION);
    if (!rc)
        rc = ck_field_append_str(out, instance);
    if (!rc)
        rc = ck_field_append_str(out, action->hash);
    if (!rc)
        rc = append_num(out, action->size);
    if (!rc)
        rc = append_num(out, res->exit_code);
    if (!rc)
        rc = append_num(out, (long long)nf);
    for (size_t i = 0; !rc && i < nf; i++)
        rc = append_file(out, files[i]);
    return rc;
}

/* ---- sign and verify ----------------------------------------------------- */

/* The file that carries the signature: the first in path order. */
static struct cairn_remote_file *sig_file(struct cairn_remote_result *res)
{
    struct cairn_remote_file *best = NULL;
    for (size_t i = 0; i < res->nfiles && i < CAIRN_REMOTE_MAX_FILES; i++)
        if (best == NULL || strcmp(res->files[i].path, best->path) < 0)
            best = &res->files[i];
    return best;
}

/* Sets a property of f, keeping the properties in name order (REAPI asks
 * for sorted node properties). */
static int prop_put(struct cairn_remote_file *f, const char *name,
                    const char *value)
{
    size_t at = 0;
    while (at < f->nprops && strcmp(f->props[at].name, name) < 0)
        at++;
    if (at == f->nprops || strcmp(f->props[at].name, name) != 0) {
        if (f->nprops == CAIRN_REMOTE_MAX_PROPS)
            return CAIRN_E_TOOBIG;
        memmove(&f->props[at + 1], &f->props[at],
                (f->nprops - at) * sizeof f->props[0]);
        f->nprops++;
    }
    snprintf(f->props[at].name, sizeof f->props[at].name, "%s", name);
    snprintf(f->props[at].value, sizeof f->props[at].value, "%s", value);
    return 0;
}

int cairn_sign_result(struct cairn_sign_key *k, const char *instance,
                      const struct cairn_remote_digest *action,
                      struct cairn_remote_result *res, struct cairn_err *err)
{
    struct cairn_remote_file *f = sig_file(res);
    if (f == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "an entry without files cannot be signed");
    struct cairn_buf msg;
    cairn_buf_init(&msg, 0);
    uint8_t sig[CAIRN_SIGN_SIG_LEN];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = NULL;
    int rc = cairn_sign_message(instance, action, res, &msg);
    if (rc) {
        cairn_err_set(err, rc, "cannot sign the entry: %s", cairn_strerror(rc));
        goto out;
    }
    md = EVP_MD_CTX_new();
    /* Ed25519 hashes the message itself: no digest is named. */
    if (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, k->pkey) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const uint8_t *)msg.data, msg.len) != 1 ||
        siglen != sizeof sig) {
        rc = ossl_fail(err, "signing the entry");
        goto out;
    }
    char text[SIGN_SIG_TEXT_LEN + 1];
    b64_encode(sig, sizeof sig, text);
    rc = prop_put(f, CAIRN_SIGN_PROP, text);
    if (!rc)
        rc = prop_put(f, CAIRN_SIGN_PROP_KEY, k->pub.id);
    if (rc)
        cairn_err_set(err, rc, "no room for the signature in the entry");
out:
    EVP_MD_CTX_free(md);
    cairn_buf_free(&msg);
    return rc;
}

/* Finds the one signature of res: CAIRN_E_NOTFOUND when there is none,
 * CAIRN_E_CORRUPT when it is given twice or by halves. */
static int sig_find(const struct cairn_remote_result *res, const char **sig,
                    const char **id)
{
    const char *s = NULL, *k = NULL;
    int ns = 0, nk = 0;
    for (size_t i = 0; i < res->nfiles && i < CAIRN_REMOTE_MAX_FILES; i++) {
        const struct cairn_remote_file *f = &res->files[i];
        for (size_t j = 0; j < f->nprops && j < CAIRN_REMOTE_MAX_PROPS; j++) {
            if (strcmp(f->props[j].name, CAIRN_SIGN_PROP) == 0) {
                s = f->props[j].value;
                ns++;
            } else if (strcmp(f->props[j].name, CAIRN_SIGN_PROP_KEY) == 0) {
                k = f->props[j].value;
                nk++;
            }
        }
    }
    if (ns == 0 && nk == 0)
        return CAIRN_E_NOTFOUND;
    if (ns != 1 || nk != 1)
        return CAIRN_E_CORRUPT;
    *sig = s;
    *id = k;
    return 0;
}

int cairn_sign_result_verify(const struct cairn_sign_pub *keys, size_t n,
                             const char *instance,
                             const struct cairn_remote_digest *action,
                             const struct cairn_remote_result *res,
                             struct cairn_err *err)
{
    const char *text = NULL, *id = NULL;
    int rc = sig_find(res, &text, &id);
    if (rc == CAIRN_E_NOTFOUND)
        return cairn_err_set(err, CAIRN_E_CRYPTO,
                             "entry is not signed, and trust is configured "
                             "for this cache");
    if (rc)
        return cairn_err_set(err, CAIRN_E_CRYPTO,
                             "entry has a signature without its key id, or "
                             "two signatures");
    const struct cairn_sign_pub *key = NULL;
    for (size_t i = 0; i < n && key == NULL; i++)
        if (strcmp(keys[i].id, id) == 0)
            key = &keys[i];
    if (key == NULL)
        return cairn_err_set(err, CAIRN_E_CRYPTO,
                             "entry is signed by key %.20s, which is not "
                             "trusted for this cache",
                             id);
    uint8_t sig[CAIRN_SIGN_SIG_LEN];
    if (b64_decode_exact(text, sig, sizeof sig) != 0)
        return cairn_err_set(err, CAIRN_E_CRYPTO,
                             "entry has a truncated or malformed signature "
                             "(%zu characters, want %d of base64)",
                             strlen(text), SIGN_SIG_TEXT_LEN);
    struct cairn_buf msg;
    cairn_buf_init(&msg, 0);
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    rc = cairn_sign_message(instance, action, res, &msg);
    if (rc) {
        rc = cairn_err_set(err, CAIRN_E_CRYPTO,
                           "entry has two files of one path or two "
                           "properties of one name");
        goto out;
    }
    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->raw,
                                       sizeof key->raw);
    md = EVP_MD_CTX_new();
    if (pkey == NULL || md == NULL ||
        EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) != 1) {
        rc = ossl_fail(err, "checking the entry's signature");
        goto out;
    }
    if (EVP_DigestVerify(md, sig, sizeof sig, (const uint8_t *)msg.data,
                         msg.len) != 1) {
        ERR_clear_error();
        rc = cairn_err_set(err, CAIRN_E_CRYPTO,
                           "entry has a bad signature by key %s (changed "
                           "after signing, or signed for another instance "
                           "or step)",
                           key->id);
    }
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    cairn_buf_free(&msg);
    return rc;
}
