/* cairnd: the REAPI v2 cache server. Parses the command line, opens the
 * store, starts the gRPC workers, and then the main thread only waits for
 * signals and runs the periodic jobs (upload expiry, store maintenance,
 * the summary line). SIGTERM/SIGINT drain: health turns NOT_SERVING (for
 * --shutdown-delay everything else is still served), then new calls are
 * refused, calls in flight finish (up to --drain-timeout), and the process
 * exits 0. */
#include "cachekey/key.h"
#include "server/reapi/auth.h"
#include "server/reapi/claimtab.h"
#include "server/config.h"
#include "server/grpc/metrics_http.h"
#include "server/telemetry/expo.h"
#include "server/telemetry/log.h"
#include "server/telemetry/metrics.h"
#include "server/telemetry/process.h"
#include "server/grpc/relay.h"
#include "server/grpc/rpc.h"
#include "server/s3/s3.h"
#include "server/store/store.h"
#include "server/grpc/tls.h"
#include "server/store/uploads.h"

#include <ctype.h>
#include <errno.h>
#include <grpc/grpc.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

/* Reads a whole PEM file (capped: certificates are small). */
#define MAX_PEM (1u << 20)

static char *read_pem(const char *path, struct cairn_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, MAX_PEM + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > MAX_PEM || n == 0) {
        cairn_err_set(err, CAIRN_E_INVAL, "%s: empty, unreadable or larger than %u bytes",
                      path, MAX_PEM);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static void log_summary(const char *when, struct cd_metrics *m, struct cd_store *st)
{
    struct cd_store_stats ss;
    cd_store_stats_get(st, &ss);
    cd_log(CD_LOG_INFO,
           "summary (%s): requests=%llu errors=%llu ac_hits=%llu ac_misses=%llu "
           "bytes_in=%llu bytes_out=%llu blobs=%llu stored_bytes=%llu/%llu evictions=%llu "
           "quarantined=%llu",
           when, (unsigned long long)atomic_load(&m->requests),
           (unsigned long long)atomic_load(&m->errors), (unsigned long long)atomic_load(&m->ac_hits),
           (unsigned long long)atomic_load(&m->ac_misses),
           (unsigned long long)atomic_load(&m->bytes_in),
           (unsigned long long)atomic_load(&m->bytes_out), (unsigned long long)ss.blobs,
           (unsigned long long)ss.bytes, (unsigned long long)ss.max_size,
           (unsigned long long)ss.evictions, (unsigned long long)ss.quarantined);
    if (ss.tier_puts + ss.tier_fills + ss.tier_heads + ss.tier_errors > 0)
        cd_log(CD_LOG_INFO,
               "bucket (%s): puts=%llu put_bytes=%llu fills=%llu fill_bytes=%llu ac_fills=%llu "
               "heads=%llu negative_hits=%llu errors=%llu corrupt=%llu shared_reads=%llu",
               when, (unsigned long long)ss.tier_puts, (unsigned long long)ss.tier_put_bytes,
               (unsigned long long)ss.tier_fills, (unsigned long long)ss.tier_fill_bytes,
               (unsigned long long)ss.tier_ac_fills, (unsigned long long)ss.tier_heads,
               (unsigned long long)ss.tier_neg_hits, (unsigned long long)ss.tier_errors,
               (unsigned long long)ss.tier_corrupt, (unsigned long long)ss.tier_shared);
}

static void print_bad(void *ctx, const char *instance, const struct cd_digest *d)
{
    (void)ctx;
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(d->hash, hex);
    printf("corrupt: %s%s%s/%lld (quarantined)\n", instance, instance[0] ? "/" : "", hex,
           (long long)d->size);
}

/* cairnd --verify: hashes every blob in cfg->dir and quarantines the
 * corrupt ones. Opened with opts.scrub, so it may run beside a server on
 * the same directory (docs/operations.md). Returns the exit status: 0
 * all good, 1 some were corrupt, 2 the walk failed. */
static int verify_main(const struct cd_config *cfg)
{
    struct cairn_err err = {0};
    struct cd_store *store = NULL;
    /* Opening would create an empty store: a mistyped path must not pass
     * as a clean one. */
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", cfg->dir);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cairnd: --verify: no store in %s (%s)\n", cfg->dir, strerror(errno));
        return 2;
    }
    struct cd_store_opts so = {.dir = cfg->dir, .upload_ttl_s = cfg->upload_ttl_s, .scrub = true};
    if (cd_store_open(&so, &store, &err) != 0) {
        fprintf(stderr, "cairnd: store %s: %s\n", cfg->dir, err.msg);
        return 2;
    }
    struct cd_store_scrub_stats sum;
    int rc = cd_store_scrub(store, print_bad, NULL, &sum);
    cd_store_close(store);
    if (rc != 0) {
        fprintf(stderr, "cairnd: --verify %s: %s\n", cfg->dir, cairn_strerror(rc));
        return 2;
    }
    printf("verified %llu blobs (%llu bytes): %llu corrupt (%llu bytes) quarantined\n",
           (unsigned long long)sum.blobs, (unsigned long long)sum.bytes,
           (unsigned long long)sum.bad, (unsigned long long)sum.bad_bytes);
    return sum.bad != 0 ? 1 : 0;
}

/* glibc gives memory above its trim threshold back to the kernel on every
 * free, and its threshold follows the largest recent mmap'd block (about
 * 2 MiB here). A staging transaction allocates and frees a batch of LMDB
 * dirty pages (1 MiB overflow pages, stage_batch bytes) and a Read
 * message 1 MiB, so each batch was faulted in and zeroed again: a third
 * of cairnd's CPU per 256 MiB written and read back (docs/operations.md).
 * Fixed thresholds keep up to two batches of freed memory per arena for
 * reuse (at most 32 MiB, for the memory budget); blocks above 4 MiB are
 * still mmap'd and returned at once. */
static void malloc_tune(uint64_t stage_batch)
{
    uint64_t keep = 2 * stage_batch < (32u << 20) ? 2 * stage_batch : (32u << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, (int)keep);
}

/* Prints the bound address the way tests and scripts read it:
 * "WHAT HOST:PORT" (HOST as given, e.g. 127.0.0.1 or [::1]). */
static void print_bound(const char *what, const char *listen, int port)
{
    const char *colon = strrchr(listen, ':');
    int hostlen = colon ? (int)(colon - listen) : (int)strlen(listen);
    printf("%s %.*s:%d\n", what, hostlen, listen, port);
    fflush(stdout);
}

/* What a scrape reads: the counters, the store's totals and /proc. */
struct scrape {
    struct cd_metrics *m;
    struct cd_store *store;
    bool bucket; /* --backend */
};

/* cd_metrics_render_fn: every input is read without a lock a call
 * waits on (atomics; cd_store_stats_get's own read txn). */
static int scrape_render(void *ctx, struct cairn_buf *out)
{
    struct scrape *sc = ctx;
    struct cd_expo_info info = {.version = CAIRN_VERSION, .key_scheme = CK_KEY_VERSION,
                                .grpc_version = grpc_version_string()};
    struct cd_store_stats ss;
    cd_store_stats_get(sc->store, &ss);
    info.store = true;
    info.store_bytes = ss.bytes;
    info.store_limit = ss.max_size;
    info.store_blobs = ss.blobs;
    info.store_ac_entries = ss.ac_entries;
    info.store_ac_bytes = ss.ac_bytes;
    info.evictions = ss.evictions;
    info.evicted_bytes = ss.evicted_bytes;
    info.quarantined = ss.quarantined;
    info.quarantined_bytes = ss.quarantined_bytes;
    info.pending_uploads = ss.pending_uploads;
    info.bucket = sc->bucket;
    info.bucket_puts = ss.tier_puts;
    info.bucket_put_bytes = ss.tier_put_bytes;
    info.bucket_fills = ss.tier_fills;
    info.bucket_fill_bytes = ss.tier_fill_bytes;
    info.bucket_ac_fills = ss.tier_ac_fills;
    info.bucket_heads = ss.tier_heads;
    info.bucket_neg_hits = ss.tier_neg_hits;
    info.bucket_errors = ss.tier_errors;
    info.bucket_corrupt = ss.tier_corrupt;
    info.bucket_shared = ss.tier_shared;
    (void)cd_process_stats_get(&info);
    struct cd_expo e = {out, 0};
    return cd_expo_render(&e, sc->m, &info);
}

/* The store's staging transactions, for cairnd_store_stage_*. */
static void stage_observed(void *ctx, uint64_t ns)
{
    struct cd_metrics *m = ctx;
    cd_metrics_add(&m->stage_batches, 1);
    cd_hist_observe(&m->stage_sync, ns);
}

/* Reads --metrics-token-file: one token (surrounding white space
 * dropped), printable, at most 4 KiB. Returns a malloc'd copy or NULL
 * after saying why on stderr (never the file's content). */
#define MAX_METRICS_TOKEN 4096
static char *metrics_token_read(const char *path)
{
    struct cairn_err err = {0};
    char *t = read_pem(path, &err);
    if (t == NULL) {
        fprintf(stderr, "cairnd: --metrics-token-file %s\n", err.msg);
        return NULL;
    }
    char *p = t;
    while (isspace((unsigned char)*p))
        p++;
    size_t n = strlen(p);
    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    bool ok = n > 0 && n <= MAX_METRICS_TOKEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = p[i] > ' ' && p[i] < 0x7f;
    if (!ok) {
        fprintf(stderr, "cairnd: --metrics-token-file %s: expected one token of 1 to %u printable "
                "characters without spaces\n", path, MAX_METRICS_TOKEN);
        explicit_bzero(t, strlen(t));
        free(t);
        return NULL;
    }
    memmove(t, p, n);
    t[n] = '\0';
    return t;
}

/* --metrics-listen: the /metrics listener (NULL without the option).
 * Returns 0 (*out, *port) or -1 after saying why on stderr. */
static int metrics_start(const struct cd_config *cfg, struct scrape *sc,
                         struct cd_metrics_http **out, int *port)
{
    *out = NULL;
    if (cfg->metrics_listen == NULL)
        return 0;
    char *token = NULL;
    if (cfg->metrics_token_file != NULL && (token = metrics_token_read(cfg->metrics_token_file)) == NULL)
        return -1;
    struct cairn_err err = {0};
    struct cd_metrics_http_opts mo = {cfg->metrics_listen, token, scrape_render, sc};
    int rc = cd_metrics_http_open(&mo, out, port, &err);
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (rc != 0) {
        fprintf(stderr, "cairnd: %s\n", err.msg);
        return -1;
    }
    cd_log(CD_LOG_INFO, "metrics: /metrics on %s%s", cfg->metrics_listen,
           cfg->metrics_token_file ? " (bearer token required)" : "");
    return 0;
}

/* Each relayed connection holds five descriptors (docs/operations.md):
 * raise the soft limit as far as the hard one allows, and say so when
 * --max-connections cannot all be open at once. */
static void nofile_raise(unsigned max_conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_conns * 5 + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        cd_log(CD_LOG_WARN, "open files limited to %llu: fewer than --max-connections %u "
               "connections fit (each takes 5)", (unsigned long long)rl.rlim_cur, max_conns);
}

static void hand_over(void *ctx, int fd)
{
    cd_rpc_channel_add(ctx, fd);
}

static void peer_name(void *ctx, const char *grpc_peer, char *out, size_t n, bool wait)
{
    if (wait)
        cd_relay_peer_name(ctx, grpc_peer, out, n);
    else
        cd_relay_peer_name_try(ctx, grpc_peer, out, n);
}

/* Puts the relay (server/grpc/relay.c) in front of rpc: gRPC 1.51 cannot
 * bound a header block itself (CVE-2023-33953), and gRPC takes only
 * plaintext connections from a file descriptor, so the relay also
 * terminates TLS (tls, may be NULL). Logs the gate's limits. Returns 0
 * (*out, *port written) or an error with err filled; on an error nothing
 * has reached gRPC yet. */
static int gate_start(const struct cd_config *cfg, SSL_CTX *tls, struct cd_rpc *rpc,
                      struct cd_relay **out, int *port, struct cairn_err *err)
{
    struct cd_relay_opts rlo = {cfg->listen, cfg->max_conns, cfg->max_conns_per_ip,
                                cfg->handshake_timeout_s,
                                cd_gate_limits_for((uint32_t)cfg->max_header_size),
                                tls, hand_over, rpc, "--listen"};
    nofile_raise(cfg->max_conns);
    struct cd_relay *relay = NULL;
    int rc = cd_relay_open(&rlo, &relay, port, err);
    if (rc == 0) {
        /* Before the first connection: log lines name clients. */
        cd_rpc_peer_names_set(rpc, peer_name, relay);
        rc = cd_relay_run(relay, err);
    }
    if (rc != 0) {
        cd_relay_free(relay);
        return rc;
    }
    cd_log(CD_LOG_INFO,
           "HTTP/2 gate: header blocks up to %u bytes in up to %u CONTINUATION frames, "
           "frames up to %u bytes; %u connections, %u per client address",
           rlo.gate.max_block, rlo.gate.max_continuations, CD_GATE_FRAME_MAX, rlo.max_conns,
           rlo.max_per_ip);
    *out = relay;
    return 0;
}

/* --health-listen: a second relay, plaintext whatever the main port
 * speaks (the kubelet's gRPC probe has no TLS), in front of a gRPC server
 * that registers only grpc.health.v1.Health (server/grpc/rpc.h): any
 * other path is UNIMPLEMENTED there, no token is asked (the health
 * handler reads none) and it answers from the same svc, so it turns
 * NOT_SERVING with the main port's drain. The same caps and gate limits
 * as the main port. Returns 0 (both written, NULL without the option) or
 * -1 after saying why on stderr. */
static int health_start(const struct cd_config *cfg, struct cd_svc *svc, struct cd_rpc **rpc_out,
                        struct cd_relay **relay_out, int *port)
{
    if (cfg->health_listen == NULL)
        return 0;
    struct cairn_err err = {0};
    struct cd_rpc_opts ro = {cfg->health_listen, 1, NULL, NULL, NULL, 0, true,
                             (unsigned)cfg->max_header_size, cfg->max_streams,
                             cfg->handshake_timeout_s, cfg->conn_idle_s, cfg->conn_age_s,
                             cfg->conn_grace_s, true, true};
    struct cd_relay_opts rlo = {cfg->health_listen, cfg->max_conns, cfg->max_conns_per_ip,
                                cfg->handshake_timeout_s,
                                cd_gate_limits_for((uint32_t)cfg->max_header_size),
                                NULL, hand_over, NULL, "--health-listen"};
    struct cd_rpc *rpc = NULL;
    struct cd_relay *relay = NULL;
    int unused = 0;
    if (cd_rpc_start(&ro, svc, &rpc, &unused, &err) != 0)
        goto fail;
    rlo.ctx = rpc;
    if (cd_relay_open(&rlo, &relay, port, &err) != 0)
        goto fail;
    cd_rpc_peer_names_set(rpc, peer_name, relay);
    if (cd_relay_run(relay, &err) != 0)
        goto fail;
    cd_log(CD_LOG_INFO, "health: grpc.health.v1.Health/Check only, plaintext, on %s",
           cfg->health_listen);
    *rpc_out = rpc;
    *relay_out = relay;
    return 0;
fail:
    fprintf(stderr, "cairnd: %s\n", err.msg);
    cd_relay_free(relay);
    cd_rpc_free(rpc);
    return -1;
}

/* The start-up lines: what this cairnd stores, how it reads, and the
 * connection limits ro applies. */
static void log_start(const struct cd_config *cfg, const struct cd_rpc_opts *ro)
{
    char verify_how[64];
    if (cfg->no_read_verify)
        snprintf(verify_how, sizeof verify_how, "not verified (--no-read-verify)");
    else
        snprintf(verify_how, sizeof verify_how, "verified (again after %us)", cfg->reverify_s);
    cd_log(CD_LOG_INFO,
           "cairnd %s: store %s (max %llu bytes), %u threads, uploads idle for %us dropped, "
           "staged %llu MiB per txn, reads %s, %s%s", CAIRN_VERSION, cfg->dir,
           (unsigned long long)cfg->max_size, cfg->threads, cfg->upload_ttl_s,
           (unsigned long long)(cfg->stage_batch >> 20), verify_how,
           ro->tls_cert_pem ? "TLS" : "plaintext", ro->tls_client_ca_pem ? " with client certificates" : "");
    if (ro->limits)
        cd_log(CD_LOG_INFO,
               "connections: headers up to %u bytes, %u calls each, %us to handshake, closed "
               "after %us without calls (0: never), asked to go after %us (0: never) with %us of "
               "grace", ro->max_header_size, ro->max_streams, ro->handshake_timeout_s,
               ro->conn_idle_s, ro->conn_age_s, ro->conn_grace_s);
    else
        cd_log(CD_LOG_WARN, "connections: gRPC's default limits (--no-connection-limits)");
}

/* The main thread's life while serving: periodic jobs between signals,
 * until SIGTERM or SIGINT, which it returns. Upload expiry runs at least
 * twice per TTL so an abandoned upload lives at most 1.5 TTL. */
/* Runs the periodic jobs between signals until cairnd must drain; returns
 * the signal that asked it to stop. The first SIGTERM/SIGINT turns health
 * NOT_SERVING; with --shutdown-delay everything else is still served (new
 * connections too) until the delay ends or a second signal comes, so
 * readiness probes and load balancers see the server leave before it
 * refuses calls (once the drain starts, gRPC takes no new call on any
 * connection, a health check included). */
static int serve(const struct cd_config *cfg, const sigset_t *sigs, struct cd_svc *svc,
                 struct cd_rpc *rpc, unsigned idle_s)
{
    unsigned maintain_every = cfg->upload_ttl_s / 2;
    if (maintain_every < 1)
        maintain_every = 1;
    if (maintain_every > 30)
        maintain_every = 30;
    time_t last_maintain = time(NULL), last_stats = last_maintain;
    int stop_sig = 0;
    time_t drain_at = 0;
    for (;;) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(sigs, NULL, &tick);
        time_t now = time(NULL);
        if (sig == SIGTERM || sig == SIGINT) {
            atomic_store(&svc->draining, true);
            if (stop_sig != 0 || cfg->shutdown_delay_s == 0)
                return stop_sig != 0 ? stop_sig : sig;
            stop_sig = sig;
            drain_at = now + (time_t)cfg->shutdown_delay_s;
            cd_log(CD_LOG_INFO,
                   "%s: health NOT_SERVING; serving on for %us before draining "
                   "(a second signal drains at once)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg->shutdown_delay_s);
        }
        if (stop_sig != 0 && now >= drain_at)
            return stop_sig;
        unsigned reaped = cd_rpc_reap_idle(rpc);
        cd_metrics_add(&svc->metrics->streams_reaped, reaped);
        if (reaped > 0)
            cd_log(CD_LOG_INFO, "cancelled %u Write stream(s) idle for %us; uploads parked", reaped,
                   idle_s);
        if (now - last_maintain >= (time_t)maintain_every) {
            last_maintain = now;
            unsigned n = cd_uploads_expire(svc->uploads);
            cd_metrics_add(&svc->metrics->uploads_abandoned, n);
            if (n > 0)
                cd_log(CD_LOG_INFO, "dropped %u abandoned upload(s) idle for %us", n,
                       cfg->upload_ttl_s);
            int rc = cd_store_maintain(svc->store);
            if (rc != 0)
                cd_log(CD_LOG_WARN, "store maintenance: %s", cairn_strerror(rc));
        }
        if (now - last_stats >= (time_t)cfg->stats_interval_s) {
            last_stats = now;
            log_summary("periodic", svc->metrics, svc->store);
        }
    }
}

/* Signals are taken synchronously by the main thread (sigtimedwait);
 * they are blocked before any thread exists so every thread inherits the
 * mask and none of gRPC's threads gets them. SIGPIPE: a peer closing a
 * socket must not kill the server. */
static void signals_block(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The store's warnings about the bucket (never a secret: the s3 module
 * keeps them out of its messages). */
static void tier_report(void *ctx, const char *msg)
{
    (void)ctx;
    cd_log(CD_LOG_WARN, "%s", msg);
}

/* --backend: loads the credentials, opens the bucket and checks it with a
 * HEAD, so that a bucket that is missing, out of reach or closed to these
 * credentials stops cairnd before it serves anything. Returns 0 (*out:
 * NULL without --backend) or -1 after saying why on stderr. */
static int backend_open(const struct cd_config *cfg, struct cd_s3 **out)
{
    *out = NULL;
    if (cfg->backend == NULL)
        return 0;
    struct cairn_err err = {0};
    struct cd_s3_creds *creds = calloc(1, sizeof *creds);
    struct cd_s3 *s3 = NULL;
    int rc = -1;
    if (creds == NULL) {
        fprintf(stderr, "cairnd: out of memory\n");
        return -1;
    }
    if (cd_s3_creds_load(cfg->s3_credentials_file, NULL, creds, &err) != 0) {
        fprintf(stderr, "cairnd: --backend %s: credentials: %s\n", cfg->backend, err.msg);
        goto out;
    }
    struct cd_s3_opts so = {.url = cfg->backend, .endpoint = cfg->s3_endpoint,
                            .region = cfg->s3_region, .path_style = cfg->s3_path_style,
                            .creds = creds};
    if (cd_s3_open(&so, &s3, &err) != 0) {
        fprintf(stderr, "cairnd: --backend %s: %s\n", cfg->backend, err.msg);
        goto out;
    }
    if (cd_s3_check(s3, &err) != 0) {
        fprintf(stderr, "cairnd: --backend %s at %s: %s\n", cfg->backend, cfg->s3_endpoint,
                err.msg);
        cd_s3_close(s3);
        goto out;
    }
    cd_log(CD_LOG_INFO, "backend: %s at %s (region %s%s), written through; %s is the local tier",
           cfg->backend, cfg->s3_endpoint, cfg->s3_region ? cfg->s3_region : "us-east-1",
           cfg->s3_path_style ? ", path-style" : "", cfg->dir);
    *out = s3;
    rc = 0;
out:
    explicit_bzero(creds, sizeof *creds);
    free(creds);
    return rc;
}

/* Opens the store as the options say (s3: the bucket under it, or NULL).
 * Returns 0 (*out) or -1 after saying why on stderr. */
static int store_open(const struct cd_config *cfg, struct cd_metrics *m, struct cd_s3 *s3,
                      struct cd_store **out)
{
    struct cairn_err err = {0};
    struct cd_store_opts so = {.dir = cfg->dir,
                               .max_size = cfg->max_size,
                               .upload_ttl_s = cfg->upload_ttl_s,
                               .stage_batch = (size_t)cfg->stage_batch,
                               .verify_off = cfg->no_read_verify,
                               .verify_ttl_s = cfg->reverify_s,
                               .on_stage = stage_observed,
                               .on_stage_ctx = m,
                               .s3 = s3,
                               .on_tier_report = tier_report};
    if (cd_store_open(&so, out, &err) != 0) {
        fprintf(stderr, "cairnd: store %s: %s\n", cfg->dir, err.msg);
        return -1;
    }
    return 0;
}

/* --tokens, or a warning that the cache is open. Returns 0 (*out: the
 * grants, NULL without --tokens) or -1 after saying why on stderr. */
static int auth_open(const struct cd_config *cfg, struct cd_auth **out)
{
    struct cd_auth *auth = NULL;
    struct cairn_err err = {0};
    if (cfg->tokens == NULL) {
        cd_log(CD_LOG_WARN, "auth: no --tokens given: the cache is OPEN to anyone who can connect");
    } else if (cd_auth_load(cfg->tokens, &auth, &err) != 0) {
        fprintf(stderr, "cairnd: --tokens: %s\n", err.msg);
        return -1;
    } else {
        cd_log(CD_LOG_INFO, "auth: %zu grants loaded from %s", cd_auth_count(auth), cfg->tokens);
    }
    *out = auth;
    return 0;
}

/* Reads --tls-cert, --tls-key and --tls-client-ca (if given). Returns 0
 * (all three written; *ca NULL without a client CA; the caller frees) or
 * -1 after saying why on stderr. */
static int tls_pems_read(const struct cd_config *cfg, char **cert, char **key, char **ca)
{
    struct cairn_err err = {0};
    char *c = NULL, *k = NULL, *a = NULL;
    if ((c = read_pem(cfg->tls_cert, &err)) == NULL || (k = read_pem(cfg->tls_key, &err)) == NULL ||
        (cfg->tls_client_ca != NULL && (a = read_pem(cfg->tls_client_ca, &err)) == NULL)) {
        fprintf(stderr, "cairnd: TLS: %s\n", err.msg);
        free(c);
        free(k);
        return -1;
    }
    *cert = c;
    *key = k;
    *ca = a;
    return 0;
}

/* After signal sig: lets calls in flight finish (up to --drain-timeout),
 * then frees relay (may be NULL) and rpc, then the health listener
 * (hrelay, hrpc: NULL without --health-listen; it answers NOT_SERVING
 * until the main drain ends) and shuts gRPC down. */
static void drain(const struct cd_config *cfg, int sig, struct cd_relay *relay, struct cd_rpc *rpc,
                  struct cd_relay *hrelay, struct cd_rpc *hrpc)
{
    cd_log(CD_LOG_INFO, "%s: draining (up to %us)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
           cfg->drain_timeout_s);
    /* No new connection may reach gRPC once its shutdown has begun. */
    cd_relay_stop_accepting(relay);
    unsigned cancelled = cd_rpc_drain(rpc, cfg->drain_timeout_s);
    if (cancelled > 0)
        cd_log(CD_LOG_WARN, "cancelled %u call(s) still running after the drain timeout", cancelled);
    cd_rpc_free(rpc);
    cd_relay_free(relay);
    if (hrpc != NULL) {
        cd_relay_stop_accepting(hrelay);
        cd_rpc_drain(hrpc, 1);
        cd_rpc_free(hrpc);
        cd_relay_free(hrelay);
    }
    grpc_shutdown();
}

int main(int argc, char **argv)
{
    struct cd_config cfg;
    struct cairn_err err = {0};
    if (cd_config_parse(argc, argv, &cfg, &err) != 0) {
        fprintf(stderr, "cairnd: %s\n", err.msg);
        return 2;
    }
    if (cfg.help) {
        cd_config_usage();
        return 0;
    }
    enum cd_log_level level;
    if (cd_log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr, "cairnd: --log-level: '%s' is not error|warn|info|debug\n", cfg.log_level);
        return 2;
    }
    cd_log_level_set(level);
    enum cd_log_format format;
    if (cd_log_format_parse(cfg.log_format, &format) != 0) {
        fprintf(stderr, "cairnd: --log-format: '%s' is not text|json\n", cfg.log_format);
        return 2;
    }
    cd_log_format_set(format);
    if (cfg.verify)
        return verify_main(&cfg);
    malloc_tune(cfg.stage_batch);

    sigset_t sigs;
    signals_block(&sigs);

    int status = 1;
    struct cd_store *store = NULL;
    struct cd_s3 *s3 = NULL;
    struct cd_auth *auth = NULL;
    struct cd_uploads *uploads = NULL;
    struct cd_claims *claims = NULL;
    struct cd_rpc *rpc = NULL;
    struct cd_relay *relay = NULL;
    SSL_CTX *tls = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;
    struct cd_metrics_http *mh = NULL;
    static struct cd_metrics metrics; /* 8 KiB of counters: not on the stack */
    const char *paths[CD_METRICS_METHODS_MAX];
    size_t npaths = 0;
    for (; npaths < cd_methods_count && npaths < CD_METRICS_METHODS_MAX; npaths++)
        paths[npaths] = cd_methods[npaths].path;
    cd_metrics_init(&metrics, paths, npaths);

    if (auth_open(&cfg, &auth) != 0)
        return 2;
    if (cfg.tls_cert != NULL && tls_pems_read(&cfg, &cert, &key, &ca) != 0) {
        status = 2;
        goto out;
    }

    if (backend_open(&cfg, &s3) != 0)
        goto out;
    if (store_open(&cfg, &metrics, s3, &store) != 0)
        goto out;
    /* Before gRPC: a bad --metrics-listen stops cairnd (exit 2) before it
     * has served anything. Scrapes go on through the drain; the listener
     * stops before the store closes (at out). */
    struct scrape sc = {&metrics, store, cfg.backend != NULL};
    int metrics_port = 0;
    if (metrics_start(&cfg, &sc, &mh, &metrics_port) != 0) {
        status = 2;
        goto out;
    }
    if (cd_uploads_new(cfg.upload_ttl_s, &uploads) != 0) {
        fprintf(stderr, "cairnd: out of memory\n");
        goto out;
    }
    if (!cfg.no_claims && cd_claims_new(0, &claims) != 0) {
        fprintf(stderr, "cairnd: out of memory\n");
        goto out;
    }
    struct cd_svc svc = {store, auth, uploads, &metrics, false, claims};
    grpc_init();
    /* A silent Write stream is cancelled after half the upload TTL, so its
     * upload is parked (and resumable) well before the store would expire
     * it. */
    unsigned idle_s = cfg.upload_ttl_s / 2 ? cfg.upload_ttl_s / 2 : 1;
    struct cd_rpc_opts ro = {cfg.listen, cfg.threads, cert, key, ca, idle_s,
                             !cfg.no_conn_limits, (unsigned)cfg.max_header_size,
                             cfg.max_streams, cfg.handshake_timeout_s, cfg.conn_idle_s,
                             cfg.conn_age_s, cfg.conn_grace_s, false, false};
    /* Connections come through the HTTP/2 gate (gate_start), unless the
     * hidden --no-gate or --no-connection-limits keep gRPC's listener. */
    ro.external_listener = ro.limits && !cfg.no_gate;
    if (ro.external_listener && cfg.tls_cert != NULL &&
        cd_tls_ctx_new(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, &tls, &err) != 0) {
        fprintf(stderr, "cairnd: %s\n", err.msg);
        grpc_shutdown();
        status = 2;
        goto out;
    }
    int port = 0;
    if (cd_rpc_start(&ro, &svc, &rpc, &port, &err) != 0) {
        fprintf(stderr, "cairnd: %s\n", err.msg);
        grpc_shutdown();
        goto out;
    }
    if (ro.external_listener) {
        if (gate_start(&cfg, tls, rpc, &relay, &port, &err) != 0) {
            fprintf(stderr, "cairnd: %s\n", err.msg);
            cd_rpc_free(rpc);
            grpc_shutdown();
            goto out;
        }
    } else if (ro.limits) {
        cd_log(CD_LOG_WARN, "HTTP/2 gate off (--no-gate): header blocks reach gRPC unchecked "
               "(CVE-2023-33953, docs/security.md); no connection caps");
    }
    struct cd_rpc *hrpc = NULL;
    struct cd_relay *hrelay = NULL;
    int health_port = 0;
    if (health_start(&cfg, &svc, &hrpc, &hrelay, &health_port) != 0) {
        cd_relay_stop_accepting(relay);
        cd_rpc_free(rpc);
        cd_relay_free(relay);
        grpc_shutdown();
        status = 2;
        goto out;
    }
    log_start(&cfg, &ro);
    if (hrpc != NULL)
        print_bound("health on", cfg.health_listen, health_port);
    if (mh != NULL)
        print_bound("metrics on", cfg.metrics_listen, metrics_port);
    print_bound("listening on", cfg.listen, port);

    int sig = serve(&cfg, &sigs, &svc, rpc, idle_s);
    drain(&cfg, sig, relay, rpc, hrelay, hrpc);
    log_summary("exit", &metrics, store);
    status = 0;
out:
    cd_metrics_http_free(mh);
    cd_claims_free(claims);
    cd_uploads_free(uploads);
    cd_store_close(store);
    if (s3 != NULL)
        cd_s3_close(s3);
    cd_auth_free(auth);
    cd_tls_ctx_free(tls);
    free(cert);
    free(key);
    free(ca);
    return status;
}
