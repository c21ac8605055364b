#include "server/telemetry/metrics.h"

#include <string.h>

const double cd_hist_bounds[CD_HIST_BUCKETS] = CD_HIST_BOUNDS;

void cd_metrics_init(struct cd_metrics *m, const char *const *paths, size_t n)
{
    /* Every field is an atomic integer or a pointer: all-zero bytes are a
     * valid zero for each on the platforms cairnd builds for. */
    memset(m, 0, sizeof *m);
    if (n > CD_METRICS_METHODS_MAX)
        n = CD_METRICS_METHODS_MAX;
    for (size_t i = 0; i < n; i++)
        m->method_paths[i] = paths[i];
    m->n_methods = n;
}

size_t cd_metrics_method_row(const struct cd_metrics *m, size_t i)
{
    return i < m->n_methods ? i : CD_METRICS_METHODS_MAX;
}

void cd_hist_observe(struct cd_hist *h, uint64_t ns)
{
    /* Compared in nanoseconds so the hot path does no floating point
     * beyond this table, which the compiler folds. */
    static const uint64_t bound_ns[CD_HIST_BUCKETS] = {
        100000,    250000,    500000,     1000000,    2500000,    5000000,
        10000000,  25000000,  50000000,   100000000,  250000000,  500000000,
        1000000000, 2500000000u, 5000000000ull, 10000000000ull};
    size_t b = 0;
    while (b < CD_HIST_BUCKETS && ns > bound_ns[b])
        b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}
