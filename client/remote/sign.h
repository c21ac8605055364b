/* Signed cache entries (issue 15, docs/security.md "Signed cache
 * entries"): Ed25519 keys through OpenSSL's EVP API, the canonical bytes
 * an entry's signature covers, and the check a trusting reader makes.
 *
 * An entry is an ActionResult (client/remote/remote.h) stored under an
 * action digest in an instance. What it asserts is everything cairn reads
 * from it, so the signed message is made generically from the result:
 *
 *   field("cairn.sig.v1") field(instance) field(action hash)
 *   field(action size) field(exit code) field(number of files)
 *   per output file, in byte order of path:
 *     field(path) field(digest hash) field(digest size)
 *     field(number of cairn.* properties)
 *     per cairn.* property but the signature's own, in byte order of name:
 *       field(name) field(value)
 *
 * where a field is cachekey/field.h's (a 64-bit big-endian length, then
 * the bytes) and numbers are written in decimal. A new kind of entry
 * (more files, more cairn.* properties) is covered without a change here.
 * Properties outside "cairn." are not covered: cairn never reads them,
 * and a server may add its own.
 *
 * The signature travels as two node properties of the first output file
 * (in path order): "cairn.sig", the 64-byte signature in base64, and
 * "cairn.sig.key", the signing key's id. Any REAPI server keeps them.
 *
 * Keys: a private key is a PKCS#8 PEM file (mode 0600); a public key is
 * written "ed25519:<base64 of the 32 raw bytes>"; a key's id is the first
 * 8 bytes of sha256 of the raw public key, in hex.
 *
 * Thread-safety: a struct cairn_sign_key is used by one thread at a time;
 * public keys are plain values, and verify may run on many threads.
 */
#ifndef CAIRN_CLIENT_SIGN_H
#define CAIRN_CLIENT_SIGN_H

#include "client/remote/remote.h"
#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_SIGN_PUB_LEN 32
#define CAIRN_SIGN_SIG_LEN 64
#define CAIRN_SIGN_ID_LEN 16 /* hex digits */
/* "ed25519:" and 44 base64 characters. */
#define CAIRN_SIGN_PUB_TEXT_LEN 52
/* The node properties that carry a signature. */
#define CAIRN_SIGN_PROP "cairn.sig"
#define CAIRN_SIGN_PROP_KEY "cairn.sig.key"
/* Largest key file read (a PEM Ed25519 key is about 120 bytes). */
#define CAIRN_SIGN_MAX_KEY_FILE 16384

struct cairn_sign_pub {
    uint8_t raw[CAIRN_SIGN_PUB_LEN];
    char id[CAIRN_SIGN_ID_LEN + 1];
};

/* A private key. Opaque; freed with cairn_sign_key_free. */
struct cairn_sign_key;

/* Makes a new key (EVP_PKEY_keygen, EVP_PKEY_ED25519). */
int cairn_sign_key_generate(struct cairn_sign_key **out,
                            struct cairn_err *err);
/* Reads a PKCS#8 PEM Ed25519 private key from path (at most
 * CAIRN_SIGN_MAX_KEY_FILE bytes; an encrypted key is refused, never
 * prompted for). Errors name the path and what was wrong. */
int cairn_sign_key_load(const char *path, struct cairn_sign_key **out,
                        struct cairn_err *err);
/* Writes k as PKCS#8 PEM to a new file path, mode 0600 (CAIRN_E_EXISTS
 * when path exists: a key is never overwritten), or to stdout for "-". */
int cairn_sign_key_save(const struct cairn_sign_key *k, const char *path,
                        struct cairn_err *err);
/* Accepts NULL. */
void cairn_sign_key_free(struct cairn_sign_key *k);
/* k's public half. */
void cairn_sign_key_public(const struct cairn_sign_key *k,
                           struct cairn_sign_pub *out);

/* "ed25519:<base64>" (strict: 32 bytes, canonical padding) to a key;
 * CAIRN_E_INVAL with a sentence otherwise. */
int cairn_sign_pub_parse(const char *text, struct cairn_sign_pub *out,
                         struct cairn_err *err);
/* Writes the "ed25519:..." form into buf (CAIRN_SIGN_PUB_TEXT_LEN + 1
 * bytes at least). */
void cairn_sign_pub_format(const struct cairn_sign_pub *p, char *buf,
                           size_t n);

/* A "trust" setting: "SCOPE KEY", SCOPE being a cache URL
 * (grpc[s]://host:port[/instance]), an instance name ("main" or "/main")
 * or "*" (every cache). Fills scope and *key. */
int cairn_sign_trust_parse(const char *entry, char *scope, size_t slen,
                           struct cairn_sign_pub *key, struct cairn_err *err);
/* Whether a trust scope covers the endpoint url, whose instance is
 * instance (as cairn_cache_url_parse gives it). */
bool cairn_sign_trust_covers(const char *scope, const char *url,
                             const char *instance);

/* Appends the canonical message of (instance, action, res) to out (see
 * the top of this file). CAIRN_E_CORRUPT for a result that has two files
 * of one path or a file with two cairn.* properties of one name (which
 * one a reader used would be ambiguous). */
int cairn_sign_message(const char *instance,
                       const struct cairn_remote_digest *action,
                       const struct cairn_remote_result *res,
                       struct cairn_buf *out);

/* Signs res for (instance, action) and adds the two signature
 * properties to its first file, in name order (an old signature is
 * replaced). CAIRN_E_TOOBIG when the file has no room for them. */
int cairn_sign_result(struct cairn_sign_key *k, const char *instance,
                      const struct cairn_remote_digest *action,
                      struct cairn_remote_result *res, struct cairn_err *err);

/* Checks that res carries a signature for (instance, action) by one of
 * the n trusted keys. CAIRN_E_CRYPTO with a sentence for the user when it
 * does not: "not signed", "signed by key ID, which is not trusted here",
 * "truncated or malformed signature", "bad signature (changed after
 * signing, or signed for another instance or step)". */
int cairn_sign_result_verify(const struct cairn_sign_pub *keys, size_t n,
                             const char *instance,
                             const struct cairn_remote_digest *action,
                             const struct cairn_remote_result *res,
                             struct cairn_err *err);

#endif
