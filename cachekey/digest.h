/* SHA-256 digests: one-shot, streaming, and hex conversion.
 *
 * Thin wrapper over OpenSSL's EVP interface (which uses the CPU's SHA
 * extensions when present). All functions are thread-safe; a
 * struct ck_sha256 belongs to one thread at a time.
 */
#ifndef CAIRN_CACHEKEY_DIGEST_H
#define CAIRN_CACHEKEY_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define CK_SHA256_LEN 32
#define CK_SHA256_HEX_LEN 64

/* A streaming hash. Opaque to callers; create with ck_sha256_new. */
struct ck_sha256;

/* Allocates and starts a hash. Returns 0, CAIRN_E_NOMEM or CAIRN_E_CRYPTO. */
int ck_sha256_new(struct ck_sha256 **out);
/* Feeds n bytes. Returns 0 or CAIRN_E_CRYPTO. */
int ck_sha256_update(struct ck_sha256 *h, const void *p, size_t n);
/* Writes the 32-byte digest and restarts h for reuse. Returns 0 or
 * CAIRN_E_CRYPTO. */
int ck_sha256_final(struct ck_sha256 *h, uint8_t out[CK_SHA256_LEN]);
/* Frees h. Accepts NULL. */
void ck_sha256_free(struct ck_sha256 *h);

/* One-shot digest of n bytes. Returns 0 or CAIRN_E_CRYPTO. */
int ck_sha256(const void *p, size_t n, uint8_t out[CK_SHA256_LEN]);

/* Writes 64 lowercase hex digits and a NUL into hex (65 bytes). */
void ck_hex_encode(const uint8_t bin[CK_SHA256_LEN],
                   char hex[CK_SHA256_HEX_LEN + 1]);

/* Parses exactly 64 hex digits (either case). Returns 0 or CAIRN_E_INVAL;
 * bin is written only on success. */
int ck_hex_decode(const char *hex, uint8_t bin[CK_SHA256_LEN]);

#endif
