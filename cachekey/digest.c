#include "digest.h"

#include "../common/error.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ck_sha256 {
    EVP_MD_CTX *ctx;
};

/* EVP_sha256() makes OpenSSL 3 look the algorithm up in its provider
 * store (under a lock) at every EVP_DigestInit_ex, i.e. once per file a
 * context hash reads; fetched once here, each init is only a reset. The
 * fetched method lives as long as the process. */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The fetched SHA-256, or OpenSSL's implicitly fetched one if the fetch
 * failed (then OpenSSL reports the error at init). */
static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

int ck_sha256_new(struct ck_sha256 **out)
{
    struct ck_sha256 *h = calloc(1, sizeof *h);
    if (h == NULL)
        return CAIRN_E_NOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, sha256(), NULL) != 1) {
        ck_sha256_free(h);
        return CAIRN_E_CRYPTO;
    }
    *out = h;
    return 0;
}

int ck_sha256_update(struct ck_sha256 *h, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    return EVP_DigestUpdate(h->ctx, p, n) == 1 ? 0 : CAIRN_E_CRYPTO;
}

int ck_sha256_final(struct ck_sha256 *h, uint8_t out[CK_SHA256_LEN])
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &len) != 1 || len != CK_SHA256_LEN)
        return CAIRN_E_CRYPTO;
    /* Restart so the same context can hash the next input without another
     * allocation (context hashing reuses one per worker thread). */
    if (EVP_DigestInit_ex(h->ctx, sha256(), NULL) != 1)
        return CAIRN_E_CRYPTO;
    return 0;
}

void ck_sha256_free(struct ck_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int ck_sha256(const void *p, size_t n, uint8_t out[CK_SHA256_LEN])
{
    unsigned int len = 0;
    if (EVP_Digest(p, n, out, &len, sha256(), NULL) != 1 ||
        len != CK_SHA256_LEN)
        return CAIRN_E_CRYPTO;
    return 0;
}

void ck_hex_encode(const uint8_t bin[CK_SHA256_LEN],
                   char hex[CK_SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < CK_SHA256_LEN; i++) {
        hex[2 * i] = digits[bin[i] >> 4];
        hex[2 * i + 1] = digits[bin[i] & 0xf];
    }
    hex[CK_SHA256_HEX_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ck_hex_decode(const char *hex, uint8_t bin[CK_SHA256_LEN])
{
    uint8_t tmp[CK_SHA256_LEN];
    for (size_t i = 0; i < CK_SHA256_LEN; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0)
            return CAIRN_E_INVAL;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0)
            return CAIRN_E_INVAL;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[CK_SHA256_HEX_LEN] != '\0')
        return CAIRN_E_INVAL;
    memcpy(bin, tmp, sizeof tmp);
    return 0;
}
