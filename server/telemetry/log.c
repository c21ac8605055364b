#include "server/telemetry/log.h"

#include "common/error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {
    [CD_LOG_ERROR] = "error",
    [CD_LOG_WARN] = "warn",
    [CD_LOG_INFO] = "info",
    [CD_LOG_DEBUG] = "debug",
};

/* Written once at start-up, before any thread exists, then only read. */
static enum cd_log_level log_level = CD_LOG_INFO;

int cd_log_level_parse(const char *name, enum cd_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum cd_log_level)i;
            return 0;
        }
    }
    return CAIRN_E_INVAL;
}

void cd_log_level_set(enum cd_log_level level) { log_level = level; }

int cd_log_enabled(enum cd_log_level level) { return level <= log_level; }

void cd_log(enum cd_log_level level, const char *fmt, ...)
{
    if (!cd_log_enabled(level))
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from worker threads never interleave. */
    fprintf(stderr, "%s\n", line);
}

/* One lock for every budget: only refused calls and connections reach it. */
static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;

int cd_log_budget_take(struct cd_log_budget *b, unsigned *dropped)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    pthread_mutex_lock(&budget_mu);
    if (now - b->window_ms >= 1000) {
        b->window_ms = now;
        b->used = 0;
    }
    int ok = b->used < (b->burst != 0 ? b->burst : CD_LOG_BURST);
    if (ok) {
        b->used++;
        *dropped = b->dropped;
        b->dropped = 0;
    } else {
        b->dropped++;
    }
    pthread_mutex_unlock(&budget_mu);
    return ok;
}
