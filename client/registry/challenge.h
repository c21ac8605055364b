/* The WWW-Authenticate header of a registry's 401 (RFC 7235 syntax), as
 * the distribution token spec uses it:
 *
 *   Basic realm="Registry Realm"
 *   Bearer realm="https://auth.example/token",service="registry.example",
 *          scope="repository:library/busybox:pull",error="insufficient_scope"
 *
 * The value may hold several challenges; Bearer is taken over Basic, other
 * schemes are skipped. Parameter values are tokens or quoted strings with
 * backslash escapes. The header comes from the network: it is refused past
 * CAIRN_REG_CHALLENGE_MAX bytes, with a control character, a repeated or
 * overlong parameter, or a Bearer challenge whose realm is not an http(s)
 * URL. Thread-safe (no shared state).
 */
#ifndef CAIRN_CLIENT_REGISTRY_CHALLENGE_H
#define CAIRN_CLIENT_REGISTRY_CHALLENGE_H

#include "common/error.h"

#define CAIRN_REG_CHALLENGE_MAX 8192

enum cairn_reg_scheme {
    CAIRN_REG_SCHEME_BASIC = 1,
    CAIRN_REG_SCHEME_BEARER,
};

struct cairn_reg_challenge {
    enum cairn_reg_scheme scheme;
    char *realm;   /* owned; NULL when absent (allowed for Basic) */
    char *service; /* owned; NULL when absent */
    char *scope;   /* owned; space-separated scopes, NULL when absent */
    char *error;   /* owned; e.g. "insufficient_scope", NULL when absent */
};

/* Parses header into *out (owned by the caller: cairn_reg_challenge_clear).
 * CAIRN_E_PARSE or CAIRN_E_TOOBIG for a malformed header, and
 * CAIRN_E_UNSUPPORTED when it offers neither Basic nor Bearer; the message
 * quotes the start of the header. */
int cairn_reg_challenge_parse(const char *header,
                              struct cairn_reg_challenge *out,
                              struct cairn_err *err);

void cairn_reg_challenge_clear(struct cairn_reg_challenge *c);

#endif
