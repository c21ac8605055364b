#include "server/telemetry/log.h"

#include "common/error.h"
#include "common/utf8.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
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

/* Written once at start-up, before any thread exists, then only read. */
static enum cd_log_format log_format = CD_LOG_TEXT;

int cd_log_format_parse(const char *name, enum cd_log_format *out)
{
    if (strcmp(name, "text") == 0 || strcmp(name, "json") == 0) {
        *out = name[0] == 't' ? CD_LOG_TEXT : CD_LOG_JSON;
        return 0;
    }
    return CAIRN_E_INVAL;
}

void cd_log_format_set(enum cd_log_format format) { log_format = format; }

/* Inputs are capped so that the escaped line always fits LOG_LINE_MAX: a
 * byte escapes to at most 6 ("\u001f"). */
#define MSG_MAX 1024
#define STR_MAX 256
#define FIELDS_MAX 16
#define LOG_LINE_MAX (MSG_MAX * 6 + FIELDS_MAX * (STR_MAX * 6 + 96) + 128)

struct line {
    char *p;
    size_t n, len;
};

static void put(struct line *l, const char *s, size_t n)
{
    /* Truncates (never overflows); the caps above keep it from happening. */
    if (l->len + n >= l->n)
        n = l->len + 1 < l->n ? l->n - l->len - 1 : 0;
    memcpy(l->p + l->len, s, n);
    l->len += n;
    l->p[l->len] = '\0';
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

/* s (at most cap bytes of it) as a JSON string body: quotes, backslashes
 * and control characters escaped, bytes that are not UTF-8 written as
 * U+FFFD. */
static void json_str(struct line *l, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t w = cairn_utf8_decode(s + i, n - i, &r);
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(l, esc);
        } else if (r == CAIRN_UTF8_REPLACEMENT && w == 1) {
            puts_(l, "\xef\xbf\xbd");
        } else {
            put(l, s + i, w);
        }
        i += w;
    }
}

/* s as a text value: as is, quoted (JSON-style) when it is empty or holds
 * a space, a quote or a control character. */
static void text_str(struct line *l, const char *s)
{
    bool quote = s[0] == '\0';
    for (const char *p = s; *p != '\0' && !quote; p++)
        quote = *p == ' ' || *p == '"' || (unsigned char)*p < 0x20;
    if (quote)
        puts_(l, "\"");
    json_str(l, s, STR_MAX);
    if (quote)
        puts_(l, "\"");
}

void cd_log_line_format(enum cd_log_format format, enum cd_log_level level, const char *msg,
                        const struct cd_log_field *f, size_t nf, char *out, size_t n)
{
    struct line l = {out, n, 0};
    if (n == 0)
        return;
    out[0] = '\0';
    char ts_s[96], num[48];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(ts_s, sizeof ts_s, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    bool json = format == CD_LOG_JSON;
    if (nf > FIELDS_MAX)
        nf = FIELDS_MAX;
    if (json) {
        puts_(&l, "{\"time\":\"");
        puts_(&l, ts_s);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        puts_(&l, "\",\"msg\":\"");
        json_str(&l, msg, MSG_MAX);
        puts_(&l, "\"");
    } else {
        /* Text lines stay as they always were: the message as written. */
        puts_(&l, ts_s);
        puts_(&l, " ");
        puts_(&l, level_names[level]);
        puts_(&l, " ");
        put(&l, msg, strnlen(msg, MSG_MAX));
    }
    for (size_t i = 0; i < nf; i++) {
        puts_(&l, json ? ",\"" : " ");
        puts_(&l, f[i].key);
        puts_(&l, json ? "\":" : "=");
        switch (f[i].type) {
        case CD_LOG_STR:
            if (json) {
                puts_(&l, "\"");
                json_str(&l, f[i].str ? f[i].str : "", STR_MAX);
                puts_(&l, "\"");
            } else {
                text_str(&l, f[i].str ? f[i].str : "");
            }
            break;
        case CD_LOG_INT:
            snprintf(num, sizeof num, "%lld", f[i].num);
            puts_(&l, num);
            break;
        case CD_LOG_SECONDS:
            snprintf(num, sizeof num, "%.6f", f[i].seconds);
            puts_(&l, num);
            break;
        }
    }
    if (json)
        puts_(&l, "}");
}

void cd_log_fields(enum cd_log_level level, const char *msg, const struct cd_log_field *f,
                   size_t n)
{
    if (!cd_log_enabled(level))
        return;
    char line[LOG_LINE_MAX];
    cd_log_line_format(log_format, level, msg, f, n, line, sizeof line);
    /* One fprintf per line so lines from worker threads never interleave. */
    fprintf(stderr, "%s\n", line);
}

void cd_log(enum cd_log_level level, const char *fmt, ...)
{
    if (!cd_log_enabled(level))
        return;
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cd_log_fields(level, msg, NULL, 0);
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
