/* Counters for cairnd's periodic summary. Lock-free (C11 atomics): any
 * thread may add; the summary reads them without stopping anyone. */
#ifndef CAIRN_SERVER_METRICS_H
#define CAIRN_SERVER_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct cd_metrics {
    atomic_uint_fast64_t requests;  /* calls accepted */
    atomic_uint_fast64_t errors;    /* calls finished with a non-OK status */
    atomic_uint_fast64_t ac_hits;   /* GetActionResult found and complete */
    atomic_uint_fast64_t ac_misses; /* GetActionResult NOT_FOUND */
    atomic_uint_fast64_t bytes_in;  /* blob bytes received (CAS writes) */
    atomic_uint_fast64_t bytes_out; /* blob bytes sent (CAS reads) */
};

static inline void cd_metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

#endif
