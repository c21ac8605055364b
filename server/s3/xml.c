/* Text of one element of an S3 XML answer (xml.h). */
#include "server/s3/xml.h"

#include "common/error.h"

#include <string.h>

static const char *find(const char *p, const char *end, const char *s,
                        size_t n)
{
    while ((size_t)(end - p) >= n) {
        const char *c = memchr(p, s[0], (size_t)(end - p) - n + 1);
        if (c == NULL)
            return NULL;
        if (memcmp(c, s, n) == 0)
            return c;
        p = c + 1;
    }
    return NULL;
}

/* The five entities XML predefines; anything else after '&' is kept as
 * it is (S3 answers use only these). */
static const struct {
    const char *name;
    char c;
} entities[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'},
                {"&quot;", '"'}, {"&apos;", '\''}};

/* Decodes s..e into out (when not NULL); returns the decoded length. */
static size_t decode(const char *s, const char *e, char *out)
{
    size_t o = 0;
    while (s < e) {
        char c = *s;
        size_t adv = 1;
        if (c == '&') {
            for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++) {
                size_t el = strlen(entities[i].name);
                if ((size_t)(e - s) >= el &&
                    memcmp(s, entities[i].name, el) == 0) {
                    c = entities[i].c;
                    adv = el;
                    break;
                }
            }
        }
        if (out != NULL)
            out[o] = c;
        o++;
        s += adv;
    }
    return o;
}

int cd_s3_xml_text(const char *body, size_t len, const char *tag, char *out,
                   size_t out_size)
{
    char open[80], close[81];
    size_t tl = strlen(tag);
    if (tl == 0 || tl + 3 > sizeof open || out_size == 0)
        return CAIRN_E_INVAL;
    open[0] = '<';
    memcpy(open + 1, tag, tl);
    open[tl + 1] = '>';
    close[0] = '<';
    close[1] = '/';
    memcpy(close + 2, tag, tl);
    close[tl + 2] = '>';
    const char *end = body + len;
    const char *s = find(body, end, open, tl + 2);
    if (s == NULL)
        return CAIRN_E_NOTFOUND;
    s += tl + 2;
    const char *e = find(s, end, close, tl + 3);
    if (e == NULL)
        return CAIRN_E_NOTFOUND;
    size_t need = decode(s, e, NULL);
    if (need + 1 > out_size)
        return CAIRN_E_TOOBIG;
    decode(s, e, out);
    out[need] = '\0';
    return 0;
}
