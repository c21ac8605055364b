/* bench_load: load generator for cairnd (driven by bench/load).
 *
 *   bench_load ADDR ac SECONDS CALLERS [THREADS [shared]]
 *                                          GetActionResult rate, p50, p99
 *   bench_load - echo SECONDS CALLERS [THREADS [shared]]
 *                                          same load on an in-process gRPC
 *                                          server that does nothing (ceiling)
 *     THREADS client threads (2), each with its own completion queue and
 *     channel (connection), or one channel for all with "shared"
 *   bench_load ADDR cas SIZE COUNT [READS [SEED]]
 *                                          ByteStream write+read MB/s (the
 *                                          reads READS times, 1 by default);
 *                                          SEED names the blobs (default: the
 *                                          clock), so a second run with the
 *                                          same SEED finds them stored and
 *                                          only reads (for a profiler)
 *   bench_load ADDR small SIZE SECONDS WRITERS [ACKFILE]
 *                                          blobs/s of fresh SIZE-byte blobs,
 *                                          one ByteStream Write each, WRITERS
 *                                          calls in flight (async, as ac);
 *                                          ACKFILE lists the acknowledged ones
 *   bench_load ADDR check SIZE ACKFILE     reads back each blob in ACKFILE
 *                                          (exit 1 if one is missing or bad)
 *   bench_load ADDR batch SIZE PER SECONDS [CALLERS]
 *                                          blobs/s through BatchUpdateBlobs
 *                                          of PER fresh blobs, CALLERS (1)
 *                                          batches in flight
 *   bench_load - tcp SIZE                  loopback TCP copy MB/s (baseline)
 *   bench_load - disk SIZE DIR [STEP]      STEP (16 MiB) write+fdatasync MB/s in DIR
 *
 * Blob contents come from a fast PRNG, streamed: no blob is ever held in
 * memory whole, so multi-GiB blobs measure the server, not this tool.
 * Results are printed as one "key=value ..." line. */
#include "reapi_client.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cachekey/digest.h"
#include "google/bytestream/bytestream.pb-c.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *addr;
/* The AC client's shape (bench_load ... ac SECONDS CALLERS [THREADS
 * [shared]]): threads, and one channel for all of them or one each. */
static int ac_threads = 2;
static bool ac_shared;
static grpc_channel *ac_channel;

/* xorshift64* stream: blob `seed` byte range [pos, pos+n). Deterministic
 * per 8-byte word so any chunking yields the same bytes. */
static void gen(uint64_t seed, uint64_t pos, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = (seed * 0x9E3779B97F4A7C15ull) ^ ((pos + i) >> 3) * 0xD1B54A32D192ED03ull;
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        memcpy(out + i, &x, n - i < 8 ? n - i : 8);
    }
}

static void blob_hash(uint64_t seed, uint64_t size, char hex[65])
{
    struct ck_sha256 *h;
    ck_sha256_new(&h);
    uint8_t *buf = malloc(CHUNK);
    for (uint64_t pos = 0; pos < size; pos += CHUNK) {
        size_t n = size - pos < CHUNK ? (size_t)(size - pos) : CHUNK;
        gen(seed, pos, buf, n);
        ck_sha256_update(h, buf, n);
    }
    uint8_t d[32];
    ck_sha256_final(h, d);
    ck_sha256_free(h);
    ck_hex_encode(d, hex);
    free(buf);
}

static int bs_write(struct rc_conn *c, const char *res, uint64_t seed, uint64_t size)
{
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, 0, c->cq,
                                               grpc_slice_from_static_string("/google.bytestream.ByteStream/Write"),
                                               NULL, rc_deadline(c), NULL);
    grpc_metadata_array md, tmd;
    grpc_metadata_array_init(&md);
    grpc_metadata_array_init(&tmd);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[1].data.recv_status_on_client.status = &code;
    ops[1].data.recv_status_on_client.status_details = &details;
    grpc_call_start_batch(call, &ops[0], 1, (void *)1, NULL);
    rc_wait(c, (void *)1);
    grpc_call_start_batch(call, &ops[1], 1, (void *)9, NULL);
    uint8_t *data = malloc(CHUNK), *msg = malloc(CHUNK + 512);
    uint64_t pos = 0;
    bool ok = true;
    do {
        size_t n = size - pos < CHUNK ? (size_t)(size - pos) : CHUNK;
        gen(seed, pos, data, n);
        Google__Bytestream__WriteRequest wr = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
        wr.resource_name = pos == 0 ? (char *)res : NULL;
        wr.write_offset = (int64_t)pos;
        wr.data.data = data;
        wr.data.len = n;
        pos += n;
        wr.finish_write = pos == size;
        size_t len = protobuf_c_message_pack(&wr.base, msg);
        grpc_slice s = grpc_slice_new(msg, len, free);
        msg = malloc(CHUNK + 512);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        grpc_call_start_batch(call, &op, 1, (void *)2, NULL);
        ok = rc_wait(c, (void *)2);
        grpc_byte_buffer_destroy(bb);
    } while (ok && pos < size);
    grpc_byte_buffer *recv = NULL;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &md;
    ops[2].op = GRPC_OP_RECV_MESSAGE;
    ops[2].data.recv_message.recv_message = &recv;
    grpc_call_start_batch(call, ops, 3, (void *)3, NULL);
    rc_wait(c, (void *)3);
    rc_wait(c, (void *)9);
    if (code != GRPC_STATUS_OK)
        fprintf(stderr, "write %s: status %d %.*s\n", res, (int)code, (int)GRPC_SLICE_LENGTH(details),
                (const char *)GRPC_SLICE_START_PTR(details));
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    free(data);
    free(msg);
    return code == GRPC_STATUS_OK ? 0 : -1;
}

/* --- ac --- */

/* The AC load is asynchronous: ac_threads threads, each with its own
 * completion queue (and channel unless shared), keep CALLERS calls in
 * flight between them.
 * A caller starts its next call as soon as its last one completes, so the
 * rate measures the server, not a thread per caller blocked in pluck. */
#define AC_METHOD "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
/* The method the async load calls (ac, echo: AC_METHOD; small, batch). */
static const char *load_method = AC_METHOD;
/* small/batch: a fresh request per call (NULL: the worker's fixed one). */
static grpc_slice (*load_next_req)(uint64_t *seq);
/* small/batch: blobs in each call, and blobs acknowledged so far (the
 * rate counts these, not the requests made). */
static uint64_t load_blobs_per_call = 1;
static _Atomic uint64_t load_blobs_acked;
/* small with ACKFILE: each blob the server acknowledged, one seq a line. */
static FILE *load_acks;
static pthread_mutex_t load_acks_mu = PTHREAD_MUTEX_INITIALIZER;

struct ac_caller {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code code;
    grpc_slice details;
    double t0;
    uint64_t seq; /* small: the blob this call writes */
    /* small/batch: the request for this caller's next call, built while
     * this one is in flight, so making a request (a batch of 1,000 blobs
     * hashed and packed: ~3 ms) is not on the path of one caller's
     * calls, as it is not for a client that has its blobs at hand. */
    grpc_slice next;
    uint64_t next_seq;
    bool have_next;
};

struct ac_worker {
    pthread_t th;
    double until;
    grpc_slice req; /* shared request bytes (refcounted) */
    int callers;
    double *lat;
    size_t n, cap;
    size_t errors;
};

static void ac_call_start(grpc_channel *ch, void *method, grpc_completion_queue *cq,
                          struct ac_worker *w, struct ac_caller *k)
{
    k->call = grpc_channel_create_registered_call(ch, NULL, 0, cq, method,
                                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&k->init_md);
    grpc_metadata_array_init(&k->trail_md);
    if (load_next_req != NULL) {
        if (!k->have_next)
            k->next = load_next_req(&k->next_seq);
        k->have_next = false;
        k->seq = k->next_seq;
        k->send = grpc_raw_byte_buffer_create(&k->next, 1);
        grpc_slice_unref(k->next);
    } else {
        k->send = grpc_raw_byte_buffer_create(&w->req, 1);
    }
    k->recv = NULL;
    k->code = GRPC_STATUS_UNKNOWN;
    k->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = k->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &k->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &k->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &k->trail_md;
    ops[5].data.recv_status_on_client.status = &k->code;
    ops[5].data.recv_status_on_client.status_details = &k->details;
    k->t0 = now();
    if (grpc_call_start_batch(k->call, ops, 6, k, NULL) != GRPC_CALL_OK) {
        fprintf(stderr, "ac: grpc_call_start_batch failed\n");
        exit(1);
    }
    if (load_next_req != NULL && k->t0 < w->until) {
        k->next = load_next_req(&k->next_seq);
        k->have_next = true;
    }
}

static void ac_call_end(struct ac_caller *k)
{
    if (k->recv)
        grpc_byte_buffer_destroy(k->recv);
    grpc_byte_buffer_destroy(k->send);
    grpc_slice_unref(k->details);
    grpc_metadata_array_destroy(&k->init_md);
    grpc_metadata_array_destroy(&k->trail_md);
    grpc_call_unref(k->call);
}

/* A channel with its own connection (a local subchannel pool). */
static grpc_channel *ac_channel_new(void)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg a = {GRPC_ARG_INTEGER, (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
    grpc_channel_args chargs = {1, &a};
    grpc_channel *ch = grpc_channel_create(addr, creds, &chargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

static void *ac_main(void *arg)
{
    struct ac_worker *w = arg;
    grpc_channel *ch = ac_shared ? ac_channel : ac_channel_new();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    void *method = grpc_channel_register_call(ch, load_method, NULL, NULL);
    struct ac_caller *k = calloc((size_t)w->callers, sizeof *k);
    for (int i = 0; i < w->callers; i++)
        ac_call_start(ch, method, cq, w, &k[i]);
    int live = w->callers;
    while (live > 0) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        struct ac_caller *c = ev.tag;
        double t1 = now();
        bool ok = ev.success && c->code == GRPC_STATUS_OK && c->recv != NULL;
        if (!ok)
            w->errors++;
        else
            atomic_fetch_add(&load_blobs_acked, load_blobs_per_call);
        if (ok && load_acks != NULL) {
            /* Written as soon as the answer is in: what a client could
             * rely on had the server died right after. */
            pthread_mutex_lock(&load_acks_mu);
            fprintf(load_acks, "%llu\n", (unsigned long long)c->seq);
            fflush(load_acks);
            pthread_mutex_unlock(&load_acks_mu);
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 65536;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->n++] = t1 - c->t0;
        ac_call_end(c);
        if (t1 < w->until)
            ac_call_start(ch, method, cq, w, c);
        else
            live--;
    }
    for (int i = 0; i < w->callers; i++)
        if (k[i].have_next)
            grpc_slice_unref(k[i].next);
    free(k);
    if (!ac_shared)
        grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int ac_drive(const char *what, grpc_slice req, double seconds, int callers);

static int run_ac(double seconds, int callers)
{
    /* One small output blob and an action result that references it. */
    struct rc_conn c;
    rc_connect(&c, addr, NULL, NULL, NULL, NULL, NULL);
    char hex[65], res[256];
    blob_hash(7, 1000, hex);
    snprintf(res, sizeof res, "bench/uploads/ac/blobs/%s/1000", hex);
    bs_write(&c, res, 7, 1000);
    Build__Bazel__Remote__Execution__V2__Digest out = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    out.hash = hex;
    out.size_bytes = 1000;
    Build__Bazel__Remote__Execution__V2__OutputFile of = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
    of.path = "layer";
    of.digest = &out;
    Build__Bazel__Remote__Execution__V2__OutputFile *ofs[] = {&of};
    Build__Bazel__Remote__Execution__V2__ActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.n_output_files = 1;
    ar.output_files = ofs;
    char ahex[65];
    blob_hash(8, 64, ahex);
    Build__Bazel__Remote__Execution__V2__Digest act = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    act.hash = ahex;
    act.size_bytes = 64;
    Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest up =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
    up.instance_name = "bench";
    up.action_digest = &act;
    up.action_result = &ar;
    uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(&up.base, buf);
    struct rc_status st;
    if (rc_unary(&c, "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult", buf, len, NULL,
                 NULL, &st) != GRPC_STATUS_OK) {
        fprintf(stderr, "UpdateActionResult: %s\n", st.msg);
        return 1;
    }
    rc_close(&c);
    Build__Bazel__Remote__Execution__V2__GetActionResultRequest get =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
    get.instance_name = "bench";
    get.action_digest = &act;
    len = protobuf_c_message_pack(&get.base, buf);
    grpc_slice req = grpc_slice_from_copied_buffer((const char *)buf, len);
    int rc = ac_drive("ac", req, seconds, callers);
    grpc_slice_unref(req);
    return rc;
}

/* --- echo: the gRPC ceiling for the ac numbers --- */

/* A do-nothing gRPC server in this process (C core, ECHO_THREADS
 * completion queues, the same registered-method setup as cairnd) that
 * answers GetActionResult with a fixed reply. Driven by the same client
 * as "ac", it shows what the gRPC stack alone reaches on this machine at
 * this moment: cairnd's rate is read against it. */
#define ECHO_THREADS 2
#define ECHO_SLOTS 32

struct echo_call {
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload, *send;
    int cancelled;
    bool matched;
};

struct echo_srv {
    grpc_server *srv;
    void *method;
    grpc_slice reply;
    grpc_completion_queue *cq[ECHO_THREADS];
    pthread_t th[ECHO_THREADS];
};

static struct echo_srv echo;

static void echo_post(grpc_completion_queue *cq)
{
    struct echo_call *k = calloc(1, sizeof *k);
    grpc_metadata_array_init(&k->md);
    grpc_server_request_registered_call(echo.srv, echo.method, &k->call, &k->deadline, &k->md,
                                        &k->payload, cq, cq, k);
}

static void *echo_main(void *arg)
{
    grpc_completion_queue *cq = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        struct echo_call *k = ev.tag;
        if (ev.tag == NULL)
            continue;
        if (k->matched || !ev.success) {
            if (k->payload)
                grpc_byte_buffer_destroy(k->payload);
            if (k->send)
                grpc_byte_buffer_destroy(k->send);
            grpc_metadata_array_destroy(&k->md);
            if (k->call)
                grpc_call_unref(k->call);
            free(k);
            continue;
        }
        k->matched = true;
        echo_post(cq);
        k->send = grpc_raw_byte_buffer_create(&echo.reply, 1);
        grpc_slice details = grpc_empty_slice();
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = k->send;
        ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[2].data.send_status_from_server.status_details = &details;
        ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[3].data.recv_close_on_server.cancelled = &k->cancelled;
        grpc_call_start_batch(k->call, ops, 4, k, NULL);
    }
    return NULL;
}

static int run_echo(double seconds, int callers)
{
    echo.srv = grpc_server_create(NULL, NULL);
    echo.method = grpc_server_register_method(echo.srv, AC_METHOD, NULL,
                                              GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    for (int i = 0; i < ECHO_THREADS; i++) {
        echo.cq[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(echo.srv, echo.cq[i], NULL);
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(echo.srv, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    if (port <= 0)
        return 1;
    grpc_server_start(echo.srv);
    /* About the size of the ActionResult cairnd returns in "ac". */
    uint8_t reply[120];
    gen(3, 0, reply, sizeof reply);
    echo.reply = grpc_slice_from_copied_buffer((const char *)reply, sizeof reply);
    for (int i = 0; i < ECHO_THREADS; i++) {
        for (int j = 0; j < ECHO_SLOTS; j++)
            echo_post(echo.cq[i]);
        pthread_create(&echo.th[i], NULL, echo_main, echo.cq[i]);
    }
    char eaddr[64];
    snprintf(eaddr, sizeof eaddr, "127.0.0.1:%d", port);
    addr = eaddr;
    /* Same request bytes as "ac" (the echo server does not parse them). */
    uint8_t req[110];
    gen(4, 0, req, sizeof req);
    grpc_slice rs = grpc_slice_from_copied_buffer((const char *)req, sizeof req);
    int rc = ac_drive("echo", rs, seconds, callers);
    grpc_slice_unref(rs);
    grpc_server_shutdown_and_notify(echo.srv, echo.cq[0], NULL);
    grpc_server_cancel_all_calls(echo.srv);
    grpc_server_destroy(echo.srv);
    for (int i = 0; i < ECHO_THREADS; i++) {
        grpc_completion_queue_shutdown(echo.cq[i]);
        pthread_join(echo.th[i], NULL);
        grpc_completion_queue_destroy(echo.cq[i]);
    }
    grpc_slice_unref(echo.reply);
    return rc;
}

/* Runs the async AC load against addr with request bytes req and prints
 * one result line labelled what. */
static int ac_drive(const char *what, grpc_slice req, double seconds, int callers)
{
    int nthreads = callers < ac_threads ? callers : ac_threads;
    struct ac_worker *w = calloc((size_t)nthreads, sizeof *w);
    if (ac_shared)
        ac_channel = ac_channel_new();
    double t0 = now();
    for (int i = 0; i < nthreads; i++) {
        w[i].until = t0 + seconds;
        w[i].req = req;
        w[i].callers = callers / nthreads + (i < callers % nthreads);
        pthread_create(&w[i].th, NULL, ac_main, &w[i]);
    }
    size_t total = 0, errors = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double elapsed = now() - t0;
    if (ac_shared)
        grpc_channel_destroy(ac_channel);
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < nthreads; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof *all, cmp_double);
    printf("%s callers=%d threads=%d%s calls=%zu errors=%zu rate=%.0f/s p50=%.3fms p99=%.3fms\n",
           what, callers, nthreads, ac_shared ? " shared-channel" : "", total, errors, (double)total / elapsed,
           total ? all[total / 2] * 1e3 : 0, total ? all[total * 99 / 100] * 1e3 : 0);
    free(all);
    free(w);
    return errors ? 1 : 0;
}

/* --- cas --- */

static int run_cas(uint64_t size, int count, int reads, uint64_t seed0)
{
    struct rc_conn c;
    rc_connect(&c, addr, NULL, NULL, NULL, NULL, NULL);
    c.timeout_s = 3600;
    char (*names)[256] = calloc((size_t)count, sizeof *names);
    if (seed0 == 0)
        seed0 = (uint64_t)time(NULL) * 1000;
    for (int i = 0; i < count; i++) {
        char hex[65];
        blob_hash(seed0 + (uint64_t)i, size, hex);
        snprintf(names[i], sizeof names[i], "bench/uploads/x/blobs/%s/%llu", hex, (unsigned long long)size);
    }
    /* Generation costs are part of a client's life too, but not the
     * server's: time the PRNG alone and subtract it. */
    double g0 = now();
    uint8_t *scratch = malloc(CHUNK);
    for (int i = 0; i < count; i++)
        for (uint64_t pos = 0; pos < size; pos += CHUNK)
            gen(seed0 + (uint64_t)i, pos, scratch, size - pos < CHUNK ? (size_t)(size - pos) : CHUNK);
    double gen_s = now() - g0;
    free(scratch);
    double t0 = now();
    int bad = 0;
    for (int i = 0; i < count; i++)
        bad |= bs_write(&c, names[i], seed0 + (uint64_t)i, size);
    double wr = now() - t0 - gen_s;
    double mb = (double)size * count / 1e6;
    if (reads == 0)
        printf("cas size=%llu count=%d write=%.1fMB/s errors=%d\n", (unsigned long long)size,
               count, mb / (wr > 1e-9 ? wr : 1e-9), bad);
    for (int k = 0; k < reads; k++) {
        t0 = now();
        for (int i = 0; i < count; i++) {
            /* read resource: drop "uploads/x/" */
            char rn[256];
            snprintf(rn, sizeof rn, "bench/%s", strstr(names[i], "blobs/"));
            bad |= rc_bs_read(&c, rn) < (int64_t)size;
        }
        double rd = now() - t0;
        if (k == 0)
            printf("cas size=%llu count=%d write=%.1fMB/s read=%.1fMB/s errors=%d\n",
                   (unsigned long long)size, count, mb / (wr > 1e-9 ? wr : 1e-9), mb / rd, bad);
        else
            printf("cas size=%llu count=%d read again=%.1fMB/s errors=%d\n", (unsigned long long)size,
                   count, mb / rd, bad);
        fflush(stdout);
    }
    free(names);
    rc_close(&c);
    return bad ? 1 : 0;
}

/* --- small: many fresh blobs, one Write each; batch: BatchUpdateBlobs --- */

static uint64_t small_size;
static unsigned batch_per;
static _Atomic uint64_t small_seq;
static uint64_t small_seed0;

/* Blob number seq of this run (SIZE bytes, distinct from every other run's
 * by the seed) with its hex digest. */
static void small_blob(uint8_t *buf, char hex[65], uint64_t *seqp)
{
    uint64_t seq = atomic_fetch_add(&small_seq, 1);
    *seqp = seq;
    gen(small_seed0 + seq, 0, buf, (size_t)small_size);
    uint8_t d[32];
    ck_sha256(buf, (size_t)small_size, d);
    ck_hex_encode(d, hex);
}

/* One WriteRequest holding a whole fresh blob (finish_write set). */
static grpc_slice small_req(uint64_t *seq)
{
    uint8_t *data = malloc(small_size ? small_size : 1), *msg = malloc(small_size + 512);
    char hex[65], res[256];
    small_blob(data, hex, seq);
    snprintf(res, sizeof res, "bench/uploads/s/blobs/%s/%llu", hex, (unsigned long long)small_size);
    Google__Bytestream__WriteRequest wr = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
    wr.resource_name = res;
    wr.data.data = data;
    wr.data.len = (size_t)small_size;
    wr.finish_write = 1;
    size_t len = protobuf_c_message_pack(&wr.base, msg);
    free(data);
    return grpc_slice_new(msg, len, free);
}

/* One BatchUpdateBlobsRequest of batch_per fresh blobs. */
static grpc_slice batch_req(uint64_t *seq)
{
    typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request Item;
    typedef Build__Bazel__Remote__Execution__V2__Digest Digest;
    Item *items = calloc(batch_per, sizeof *items);
    Item **ptrs = calloc(batch_per, sizeof *ptrs);
    Digest *ds = calloc(batch_per, sizeof *ds);
    char (*hex)[65] = calloc(batch_per, sizeof *hex);
    uint8_t *data = malloc((size_t)small_size * batch_per + 1);
    for (unsigned i = 0; i < batch_per; i++) {
        uint8_t *p = data + (size_t)small_size * i;
        small_blob(p, hex[i], seq);
        build__bazel__remote__execution__v2__digest__init(&ds[i]);
        ds[i].hash = hex[i];
        ds[i].size_bytes = (int64_t)small_size;
        build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(&items[i]);
        items[i].digest = &ds[i];
        items[i].data.data = p;
        items[i].data.len = (size_t)small_size;
        ptrs[i] = &items[i];
    }
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
    rq.instance_name = "bench";
    rq.n_requests = batch_per;
    rq.requests = ptrs;
    size_t len = protobuf_c_message_get_packed_size(&rq.base);
    uint8_t *msg = malloc(len);
    protobuf_c_message_pack(&rq.base, msg);
    free(data);
    free(hex);
    free(ds);
    free(ptrs);
    free(items);
    return grpc_slice_new(msg, len, free);
}

/* Both print calls/s from ac_drive's line; blobs/s is calls/s times the
 * blobs per call. */
static int run_small(uint64_t size, double seconds, int writers, const char *ackfile)
{
    small_size = size;
    small_seed0 = (uint64_t)time(NULL) << 24;
    if (ackfile != NULL) {
        if ((load_acks = fopen(ackfile, "w")) == NULL)
            return 2;
        fprintf(load_acks, "seed0 %llu\n", (unsigned long long)small_seed0);
        fflush(load_acks);
    }
    load_method = "/google.bytestream.ByteStream/Write";
    load_next_req = small_req;
    grpc_slice none = grpc_empty_slice();
    double t0 = now();
    int rc = ac_drive("small", none, seconds, writers);
    double el = now() - t0;
    uint64_t acked = atomic_load(&load_blobs_acked);
    printf("small size=%llu writers=%d blobs=%llu rate=%.0f blobs/s\n", (unsigned long long)size,
           writers, (unsigned long long)acked, (double)acked / el);
    if (load_acks != NULL)
        fclose(load_acks);
    return rc;
}

/* check SIZE ACKFILE: reads back every blob a "small" run listed as
 * acknowledged, whole, through ByteStream Read (a cairnd hashes a blob
 * on its first read after a restart: a full read is a verified one).
 * Prints how many were checked and missing; exits 1 if any was not
 * read back whole. */
static int run_check(uint64_t size, const char *ackfile)
{
    FILE *f = fopen(ackfile, "r");
    unsigned long long seed0 = 0, seq;
    if (f == NULL || fscanf(f, "seed0 %llu", &seed0) != 1)
        return 2;
    struct rc_conn c;
    rc_connect(&c, addr, NULL, NULL, NULL, NULL, NULL);
    uint8_t *buf = malloc(size ? size : 1);
    unsigned long long n = 0, bad = 0;
    while (fscanf(f, "%llu", &seq) == 1) {
        gen(seed0 + seq, 0, buf, (size_t)size);
        uint8_t d[32];
        char hex[65], rn[256];
        ck_sha256(buf, (size_t)size, d);
        ck_hex_encode(d, hex);
        snprintf(rn, sizeof rn, "bench/blobs/%s/%llu", hex, (unsigned long long)size);
        n++;
        bad += rc_bs_read(&c, rn) < (int64_t)size;
    }
    fclose(f);
    free(buf);
    rc_close(&c);
    printf("check size=%llu acked=%llu missing_or_bad=%llu\n", (unsigned long long)size, n, bad);
    return bad ? 1 : 0;
}

static int run_batch(uint64_t size, unsigned per, double seconds, int callers)
{
    small_size = size;
    batch_per = per;
    small_seed0 = ((uint64_t)time(NULL) << 24) + (1ull << 60);
    load_method = "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs";
    load_next_req = batch_req;
    load_blobs_per_call = per;
    grpc_slice none = grpc_empty_slice();
    double t0 = now();
    int rc = ac_drive("batch", none, seconds, callers);
    double el = now() - t0;
    uint64_t acked = atomic_load(&load_blobs_acked);
    printf("batch size=%llu per=%u callers=%d blobs=%llu rate=%.0f blobs/s\n",
           (unsigned long long)size, per, callers, (unsigned long long)acked, (double)acked / el);
    return rc;
}

/* --- disk baseline --- */

/* Writes size bytes to a new file in dir in step-byte writes (16 MiB),
 * each followed by fdatasync: what the disk under the store gives a
 * durable, batched writer (the ceiling for ByteStream Write), measured in
 * the same run. */
static int run_disk(uint64_t size, const char *dir, size_t step)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-disk-baseline", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 1;
    uint8_t *buf = malloc(step);
    gen(2, 0, buf, step);
    double t0 = now();
    int bad = 0;
    for (uint64_t pos = 0; pos < size && !bad; pos += step) {
        size_t n = size - pos < step ? (size_t)(size - pos) : step;
        bad = fwrite(buf, 1, n, f) != n || fflush(f) != 0 || fdatasync(fileno(f)) != 0;
    }
    double el = now() - t0;
    fclose(f);
    unlink(path);
    free(buf);
    printf("disk size=%llu write+fdatasync(%zuMiB)=%.1fMB/s\n", (unsigned long long)size,
           step >> 20, (double)size / 1e6 / el);
    return bad;
}

/* --- tcp baseline --- */

struct tcp_sink {
    int fd;
    uint64_t got;
};

static void *tcp_sink_main(void *arg)
{
    struct tcp_sink *s = arg;
    uint8_t *buf = malloc(CHUNK);
    ssize_t n;
    while ((n = read(s->fd, buf, CHUNK)) > 0)
        s->got += (uint64_t)n;
    free(buf);
    return NULL;
}

static int run_tcp(uint64_t size)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0)
        return 1;
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cfd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return 1;
    struct tcp_sink sink = {accept(ls, NULL, NULL), 0};
    pthread_t th;
    pthread_create(&th, NULL, tcp_sink_main, &sink);
    uint8_t *buf = malloc(CHUNK);
    gen(1, 0, buf, CHUNK);
    double t0 = now();
    for (uint64_t pos = 0; pos < size; pos += CHUNK) {
        size_t n = size - pos < CHUNK ? (size_t)(size - pos) : CHUNK, off = 0;
        while (off < n) {
            ssize_t w = write(cfd, buf + off, n - off);
            if (w <= 0)
                return 1;
            off += (size_t)w;
        }
    }
    close(cfd);
    pthread_join(th, NULL);
    double el = now() - t0;
    printf("tcp size=%llu copy=%.1fMB/s\n", (unsigned long long)size, (double)sink.got / 1e6 / el);
    close(sink.fd);
    close(ls);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_load ADDR ac SECONDS CALLERS | - echo SECONDS CALLERS | "
                        "ADDR cas SIZE COUNT | - tcp SIZE | - disk SIZE DIR\n");
        return 2;
    }
    addr = argv[1];
    if ((!strcmp(argv[2], "ac") || !strcmp(argv[2], "echo")) && argc > 5) {
        ac_threads = (int)strtol(argv[5], NULL, 10);
        ac_shared = argc > 6 && !strcmp(argv[6], "shared");
        if (ac_threads < 1 || ac_threads > 64) {
            fprintf(stderr, "bench_load: THREADS must be 1..64\n");
            return 2;
        }
    }
    grpc_init();
    int rc = 2;
    if (!strcmp(argv[2], "ac") && argc > 4)
        rc = run_ac(strtod(argv[3], NULL), (int)strtol(argv[4], NULL, 10));
    else if (!strcmp(argv[2], "echo") && argc > 4)
        rc = run_echo(strtod(argv[3], NULL), (int)strtol(argv[4], NULL, 10));
    else if (!strcmp(argv[2], "small") && argc > 5)
        rc = run_small(strtoull(argv[3], NULL, 10), strtod(argv[4], NULL),
                       (int)strtol(argv[5], NULL, 10), argc > 6 ? argv[6] : NULL);
    else if (!strcmp(argv[2], "check") && argc > 4)
        rc = run_check(strtoull(argv[3], NULL, 10), argv[4]);
    else if (!strcmp(argv[2], "batch") && argc > 5)
        rc = run_batch(strtoull(argv[3], NULL, 10), (unsigned)strtoul(argv[4], NULL, 10),
                       strtod(argv[5], NULL), argc > 6 ? (int)strtol(argv[6], NULL, 10) : 1);
    else if (!strcmp(argv[2], "cas") && argc > 4)
        rc = run_cas(strtoull(argv[3], NULL, 10), (int)strtol(argv[4], NULL, 10),
                     argc > 5 ? (int)strtol(argv[5], NULL, 10) : 1,
                     argc > 6 ? strtoull(argv[6], NULL, 10) : 0);
    else if (!strcmp(argv[2], "disk") && argc > 4)
        rc = run_disk(strtoull(argv[3], NULL, 10), argv[4],
                      argc > 5 ? (size_t)strtoull(argv[5], NULL, 10) : 16u << 20);
    else if (!strcmp(argv[2], "tcp"))
        rc = run_tcp(strtoull(argv[3], NULL, 10));
    grpc_shutdown();
    return rc;
}
