/* Image references as Docker parses them (distribution's reference
 * package, "normalized named" form):
 *
 *   [HOST[:PORT]/]PATH[:TAG][@ALGO:HEX]
 *
 * The first component of PATH is a host when more components follow and
 * it holds a '.' or a ':' or is "localhost"; otherwise the host is
 * docker.io (index.docker.io too), whose one-component names live under
 * "library/". Path components are [a-z0-9]+ joined by ".", "_", "__" or
 * runs of "-"; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; the whole name
 * (host/path) is at most 255 characters. Digests must be sha256 with 64
 * lowercase hex digits (other algorithms parse but are refused as
 * unsupported). A reference with neither tag nor digest means ":latest".
 *
 * Plain data, no allocation; thread-safe.
 */
#ifndef CAIRN_CLIENT_REGISTRY_REF_H
#define CAIRN_CLIENT_REGISTRY_REF_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define CAIRN_REG_NAME_MAX 255 /* host + "/" + path */
#define CAIRN_REG_TAG_MAX 128
#define CAIRN_REG_DIGEST_MAX 71 /* "sha256:" + 64 */

struct cairn_reg_ref {
    char host[CAIRN_REG_NAME_MAX + 1];     /* "docker.io", "127.0.0.1:5000" */
    char path[CAIRN_REG_NAME_MAX + 1];     /* "library/busybox" */
    char tag[CAIRN_REG_TAG_MAX + 1];       /* "latest" when neither given */
    char digest[CAIRN_REG_DIGEST_MAX + 1]; /* "" when not given */
};

/* Parses s. 0 and *out filled; CAIRN_E_INVAL with Docker's wording
 * ("invalid reference format", "... repository name must be lowercase")
 * for a malformed reference, CAIRN_E_UNSUPPORTED for a digest algorithm
 * other than sha256. */
int cairn_reg_ref_parse(const char *s, struct cairn_reg_ref *out,
                        struct cairn_err *err);

/* The host the registry API is reached at: docker.io's is
 * registry-1.docker.io, every other is r->host. Borrowed from r or
 * static. */
const char *cairn_reg_ref_api_host(const struct cairn_reg_ref *r);

/* The repository as Docker shows it: "busybox" for
 * docker.io/library/busybox, "user/x" for docker.io/user/x, else
 * "host/path". With_tag appends ":TAG" (the store's tag form). Returns 0,
 * or CAIRN_E_TOOBIG when len is too small. */
int cairn_reg_ref_familiar(const struct cairn_reg_ref *r, bool with_tag,
                           char *buf, size_t len);

/* "host/path:tag", "host/path@digest" or "host/path:tag@digest": the
 * full form, for messages. Truncates to len. */
void cairn_reg_ref_format(const struct cairn_reg_ref *r, char *buf, size_t len);

/* True when host[:port] is a loopback registry (127.0.0.0/8, [::1],
 * localhost), which Docker reaches over plain HTTP when TLS fails. */
bool cairn_reg_host_is_loopback(const char *host);

#endif
