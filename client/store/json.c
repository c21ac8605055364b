#include "client/store/json.h"

#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

json_t *cairn_json_stringn(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    /* The common case, valid UTF-8, costs one check and no copy. */
    json_t *j = json_stringn(s, n);
    if (j != NULL)
        return j;
    /* Each invalid byte grows to the 3 bytes of U+FFFD at most. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *fixed = malloc(n * 3 + 1);
    if (fixed == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t w = cairn_utf8_decode(s + i, n - i, &r);
        /* Width 1 with U+FFFD is an invalid byte; a U+FFFD written out in
         * the input is 3 bytes wide and copied as it is. */
        if (r == CAIRN_UTF8_REPLACEMENT && w == 1) {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(fixed + o, s + i, w);
            o += w;
        }
        i += w;
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

json_t *cairn_json_string(const char *s)
{
    return s ? cairn_json_stringn(s, strlen(s)) : NULL;
}
