#include "field.h"

#include "common/error.h"

#include <stdint.h>
#include <string.h>

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

int ck_field_append(struct cairn_buf *b, const void *p, size_t n)
{
    uint8_t len[8];
    put_be64(len, n);
    int rc = cairn_buf_reserve(b, sizeof len + n);
    if (rc)
        return rc;
    cairn_buf_append(b, len, sizeof len);
    return cairn_buf_append(b, p, n);
}

int ck_field_append_str(struct cairn_buf *b, const char *s)
{
    return ck_field_append(b, s, strlen(s));
}

int ck_field_hash(struct ck_sha256 *h, const void *p, size_t n)
{
    uint8_t len[8];
    put_be64(len, n);
    int rc = ck_sha256_update(h, len, sizeof len);
    if (rc)
        return rc;
    return ck_sha256_update(h, p, n);
}

int ck_field_hash_str(struct ck_sha256 *h, const char *s)
{
    return ck_field_hash(h, s, strlen(s));
}

int ck_field_next(const void *material, size_t len, size_t *pos,
                  const void **p, size_t *n)
{
    const uint8_t *m = material;
    if (*pos > len || len - *pos < 8)
        return CAIRN_E_CORRUPT;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | m[*pos + (size_t)i];
    if (v > len - *pos - 8)
        return CAIRN_E_CORRUPT;
    *p = m + *pos + 8;
    *n = (size_t)v;
    *pos += 8 + (size_t)v;
    return 0;
}
