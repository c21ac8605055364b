#include "server/telemetry/call.h"

#include "server/telemetry/log.h"

#include <stdio.h>
#include <string.h>

/* gRPC's NOT_FOUND: a miss, logged at debug like a success. */
#define CODE_NOT_FOUND 5

void cd_telemetry_call_start(struct cd_metrics *m, size_t method)
{
    size_t row = cd_metrics_method_row(m, method);
    atomic_fetch_add_explicit(&m->in_flight[row], 1, memory_order_relaxed);
}

/* "/pkg.Service/Method" -> service, method. */
static void path_split(const char *path, char *svc, size_t svc_n, const char **meth)
{
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    if (path == NULL || path[0] != '/' || slash == NULL || slash == path) {
        snprintf(svc, svc_n, "unknown");
        *meth = "unknown";
        return;
    }
    snprintf(svc, svc_n, "%.*s", (int)(slash - path - 1), path + 1);
    *meth = slash + 1;
}

/* Failed calls are logged at info, and how often a call fails is the
 * client's choice: a budget keeps a flood of them from flooding the log
 * (the next line written says how many were dropped). At debug every
 * call is written: the operator asked for it. */
#define CALL_FAIL_BURST 100
static struct cd_log_budget fail_budget = {.burst = CALL_FAIL_BURST};

static void call_log(const struct cd_call_record *r)
{
    enum cd_log_level level =
        r->code != 0 && r->code != CODE_NOT_FOUND ? CD_LOG_INFO : CD_LOG_DEBUG;
    if (!cd_log_enabled(level))
        return;
    unsigned dropped = 0;
    if (level == CD_LOG_INFO && !cd_log_enabled(CD_LOG_DEBUG) &&
        !cd_log_budget_take(&fail_budget, &dropped))
        return;
    char svc[128], peer[128] = "";
    const char *meth;
    path_split(r->path, svc, sizeof svc, &meth);
    if (r->peer != NULL)
        r->peer(r->peer_ctx, peer, sizeof peer);
    /* The fields are a closed list: the authorization header is not one
     * of them, and details never quote it (server/reapi/auth.c). */
    struct cd_log_field f[] = {
        {"service", CD_LOG_STR, svc, 0, 0},
        {"method", CD_LOG_STR, meth, 0, 0},
        {"instance", CD_LOG_STR, r->instance ? r->instance : "", 0, 0},
        {"code", CD_LOG_STR, r->code_name ? r->code_name : "", 0, 0},
        {"duration_s", CD_LOG_SECONDS, NULL, 0, (double)r->duration_ns / 1e9},
        {"bytes_in", CD_LOG_INT, NULL, (long long)r->bytes_in, 0},
        {"bytes_out", CD_LOG_INT, NULL, (long long)r->bytes_out, 0},
        {"peer", CD_LOG_STR, peer, 0, 0},
        {"details", CD_LOG_STR, r->details ? r->details : "", 0, 0},
        {"dropped", CD_LOG_INT, NULL, (long long)dropped, 0},
    };
    size_t n = sizeof f / sizeof f[0];
    if (dropped == 0)
        n--; /* "dropped" only after a flood */
    if (r->code == 0)
        n--; /* no details on success (nor a flood to report) */
    cd_log_fields(level, "call", f, n);
}

void cd_telemetry_call_done(struct cd_metrics *m, const struct cd_call_record *r)
{
    size_t row = cd_metrics_method_row(m, r->method);
    int code = r->code >= 0 && r->code < CD_METRICS_CODES ? r->code : 2 /* UNKNOWN */;
    atomic_fetch_sub_explicit(&m->in_flight[row], 1, memory_order_relaxed);
    cd_metrics_add(&m->calls[row][code], 1);
    if (code != 0)
        cd_metrics_add(&m->errors, 1);
    cd_hist_observe(&m->latency[row], r->duration_ns);
    cd_metrics_add(&m->msg_bytes_in, r->bytes_in);
    cd_metrics_add(&m->msg_bytes_out, r->bytes_out);
    call_log(r);
}
