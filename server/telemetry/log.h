/* cairnd's log: one line per event on stderr, with a UTC timestamp and a
 * level. Thread-safe (each line is one fprintf, which stdio locks). */
#ifndef CAIRN_SERVER_LOG_H
#define CAIRN_SERVER_LOG_H

enum cd_log_level { CD_LOG_ERROR, CD_LOG_WARN, CD_LOG_INFO, CD_LOG_DEBUG };

/* Parses "error", "warn", "info", "debug". Returns 0 or CAIRN_E_INVAL;
 * *out is written only on success. */
int cd_log_level_parse(const char *name, enum cd_log_level *out);
/* Lines above level are dropped. Call before starting threads. */
void cd_log_level_set(enum cd_log_level level);
/* True when a message at level would be written (skip costly formatting). */
int cd_log_enabled(enum cd_log_level level);
void cd_log(enum cd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A budget for one kind of line whose cause a client controls (a refused
 * call, a refused connection), so that a flood of the cause cannot flood
 * the log: at most burst (default CD_LOG_BURST) lines a second.
 * Zero-initialise it (static storage or {0}), setting burst if the
 * default does not fit; thread-safe. */
#define CD_LOG_BURST 10
struct cd_log_budget {
    unsigned burst;      /* lines a second; 0: CD_LOG_BURST */
    long long window_ms; /* start of the current second */
    unsigned used;       /* lines written in it */
    unsigned dropped;    /* lines refused since the last one written */
};

/* True when a line may be written now; then *dropped is how many were
 * refused since the last one (to be named in the line). */
int cd_log_budget_take(struct cd_log_budget *b, unsigned *dropped);

#endif
