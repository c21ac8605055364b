/* cairnd's log: one line per event on stderr, with a UTC timestamp and a
 * level; as text ("TIME LEVEL message k=v ...") or, with --log-format
 * json, one JSON object per line ({"time", "level", "msg", fields...}).
 * Thread-safe (each line is one fprintf, which stdio locks). */
#ifndef CAIRN_SERVER_LOG_H
#define CAIRN_SERVER_LOG_H

#include <stddef.h>

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

enum cd_log_format { CD_LOG_TEXT, CD_LOG_JSON };
/* Parses "text", "json". Returns 0 or CAIRN_E_INVAL; *out only on success. */
int cd_log_format_parse(const char *name, enum cd_log_format *out);
/* Call before starting threads (default text). */
void cd_log_format_set(enum cd_log_format format);

/* A named value of a structured line. */
enum cd_log_type { CD_LOG_STR, CD_LOG_INT, CD_LOG_SECONDS };
struct cd_log_field {
    const char *key;    /* a fixed name of ours: [a-z_]+ */
    enum cd_log_type type;
    const char *str;    /* CD_LOG_STR (NULL is written as "") */
    long long num;      /* CD_LOG_INT */
    double seconds;     /* CD_LOG_SECONDS */
};

/* One line with msg and fields: JSON members after time, level and msg;
 * in text, " key=value" after msg (strings quoted when they hold a space,
 * quote or are empty). Strings are escaped for JSON (control characters,
 * and bytes that are not UTF-8 become U+FFFD), so a client-chosen name
 * cannot break a line. */
void cd_log_fields(enum cd_log_level level, const char *msg, const struct cd_log_field *f,
                   size_t n);

/* Writes the line cd_log_fields would write into out (NUL-terminated,
 * truncated to n). For the tests. */
void cd_log_line_format(enum cd_log_format format, enum cd_log_level level, const char *msg,
                        const struct cd_log_field *f, size_t nf, char *out, size_t n);

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
