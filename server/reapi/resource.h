/* Names that arrive off the wire: digests, instance names and ByteStream
 * resource names. Every check that turns a client's string into something
 * the store trusts lives here, so the rules are the same for every RPC.
 * Pure functions, thread-safe; unit-tested in tests/unit/server/reapi/test_resource.c. */
#ifndef CAIRN_SERVER_RESOURCE_H
#define CAIRN_SERVER_RESOURCE_H

#include "common/error.h"
#include "server/store/store.h"

#include <stddef.h>
#include <stdint.h>

/* Largest blob size a digest may claim. Beyond this a size is treated as
 * garbage (INVALID_ARGUMENT) rather than as "store full". 1 TiB. */
#define CD_MAX_BLOB_SIZE (INT64_C(1) << 40)
/* Longest resource name accepted (instance + uuid + digest + metadata). */
#define CD_MAX_RESOURCE_NAME 2048

/* Checks a wire digest (hex string + size) and converts it. Returns 0 or
 * CAIRN_E_INVAL with err saying which part is wrong; *out only on success.
 * hash may be NULL (treated as empty). */
int cd_digest_parse(const char *hash, int64_t size, struct cd_digest *out,
                    struct cairn_err *err);

/* Writes "hash/size" into buf (at least 90 bytes) for messages and logs. */
void cd_digest_format(const struct cd_digest *d, char *buf, size_t len);

/* The bytes an instance name may hold: printable ASCII without the space
 * (0x21 '!' to 0x7e '~'), '/' separating path segments. */
#define CD_INSTANCE_BYTE_MIN 0x21
#define CD_INSTANCE_BYTE_MAX 0x7e

/* Checks an instance name: at most CD_STORE_MAX_INSTANCE - 1 bytes, each
 * from CD_INSTANCE_BYTE_MIN to CD_INSTANCE_BYTE_MAX (no NUL, control
 * character, space or non-ASCII byte), no empty, "." or ".." path
 * segments and no reserved ones ("blobs", "uploads", ...). NULL is the
 * empty instance. Returns 0 or CAIRN_E_INVAL (err names the byte or the
 * segment). */
int cd_instance_check(const char *instance, struct cairn_err *err);

/* The digest_function field of a request: 0 (unset) and SHA256 are
 * accepted; anything else is CAIRN_E_INVAL ("unknown digest function"). */
int cd_digest_function_check(int value, struct cairn_err *err);

/* A parsed ByteStream resource name. */
struct cd_resource {
    char instance[CD_STORE_MAX_INSTANCE];
    struct cd_digest digest;
};

/* "[instance/]blobs/{hash}/{size}". Returns 0, CAIRN_E_INVAL (malformed:
 * extra or missing segments, bad hash or size), CAIRN_E_UNSUPPORTED
 * (compressed-blobs or a digest function other than sha256). */
int cd_resource_parse_read(const char *name, struct cd_resource *out,
                           struct cairn_err *err);
/* "[instance/]uploads/{uuid}/blobs/{hash}/{size}[/metadata...]", same
 * results as cd_resource_parse_read. */
int cd_resource_parse_write(const char *name, struct cd_resource *out,
                            struct cairn_err *err);

#endif
