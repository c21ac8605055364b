#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cairn_strerror(int code)
{
    switch (code) {
    case CAIRN_OK:
        return "success";
#define CAIRN_ERROR_CASE(name, value, text) \
    case name:                              \
        return text;
        CAIRN_ERRORS(CAIRN_ERROR_CASE)
#undef CAIRN_ERROR_CASE
    default:
        break;
    }
    if (code < 0 && code > -1000) {
        /* strerror() is not guaranteed thread-safe, but glibc returns static
         * strings for every known errno; unknown values get a generic text. */
        return strerror(-code);
    }
    return "unknown error";
}

int cairn_err_set(struct cairn_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void cairn_err_prefix(struct cairn_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[CAIRN_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the message is for people. */
    size_t plen = strlen(prefix);
    if (plen > sizeof err->msg - 3)
        plen = sizeof err->msg - 3;
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    size_t rest = sizeof err->msg - plen - 3;
    size_t olen = strnlen(old, rest);
    memcpy(err->msg + plen + 2, old, olen);
    err->msg[plen + 2 + olen] = '\0';
}

void cairn_err_clear(struct cairn_err *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
