/* A minimal blocking REAPI client on the gRPC C core, shared by the test
 * probe (bench/reapi_probe.c) and the load generator (bench/load.c). It is
 * a header of static functions because every bench/<name>.c is built as
 * its own executable. One struct rc_conn per thread. */
#ifndef CAIRN_BENCH_REAPI_CLIENT_H
#define CAIRN_BENCH_REAPI_CLIENT_H

#include "google/bytestream/bytestream.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rc_conn {
    grpc_channel *ch;
    grpc_completion_queue *cq; /* pluck queue for this thread's calls */
    grpc_metadata md[2]; /* authorization, and a second one for tests */
    size_t n_md;
    double timeout_s;
};

struct rc_status {
    grpc_status_code code;
    char msg[1024];
};

static char *rc_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

/* ca NULL: plaintext. cert/key: client certificate for mutual TLS. */
static int rc_connect(struct rc_conn *c, const char *addr, const char *ca, const char *cert,
                      const char *key, const char *token, const char *server_name)
{
    memset(c, 0, sizeof *c);
    c->timeout_s = 60;
    grpc_channel_credentials *creds;
    char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
    if (ca != NULL) {
        ca_pem = rc_read_file(ca, NULL);
        if (ca_pem == NULL)
            return -1;
        grpc_ssl_pem_key_cert_pair pair = {NULL, NULL};
        if (cert && key) {
            cert_pem = rc_read_file(cert, NULL);
            key_pem = rc_read_file(key, NULL);
            pair.cert_chain = cert_pem;
            pair.private_key = key_pem;
        }
        creds = grpc_ssl_credentials_create(ca_pem, cert_pem ? &pair : NULL, NULL, NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[3];
    size_t n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = 64 << 20;
    /* Every channel its own connection (load generator threads). */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[n++].value.integer = 1;
    if (server_name) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n++].value.string = (char *)server_name;
    }
    grpc_channel_args chargs = {n, args};
    c->ch = grpc_channel_create(addr, creds, &chargs);
    grpc_channel_credentials_release(creds);
    free(ca_pem);
    free(cert_pem);
    free(key_pem);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (token) {
        char v[1100];
        snprintf(v, sizeof v, "Bearer %s", token);
        c->md[0].key = grpc_slice_from_static_string("authorization");
        c->md[0].value = grpc_slice_from_copied_string(v);
        c->n_md = 1;
    }
    return 0;
}

static void rc_close(struct rc_conn *c)
{
    for (size_t i = 0; i < c->n_md; i++)
        grpc_slice_unref(c->md[i].value);
    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
}

static gpr_timespec rc_deadline(const struct rc_conn *c)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                        gpr_time_from_millis((int64_t)(c->timeout_s * 1000), GPR_TIMESPAN));
}

static bool rc_wait(struct rc_conn *c, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static grpc_byte_buffer *rc_buffer(const void *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer(p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static uint8_t *rc_flatten(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, bb);
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    *len = GRPC_SLICE_LENGTH(s);
    uint8_t *out = malloc(*len + 1);
    memcpy(out, GRPC_SLICE_START_PTR(s), *len);
    grpc_slice_unref(s);
    return out;
}

static void rc_status_set(struct rc_status *st, grpc_status_code code, grpc_slice details)
{
    st->code = code;
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= sizeof st->msg)
        n = sizeof st->msg - 1;
    memcpy(st->msg, GRPC_SLICE_START_PTR(details), n);
    st->msg[n] = '\0';
}

/* One unary call. *resp (malloc'd) is set on OK. Returns the status code. */
static grpc_status_code rc_unary(struct rc_conn *c, const char *method, const void *req,
                                 size_t len, uint8_t **resp, size_t *rlen, struct rc_status *st)
{
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, 0, c->cq,
                                               grpc_slice_from_static_string(method), NULL,
                                               rc_deadline(c), NULL);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_byte_buffer *send = rc_buffer(req, len), *recv = NULL;
    grpc_slice details = grpc_empty_slice();
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    grpc_call_start_batch(call, ops, 6, (void *)1, NULL);
    rc_wait(c, (void *)1);
    rc_status_set(st, code, details);
    if (code == GRPC_STATUS_OK && recv != NULL && resp != NULL)
        *resp = rc_flatten(recv, rlen);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    return code;
}

/* One ByteStream Read of resource res to its end, the messages dropped.
 * Returns the bytes received (framing included), -1 on error. Inline: not
 * every tool that includes this header reads. */
static inline int64_t rc_bs_read(struct rc_conn *c, const char *res)
{
    Google__Bytestream__ReadRequest rq = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
    rq.resource_name = (char *)res;
    uint8_t req[1024];
    size_t len = protobuf_c_message_pack(&rq.base, req);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, 0, c->cq,
                                               grpc_slice_from_static_string("/google.bytestream.ByteStream/Read"),
                                               NULL, rc_deadline(c), NULL);
    grpc_metadata_array md, tmd;
    grpc_metadata_array_init(&md);
    grpc_metadata_array_init(&tmd);
    grpc_byte_buffer *send = rc_buffer(req, len), *recv = NULL;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md;
    grpc_call_start_batch(call, ops, 4, (void *)1, NULL);
    rc_wait(c, (void *)1);
    int64_t total = 0;
    for (;;) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        grpc_call_start_batch(call, &op, 1, (void *)2, NULL);
        if (!rc_wait(c, (void *)2) || recv == NULL)
            break;
        total += (int64_t)grpc_byte_buffer_length(recv);
        grpc_byte_buffer_destroy(recv);
        recv = NULL;
    }
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &tmd;
    op.data.recv_status_on_client.status = &code;
    op.data.recv_status_on_client.status_details = &details;
    grpc_call_start_batch(call, &op, 1, (void *)3, NULL);
    rc_wait(c, (void *)3);
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&md);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    return code == GRPC_STATUS_OK ? total : -1;
}

#endif
