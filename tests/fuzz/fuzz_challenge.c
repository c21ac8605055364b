/* Fuzz target for what a registry's auth sends back: the WWW-Authenticate
 * parser (client/registry/challenge.c) and the token service's answer
 * (client/registry/token.c). Any bytes must parse or fail cleanly; a
 * parsed Bearer challenge always has an http(s) realm, and a parsed token
 * only visible ASCII. The first byte picks the parser. */
#include "client/registry/challenge.h"
#include "client/registry/token.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct cairn_err err;
    if (data[0] & 1) {
        struct cairn_reg_token t = {0};
        if (cairn_reg_token_parse(text, size - 1, 1796594400, &t, &err) == 0) {
            for (const char *p = t.token; *p; p++)
                assert(*p > 0x20 && *p < 0x7f);
            assert(t.ttl_ms > 0);
        }
        cairn_reg_token_clear(&t);
    } else {
        struct cairn_reg_challenge c = {0};
        if (cairn_reg_challenge_parse(text, &c, &err) == 0) {
            assert(c.scheme == CAIRN_REG_SCHEME_BASIC ||
                   c.scheme == CAIRN_REG_SCHEME_BEARER);
            assert(c.scheme != CAIRN_REG_SCHEME_BEARER ||
                   strncasecmp(c.realm, "http", 4) == 0);
        }
        cairn_reg_challenge_clear(&c);
    }
    free(text);
    return 0;
}
