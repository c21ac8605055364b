#include "server/telemetry/expo.h"

#include "common/error.h"

#include <stdio.h>
#include <string.h>

static const char *const code_names[CD_METRICS_CODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
};

static void put(struct cd_expo *e, const char *s, size_t n)
{
    if (e->err == 0)
        e->err = cairn_buf_append(e->b, s, n);
}

static void puts_(struct cd_expo *e, const char *s) { put(e, s, strlen(s)); }

void cd_expo_family(struct cd_expo *e, const char *name, const char *type, const char *help)
{
    puts_(e, "# HELP ");
    puts_(e, name);
    puts_(e, " ");
    puts_(e, help);
    puts_(e, "\n# TYPE ");
    puts_(e, name);
    puts_(e, " ");
    puts_(e, type);
    puts_(e, "\n");
}

/* A label value as the format wants it: backslash, double quote and
 * line feed escaped; everything else (UTF-8 included) as is. */
static void label_value(struct cd_expo *e, const char *v)
{
    const char *run = v;
    for (const char *p = v; *p != '\0'; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (esc == NULL)
            continue;
        put(e, run, (size_t)(p - run));
        puts_(e, esc);
        run = p + 1;
    }
    puts_(e, run);
}

/* name{labels[,le="le"]} with a trailing space. */
static void sample_head(struct cd_expo *e, const char *name, const char *const *labels,
                        const char *le)
{
    puts_(e, name);
    if ((labels == NULL || labels[0] == NULL) && le == NULL) {
        puts_(e, " ");
        return;
    }
    puts_(e, "{");
    bool first = true;
    for (size_t i = 0; labels != NULL && labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
        if (!first)
            puts_(e, ",");
        first = false;
        puts_(e, labels[i]);
        puts_(e, "=\"");
        label_value(e, labels[i + 1]);
        puts_(e, "\"");
    }
    if (le != NULL) {
        puts_(e, first ? "le=\"" : ",le=\"");
        puts_(e, le);
        puts_(e, "\"");
    }
    puts_(e, "} ");
}

void cd_expo_u64(struct cd_expo *e, const char *name, const char *const *labels, uint64_t v)
{
    char num[32];
    sample_head(e, name, labels, NULL);
    int n = snprintf(num, sizeof num, "%llu\n", (unsigned long long)v);
    put(e, num, (size_t)n);
}

void cd_expo_double(struct cd_expo *e, const char *name, const char *const *labels, double v)
{
    char num[48];
    sample_head(e, name, labels, NULL);
    int n = snprintf(num, sizeof num, "%.17g\n", v);
    put(e, num, (size_t)n);
}

void cd_expo_hist(struct cd_expo *e, const char *name, const char *const *labels,
                  const struct cd_hist *h)
{
    char sub[128], le[32];
    uint64_t cum = 0;
    /* The buckets are loaded one by one while other threads add: the
     * cumulative sums are built from the loaded values, so +Inf and
     * _count agree and never decrease within this scrape. */
    snprintf(sub, sizeof sub, "%s_bucket", name);
    for (size_t b = 0; b <= CD_HIST_BUCKETS; b++) {
        cum += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
        if (b < CD_HIST_BUCKETS)
            snprintf(le, sizeof le, "%g", cd_hist_bounds[b]);
        sample_head(e, sub, labels, b < CD_HIST_BUCKETS ? le : "+Inf");
        char num[32];
        int n = snprintf(num, sizeof num, "%llu\n", (unsigned long long)cum);
        put(e, num, (size_t)n);
    }
    snprintf(sub, sizeof sub, "%s_sum", name);
    cd_expo_double(e, sub, labels,
                   (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    snprintf(sub, sizeof sub, "%s_count", name);
    cd_expo_u64(e, sub, labels, cum);
}

/* "/pkg.Service/Method" split into service and method (into the two
 * buffers); an unknown row is "unknown", "unknown". */
static void method_names(const struct cd_metrics *m, size_t row, char *svc, size_t svc_n,
                         char *meth, size_t meth_n)
{
    const char *p = row < m->n_methods ? m->method_paths[row] : NULL;
    const char *slash = p != NULL ? strrchr(p, '/') : NULL;
    if (p == NULL || p[0] != '/' || slash == NULL || slash == p) {
        snprintf(svc, svc_n, "unknown");
        snprintf(meth, meth_n, "unknown");
        return;
    }
    snprintf(svc, svc_n, "%.*s", (int)(slash - p - 1), p + 1);
    snprintf(meth, meth_n, "%s", slash + 1);
}

/* The rows written: every known method, and the unknown row. */
static bool row_used(const struct cd_metrics *m, size_t row)
{
    return row < m->n_methods || row == CD_METRICS_METHODS_MAX;
}

static void render_calls(struct cd_expo *e, const struct cd_metrics *m)
{
    char svc[128], meth[64];
    cd_expo_family(e, "cairnd_grpc_requests_total", "counter",
                   "gRPC calls finished, by service, method and status code.");
    for (size_t row = 0; row <= CD_METRICS_METHODS_MAX; row++) {
        if (!row_used(m, row))
            continue;
        method_names(m, row, svc, sizeof svc, meth, sizeof meth);
        for (size_t c = 0; c < CD_METRICS_CODES; c++) {
            uint64_t v = cd_metrics_get(&m->calls[row][c]);
            /* OK is always written (so rate() has a start); other codes
             * once they happened, to keep a scrape small. */
            if (v == 0 && (c != 0 || row == CD_METRICS_METHODS_MAX))
                continue;
            const char *l[] = {"service", svc, "method", meth, "code", code_names[c], NULL};
            cd_expo_u64(e, "cairnd_grpc_requests_total", l, v);
        }
    }
    cd_expo_family(e, "cairnd_grpc_requests_in_flight", "gauge",
                   "gRPC calls running now, by service and method.");
    for (size_t row = 0; row <= CD_METRICS_METHODS_MAX; row++) {
        if (!row_used(m, row))
            continue;
        int64_t v = atomic_load_explicit(&m->in_flight[row], memory_order_relaxed);
        if (row == CD_METRICS_METHODS_MAX && v == 0)
            continue;
        method_names(m, row, svc, sizeof svc, meth, sizeof meth);
        const char *l[] = {"service", svc, "method", meth, NULL};
        cd_expo_u64(e, "cairnd_grpc_requests_in_flight", l, v > 0 ? (uint64_t)v : 0);
    }
    cd_expo_family(e, "cairnd_grpc_request_duration_seconds", "histogram",
                   "Time from a call's arrival to its status being sent, by service and method.");
    for (size_t row = 0; row <= CD_METRICS_METHODS_MAX; row++) {
        if (!row_used(m, row))
            continue;
        if (row == CD_METRICS_METHODS_MAX)
            continue;
        method_names(m, row, svc, sizeof svc, meth, sizeof meth);
        const char *l[] = {"service", svc, "method", meth, NULL};
        cd_expo_hist(e, "cairnd_grpc_request_duration_seconds", l, &m->latency[row]);
    }
}

/* A family of one unlabelled sample. */
static void one_u64(struct cd_expo *e, const char *name, const char *type, const char *help,
                    uint64_t v)
{
    cd_expo_family(e, name, type, help);
    cd_expo_u64(e, name, NULL, v);
}

static void render_counters(struct cd_expo *e, const struct cd_metrics *m)
{
    one_u64(e, "cairnd_grpc_received_bytes_total", "counter",
            "Request message bytes of finished calls.", cd_metrics_get(&m->msg_bytes_in));
    one_u64(e, "cairnd_grpc_sent_bytes_total", "counter",
            "Response message bytes of finished calls.", cd_metrics_get(&m->msg_bytes_out));
    one_u64(e, "cairnd_cas_received_bytes_total", "counter",
            "Blob bytes received (BatchUpdateBlobs, ByteStream Write).",
            cd_metrics_get(&m->bytes_in));
    one_u64(e, "cairnd_cas_sent_bytes_total", "counter",
            "Blob bytes sent (BatchReadBlobs, ByteStream Read).", cd_metrics_get(&m->bytes_out));
    one_u64(e, "cairnd_action_cache_hits_total", "counter",
            "GetActionResult calls answered with a complete result.",
            cd_metrics_get(&m->ac_hits));
    one_u64(e, "cairnd_action_cache_misses_total", "counter",
            "GetActionResult calls answered NOT_FOUND (incomplete results included).",
            cd_metrics_get(&m->ac_misses));
    one_u64(e, "cairnd_action_cache_incomplete_total", "counter",
            "GetActionResult misses whose result names a blob that is gone.",
            cd_metrics_get(&m->ac_incomplete));
    one_u64(e, "cairnd_cas_blobs_found_total", "counter",
            "Digests FindMissingBlobs found present.", cd_metrics_get(&m->blobs_found));
    one_u64(e, "cairnd_cas_blobs_missing_total", "counter",
            "Digests FindMissingBlobs reported missing.", cd_metrics_get(&m->blobs_missing));
    one_u64(e, "cairnd_read_verification_failures_total", "counter",
            "Reads refused because the blob did not hash to its digest.",
            cd_metrics_get(&m->verify_failures));
    one_u64(e, "cairnd_uploads_abandoned_total", "counter",
            "Unfinished uploads dropped after --upload-idle-timeout.",
            cd_metrics_get(&m->uploads_abandoned));
    one_u64(e, "cairnd_upload_streams_cancelled_total", "counter",
            "ByteStream Write calls cancelled after half the upload idle timeout "
            "without a message (upload parked).",
            cd_metrics_get(&m->streams_reaped));
    one_u64(e, "cairnd_claims_granted_total", "counter",
            "Step claims granted (cairn.claim.v1 Claim answered GRANTED).",
            cd_metrics_get(&m->claims_granted));
    one_u64(e, "cairnd_claims_held_total", "counter",
            "Claim calls answered HELD: a builder waits for another's step.",
            cd_metrics_get(&m->claims_held));
    one_u64(e, "cairnd_claims_ended_by_result_total", "counter",
            "Step claims ended by UpdateActionResult storing their result.",
            cd_metrics_get(&m->claims_ended));
    one_u64(e, "cairnd_store_stage_batches_total", "counter",
            "Staging transactions of upload data written and synced.",
            cd_metrics_get(&m->stage_batches));
    cd_expo_family(e, "cairnd_store_stage_sync_duration_seconds", "histogram",
                   "Time to commit and sync one staging transaction.");
    cd_expo_hist(e, "cairnd_store_stage_sync_duration_seconds", NULL, &m->stage_sync);
}

/* Uploads in flight: ByteStream Write calls running now. */
static uint64_t writes_running(const struct cd_metrics *m)
{
    for (size_t i = 0; i < m->n_methods; i++) {
        if (m->method_paths[i] != NULL &&
            strcmp(m->method_paths[i], "/google.bytestream.ByteStream/Write") == 0) {
            int64_t v = atomic_load_explicit(&m->in_flight[i], memory_order_relaxed);
            return v > 0 ? (uint64_t)v : 0;
        }
    }
    return 0;
}

static void render_store(struct cd_expo *e, const struct cd_expo_info *in)
{
    one_u64(e, "cairnd_store_used_bytes", "gauge",
            "Blob bytes stored (action results count separately).", in->store_bytes);
    one_u64(e, "cairnd_store_limit_bytes", "gauge", "The store's --max-size.", in->store_limit);
    one_u64(e, "cairnd_store_blobs", "gauge", "Blobs stored.", in->store_blobs);
    one_u64(e, "cairnd_store_action_results", "gauge", "Action results stored.",
            in->store_ac_entries);
    one_u64(e, "cairnd_store_action_result_bytes", "gauge", "Bytes of the action results stored.",
            in->store_ac_bytes);
    one_u64(e, "cairnd_store_evictions_total", "counter",
            "Blobs evicted (least recently used) since start.", in->evictions);
    one_u64(e, "cairnd_store_evicted_bytes_total", "counter", "Bytes of the blobs evicted.",
            in->evicted_bytes);
    one_u64(e, "cairnd_store_quarantined_blobs_total", "counter",
            "Blobs found corrupt (on a read, by the hasher) and removed since start.",
            in->quarantined);
    one_u64(e, "cairnd_store_quarantined_bytes_total", "counter",
            "Bytes of the blobs quarantined.", in->quarantined_bytes);
    one_u64(e, "cairnd_uploads_pending", "gauge",
            "Uploads with staged data not yet committed (running or parked for a resume).",
            in->pending_uploads);
}

/* The bucket tier (--backend; docs/storage.md "Two tiers"). */
static void render_bucket(struct cd_expo *e, const struct cd_expo_info *in)
{
    one_u64(e, "cairnd_bucket_puts_total", "counter",
            "Objects written to the bucket (blobs and action results).", in->bucket_puts);
    one_u64(e, "cairnd_bucket_put_bytes_total", "counter", "Bytes written to the bucket.",
            in->bucket_put_bytes);
    one_u64(e, "cairnd_bucket_fills_total", "counter",
            "Blobs brought from the bucket into the local store.", in->bucket_fills);
    one_u64(e, "cairnd_bucket_fill_bytes_total", "counter",
            "Bytes of the blobs brought from the bucket.", in->bucket_fill_bytes);
    one_u64(e, "cairnd_bucket_action_result_fills_total", "counter",
            "Action results brought from the bucket into the local store.", in->bucket_ac_fills);
    one_u64(e, "cairnd_bucket_heads_total", "counter",
            "Objects asked about by FindMissingBlobs (HEADs).", in->bucket_heads);
    one_u64(e, "cairnd_bucket_negative_cache_hits_total", "counter",
            "Digests answered absent by the negative cache, without a HEAD.",
            in->bucket_neg_hits);
    one_u64(e, "cairnd_bucket_errors_total", "counter",
            "Bucket calls that failed after the retries (unreachable, 5xx, 403).",
            in->bucket_errors);
    one_u64(e, "cairnd_bucket_corrupt_total", "counter",
            "Objects that did not match their digest or size: not served, deleted.",
            in->bucket_corrupt);
    one_u64(e, "cairnd_bucket_shared_reads_total", "counter",
            "Reads of a cold blob that joined another reader's fetch.", in->bucket_shared);
}

static void render_process(struct cd_expo *e, const struct cd_expo_info *in)
{
    cd_expo_family(e, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.");
    cd_expo_double(e, "process_cpu_seconds_total", NULL, in->cpu_seconds);
    one_u64(e, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
            in->resident_bytes);
    one_u64(e, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
            in->virtual_bytes);
    one_u64(e, "process_open_fds", "gauge", "Number of open file descriptors.", in->open_fds);
    one_u64(e, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
            in->max_fds);
    cd_expo_family(e, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.");
    cd_expo_double(e, "process_start_time_seconds", NULL, in->start_time_seconds);
}

int cd_expo_render(struct cd_expo *e, const struct cd_metrics *m, const struct cd_expo_info *info)
{
    cd_expo_family(e, "cairnd_build_info", "gauge",
                   "Always 1; the labels name this cairnd's version, cache key scheme and gRPC.");
    const char *bl[] = {"version", info->version ? info->version : "",
                        "key_scheme", info->key_scheme ? info->key_scheme : "",
                        "grpc_version", info->grpc_version ? info->grpc_version : "", NULL};
    cd_expo_u64(e, "cairnd_build_info", bl, 1);
    render_calls(e, m);
    render_counters(e, m);
    one_u64(e, "cairnd_uploads_in_flight", "gauge", "ByteStream Write calls running now.",
            writes_running(m));
    if (info->store)
        render_store(e, info);
    if (info->bucket)
        render_bucket(e, info);
    if (info->process)
        render_process(e, info);
    return e->err;
}
