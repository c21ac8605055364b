#include "server/reapi/reapi.h"

#include "server/telemetry/log.h"
#include "server/reapi/resource.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_pb_digest_err(const PbDigest *pb, struct cd_digest *d, struct cairn_err *err)
{
    if (pb == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest is missing");
    return cd_digest_parse(pb->hash, pb->size_bytes, d, err);
}

int cd_pb_digest(const PbDigest *pb, const char *what, struct cd_digest *d,
                 struct cd_reply *r)
{
    struct cairn_err err;
    int rc = cd_pb_digest_err(pb, d, &err);
    if (rc != 0)
        return cd_reply_fail(r, rc, "%s: %s", what, err.msg);
    return 0;
}

void cd_pb_digest_set(PbDigest *pb, const struct cd_digest *d, char *hex)
{
    ck_hex_encode(d->hash, hex);
    pb->hash = hex;
    pb->size_bytes = d->size;
}

int cd_pb_pack(const ProtobufCMessage *m, struct cd_reply *r)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    /* malloc(0) may return NULL; always allocate at least one byte. */
    uint8_t *out = malloc(len ? len : 1);
    if (out == NULL)
        return cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory packing the response");
    protobuf_c_message_pack(m, out);
    r->out = out;
    r->out_len = len;
    return 0;
}

int cd_pb_malformed(struct cd_reply *r, const char *what)
{
    return cd_reply_fail(r, CAIRN_E_PARSE, "malformed %s: not a valid protobuf message", what);
}

int cd_pb_request_check(const char *instance, int digest_function, struct cd_reply *r)
{
    struct cairn_err err;
    int rc = cd_instance_check(instance, &err);
    if (rc == 0)
        rc = cd_digest_function_check(digest_function, &err);
    if (rc != 0)
        return cd_reply_fail(r, rc, "%s", err.msg);
    return 0;
}

void cd_corrupt_report(const char *instance, const struct cd_digest *d, char *msg, size_t cap)
{
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(d->hash, hex);
    cd_log(CD_LOG_WARN, "blob %s%s%s/%lld is corrupt in the store (its bytes do not hash to its "
           "digest): quarantined, it reads as missing until uploaded again",
           instance, instance[0] ? "/" : "", hex, (long long)d->size);
    snprintf(msg, cap, "blob %s/%lld is corrupt in the server's store (its bytes do not hash "
             "to the digest); the server removed it, upload it again", hex, (long long)d->size);
}

static int has_nul(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    return memchr(p, '\0', n) != NULL;
}

int cd_request_strings_check(const ProtobufCMessageDescriptor *d, const struct cd_req *req,
                             struct cd_reply *r)
{
    struct cd_iov one = {req->data, req->len};
    struct cd_wire w, v;
    cd_wire_init(&w, &one, 1);
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        /* Malformed bytes stop the walk; the handler's unpack refuses
         * them with the usual message. */
        if (cd_wire_key(&w, &f, &t) != 0)
            return 0;
        if (t != CD_WIRE_LEN) {
            if (cd_wire_skip(&w, t) != 0)
                return 0;
            continue;
        }
        if (cd_wire_len(&w, &v) != 0)
            return 0;
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f);
        if (fd != NULL && fd->type == PROTOBUF_C_TYPE_STRING && cd_wire_each(v, has_nul, NULL))
            return cd_reply_fail(r, CAIRN_E_PARSE, "malformed %s: NUL byte in %s",
                                 d->short_name, fd->name);
    }
    return 0;
}
