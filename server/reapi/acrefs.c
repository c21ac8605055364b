/* The digests of a serialised ActionResult, read off the wire format
 * (server/reapi/acrefs.h). Reading the wire directly keeps GetActionResult, the
 * hot path, free of protobuf-c's per-submessage allocations. */
#include "server/reapi/acrefs.h"

#include "server/reapi/wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers (proto/build/bazel/remote/execution/v2). */
#define AR_OUTPUT_FILES 2
#define AR_OUTPUT_DIRECTORIES 3
#define AR_STDOUT_DIGEST 6
#define AR_STDERR_DIGEST 8
#define OF_PATH 1
#define OF_DIGEST 2
#define OD_PATH 1
#define OD_TREE_DIGEST 3
#define DG_HASH 1
#define DG_SIZE 2

void cd_acrefs_init(struct cd_acrefs *r)
{
    r->d = r->inline_d;
    r->n = 0;
    r->cap = CD_ACREFS_INLINE;
}

void cd_acrefs_free(struct cd_acrefs *r)
{
    if (r->d != r->inline_d)
        free(r->d);
    cd_acrefs_init(r);
}

static int refs_push(struct cd_acrefs *r, const struct cd_digest *d, struct cairn_err *err)
{
    if (r->n == r->cap) {
        if (r->cap >= CD_ACREFS_MAX)
            return cairn_err_set(err, CAIRN_E_TOOBIG,
                                 "action result references more than %d blobs", CD_ACREFS_MAX);
        size_t cap = r->cap * 4 < CD_ACREFS_MAX ? r->cap * 4 : CD_ACREFS_MAX;
        struct cd_digest *nd = malloc(cap * sizeof *nd);
        if (nd == NULL)
            return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        memcpy(nd, r->d, r->n * sizeof *nd);
        if (r->d != r->inline_d)
            free(r->d);
        r->d = nd;
        r->cap = cap;
    }
    r->d[r->n++] = *d;
    return 0;
}

/* --- the digests in a serialised ActionResult ---------------------------- */

/* A Digest message. Like protobuf, the last occurrence of a field wins. */
static int scan_digest(struct cd_wire w, struct cd_digest *out, struct cairn_err *err)
{
    struct cd_wire hash = {NULL, 0, 0, 0, 0};
    uint64_t size = 0;
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        if (cd_wire_key(&w, &f, &t) != 0)
            goto malformed;
        if (f == DG_HASH && t == CD_WIRE_LEN) {
            if (cd_wire_len(&w, &hash) != 0)
                goto malformed;
        } else if (f == DG_SIZE && t == CD_WIRE_VARINT) {
            if (cd_wire_varint(&w, &size) != 0)
                goto malformed;
        } else if (f == DG_HASH || f == DG_SIZE || cd_wire_skip(&w, t) != 0) {
            goto malformed;
        }
    }
    if (hash.left != CK_SHA256_HEX_LEN)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "digest hash must be %d hex digits (sha256), got %zu characters",
                             CK_SHA256_HEX_LEN, hash.left);
    char hex[CK_SHA256_HEX_LEN + 1];
    if (cd_wire_copy(&hash, hex, CK_SHA256_HEX_LEN) != 0)
        goto malformed;
    hex[CK_SHA256_HEX_LEN] = '\0';
    if (memchr(hex, '\0', CK_SHA256_HEX_LEN) != NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest hash is not hexadecimal");
    return cd_digest_parse(hex, (int64_t)size, out, err);
malformed:
    return cairn_err_set(err, CAIRN_E_INVAL, "malformed Digest");
}

/* An OutputFile (digest field OF_DIGEST) or OutputDirectory (OD_TREE_
 * DIGEST): the one digest it must carry, named by its path in errors. */
static int scan_output(struct cd_wire w, uint32_t digest_field, const char *what,
                       struct cd_acrefs *out, struct cairn_err *err)
{
    struct cd_wire path = {NULL, 0, 0, 0, 0}, dig;
    bool have = false;
    int rc = 0;
    while (rc == 0 && cd_wire_more(&w)) {
        uint32_t f, t;
        if (cd_wire_key(&w, &f, &t) != 0) {
            rc = -1;
        } else if (f == OF_PATH && t == CD_WIRE_LEN) { /* OF_PATH == OD_PATH */
            rc = cd_wire_len(&w, &path);
        } else if (f == digest_field && t == CD_WIRE_LEN) {
            rc = cd_wire_len(&w, &dig);
            have = true;
        } else if (f == OF_PATH || f == digest_field) {
            rc = -1;
        } else {
            rc = cd_wire_skip(&w, t);
        }
    }
    /* The path, for messages only: cut to what a message can hold. */
    char p[200];
    size_t plen = path.left < sizeof p ? path.left : sizeof p - 1;
    if (plen > 0 && cd_wire_copy(&path, p, plen) != 0)
        plen = 0;
    p[plen] = '\0';
    if (rc != 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s '%s' is malformed", what, p);
    struct cd_digest d;
    if (!have)
        rc = cairn_err_set(err, CAIRN_E_INVAL, "digest is missing");
    else
        rc = scan_digest(dig, &d, err);
    if (rc == 0)
        return refs_push(out, &d, err);
    cairn_err_prefix(err, "%s '%s'", what, p);
    return rc;
}

int cd_acrefs_scan(const uint8_t *p, size_t len, struct cd_acrefs *out, struct cairn_err *err)
{
    struct cd_iov one = {p, len};
    struct cd_wire w;
    cd_wire_init(&w, &one, 1);
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        struct cd_wire sub;
        if (cd_wire_key(&w, &f, &t) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
        bool known = f == AR_OUTPUT_FILES || f == AR_OUTPUT_DIRECTORIES ||
                     f == AR_STDOUT_DIGEST || f == AR_STDERR_DIGEST;
        if (!known) {
            if (cd_wire_skip(&w, t) != 0)
                return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
            continue;
        }
        if (t != CD_WIRE_LEN || cd_wire_len(&w, &sub) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
        int rc;
        if (f == AR_OUTPUT_FILES) {
            rc = scan_output(sub, OF_DIGEST, "output file", out, err);
        } else if (f == AR_OUTPUT_DIRECTORIES) {
            rc = scan_output(sub, OD_TREE_DIGEST, "output directory tree", out, err);
        } else {
            struct cd_digest d;
            rc = scan_digest(sub, &d, err);
            if (rc == 0)
                rc = refs_push(out, &d, err);
            else
                cairn_err_prefix(err, "%s", f == AR_STDOUT_DIGEST ? "stdout_digest" : "stderr_digest");
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

