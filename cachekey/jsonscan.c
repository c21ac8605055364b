/* A JSON (RFC 8259) scanner over a text: see cachekey/jsonscan.h. */
#include "cachekey/jsonscan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void ck_jsonscan_ws(struct ck_jsonscan *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' ||
                           j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static void json_put(struct ck_jsonscan *j, const char *b, size_t n)
{
    if (j->out && j->rc == 0)
        j->rc = cairn_buf_append(j->out, b, n);
}

static void json_put_cp(struct ck_jsonscan *j, uint32_t cp)
{
    char b[4];
    if (cp == 0)
        j->has_nul = true;
    if (cp < 0x80) {
        b[0] = (char)cp;
        json_put(j, b, 1);
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        json_put(j, b, 2);
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        json_put(j, b, 3);
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        json_put(j, b, 4);
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if the
 * bytes are not valid UTF-8 (overlong, surrogate, past U+10FFFF, cut). */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool json_hex4(struct ck_jsonscan *j, size_t at, uint32_t *out)
{
    if (at + 4 > j->n)
        return false;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
        char c = j->s[at + k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

/* Decodes the string at j->i (on its opening quote). Invalid UTF-8 and lone
 * surrogates become U+FFFD, as Go's decoder (Docker's) does. */
bool ck_jsonscan_string(struct ck_jsonscan *j)
{
    j->i++;
    while (j->i < j->n) {
        unsigned char c = (unsigned char)j->s[j->i];
        if (c == '"') {
            j->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (j->i + 1 >= j->n)
                return false;
            char e = j->s[j->i + 1];
            j->i += 2;
            uint32_t cp;
            switch (e) {
            case '"': case '\\': case '/':
                json_put(j, &e, 1);
                break;
            case 'b': json_put(j, "\b", 1); break;
            case 'f': json_put(j, "\f", 1); break;
            case 'n': json_put(j, "\n", 1); break;
            case 'r': json_put(j, "\r", 1); break;
            case 't': json_put(j, "\t", 1); break;
            case 'u':
                if (!json_hex4(j, j->i, &cp))
                    return false;
                j->i += 4;
                if (cp >= 0xD800 && cp <= 0xDFFF) {
                    uint32_t lo;
                    if (cp < 0xDC00 && j->i + 6 <= j->n && j->s[j->i] == '\\' &&
                        j->s[j->i + 1] == 'u' && json_hex4(j, j->i + 2, &lo) &&
                        lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        j->i += 6;
                    } else {
                        cp = 0xFFFD;
                    }
                }
                json_put_cp(j, cp);
                break;
            default:
                return false;
            }
            continue;
        }
        if (c < 0x80) {
            json_put(j, (const char *)&j->s[j->i], 1);
            j->i++;
            continue;
        }
        size_t l = utf8_valid_len((const unsigned char *)j->s + j->i, j->n - j->i);
        if (l == 0) {
            json_put_cp(j, 0xFFFD);
            j->i++;
        } else {
            json_put(j, j->s + j->i, l);
            j->i += l;
        }
    }
    return false;
}

static bool json_digits(struct ck_jsonscan *j)
{
    size_t start = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
        j->i++;
    return j->i > start;
}

static bool json_number(struct ck_jsonscan *j)
{
    if (j->s[j->i] == '-')
        j->i++;
    if (j->i >= j->n)
        return false;
    if (j->s[j->i] == '0')
        j->i++;
    else if (!json_digits(j))
        return false;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (!json_digits(j))
            return false;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        if (!json_digits(j))
            return false;
    }
    return true;
}

static bool json_literal(struct ck_jsonscan *j, const char *lit)
{
    size_t l = strlen(lit);
    if (j->n - j->i < l || memcmp(j->s + j->i, lit, l) != 0)
        return false;
    j->i += l;
    return true;
}

/* Validates one value without keeping it. */
bool ck_jsonscan_value(struct ck_jsonscan *j, int depth)
{
    if (depth > CK_JSONSCAN_MAX_DEPTH)
        return false;
    ck_jsonscan_ws(j);
    if (j->i >= j->n)
        return false;
    char c = j->s[j->i];
    if (c == '"') {
        struct cairn_buf *saved = j->out;
        j->out = NULL;
        bool ok = ck_jsonscan_string(j);
        j->out = saved;
        return ok;
    }
    if (c == '[' || c == '{') {
        char close = c == '[' ? ']' : '}';
        j->i++;
        ck_jsonscan_ws(j);
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            return true;
        }
        for (;;) {
            if (close == '}') {
                ck_jsonscan_ws(j);
                if (j->i >= j->n || j->s[j->i] != '"' || !ck_jsonscan_value(j, depth + 1))
                    return false;
                ck_jsonscan_ws(j);
                if (j->i >= j->n || j->s[j->i] != ':')
                    return false;
                j->i++;
            }
            if (!ck_jsonscan_value(j, depth + 1))
                return false;
            ck_jsonscan_ws(j);
            if (j->i >= j->n)
                return false;
            if (j->s[j->i] == close) {
                j->i++;
                return true;
            }
            if (j->s[j->i] != ',')
                return false;
            j->i++;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return json_number(j);
    return json_literal(j, "true") || json_literal(j, "false") ||
           json_literal(j, "null");
}
