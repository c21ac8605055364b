/* cairn error codes: one table for the whole project.
 *
 * Functions return int: 0 on success, a negative errno value for system
 * errors, or one of the CAIRN_E_* codes below (all <= -1000, so they never
 * collide with errno values). cairn_strerror() names both kinds.
 *
 * Human-readable detail (file:line, which input was wrong) travels in a
 * struct cairn_err that the caller owns; functions that can fail for reasons
 * a user must read take one as their last parameter (NULL is allowed).
 */
#ifndef CAIRN_COMMON_ERROR_H
#define CAIRN_COMMON_ERROR_H

#include <stddef.h>

#define CAIRN_ERRORS(X)                                                   \
    X(CAIRN_E_NOMEM, -1000, "out of memory")                              \
    X(CAIRN_E_INVAL, -1001, "invalid argument")                           \
    X(CAIRN_E_PARSE, -1002, "syntax error")                               \
    X(CAIRN_E_TOOBIG, -1003, "input exceeds limit")                       \
    X(CAIRN_E_NOTFOUND, -1004, "not found")                               \
    X(CAIRN_E_EXISTS, -1005, "already exists")                            \
    X(CAIRN_E_IO, -1006, "input/output error")                            \
    X(CAIRN_E_DIGEST, -1007, "digest mismatch")                           \
    X(CAIRN_E_OUTSIDE, -1008, "path outside the build context")           \
    X(CAIRN_E_DB, -1009, "database error")                                \
    X(CAIRN_E_ARCHIVE, -1010, "archive error")                            \
    X(CAIRN_E_CRYPTO, -1011, "cryptography error")                        \
    X(CAIRN_E_UNSUPPORTED, -1012, "not supported")                        \
    X(CAIRN_E_RPC, -1013, "remote call failed")                           \
    X(CAIRN_E_AUTH, -1014, "not authorised")                              \
    X(CAIRN_E_FULL, -1015, "storage full")                                \
    X(CAIRN_E_CORRUPT, -1016, "corrupt data")                             \
    X(CAIRN_E_TIMEOUT, -1017, "timed out")                                \
    X(CAIRN_E_FAILED, -1018, "command failed")

enum cairn_error {
    CAIRN_OK = 0,
#define CAIRN_ERROR_ENUM(name, value, text) name = (value),
    CAIRN_ERRORS(CAIRN_ERROR_ENUM)
#undef CAIRN_ERROR_ENUM
};

/* Static, never-NULL description of code (a CAIRN_E_* or a negative errno).
 * Thread-safe. */
const char *cairn_strerror(int code);

#define CAIRN_ERR_MSG_MAX 1024

/* Detail for a failure: code plus a sentence for the user. Owned by the
 * caller, usually on its stack; no heap. */
struct cairn_err {
    int code;
    char msg[CAIRN_ERR_MSG_MAX];
};

/* Records code and a printf-style message in err (if err is not NULL) and
 * returns code, so callers can write `return cairn_err_set(err, ...)`.
 * An earlier message is overwritten. */
int cairn_err_set(struct cairn_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (keeps the code). No-op on NULL. */
void cairn_err_prefix(struct cairn_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears err (code 0, empty message). No-op on NULL. */
void cairn_err_clear(struct cairn_err *err);

#endif
