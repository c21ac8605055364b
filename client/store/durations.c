/* The step-duration history (durations.h): a direct-mapped table of
 * fixed-size records in one file under the store root. */
#include "client/store/durations.h"

#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DURATION_ID_BYTES 28
#define DURATION_REC 32 /* id bytes, then the milliseconds (little endian) */

int cairn_duration_id(size_t stage, int number, const char *text, uint8_t out[CK_SHA256_LEN])
{
    struct ck_sha256 *h = NULL;
    int rc = ck_sha256_new(&h);
    if (rc)
        return rc;
    char head[64];
    int n = snprintf(head, sizeof head, "cairn-step-duration-v1\n%zu\n%d\n", stage, number);
    rc = ck_sha256_update(h, head, (size_t)n);
    if (!rc)
        rc = ck_sha256_update(h, text, strlen(text));
    if (!rc)
        rc = ck_sha256_final(h, out);
    ck_sha256_free(h);
    return rc;
}

static int duration_path(struct cairn_store *st, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/step-durations", cairn_store_root(st));
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The slot of id: its last bytes, which the record does not repeat. */
static off_t duration_slot(const uint8_t id[CK_SHA256_LEN])
{
    uint32_t v = (uint32_t)id[CK_SHA256_LEN - 2] << 8 | id[CK_SHA256_LEN - 1];
    return (off_t)(v % CAIRN_DURATION_SLOTS) * DURATION_REC;
}

int cairn_duration_get(struct cairn_store *st, const uint8_t id[CK_SHA256_LEN], int64_t *ms)
{
    char path[PATH_MAX];
    int rc = duration_path(st, path, sizeof path);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CAIRN_E_NOTFOUND : -errno;
    uint8_t rec[DURATION_REC];
    ssize_t got = pread(fd, rec, sizeof rec, duration_slot(id));
    rc = got < 0 ? -errno : 0;
    close(fd);
    if (rc)
        return rc;
    if (got != (ssize_t)sizeof rec || memcmp(rec, id, DURATION_ID_BYTES) != 0)
        return CAIRN_E_NOTFOUND;
    uint32_t v = (uint32_t)rec[28] | (uint32_t)rec[29] << 8 | (uint32_t)rec[30] << 16 |
                 (uint32_t)rec[31] << 24;
    /* The file is ours, but a damaged one must not yield nonsense. */
    if (v == 0 || v > CAIRN_DURATION_MAX_MS)
        return CAIRN_E_NOTFOUND;
    *ms = v;
    return 0;
}

int cairn_duration_put(struct cairn_store *st, const uint8_t id[CK_SHA256_LEN], int64_t ms)
{
    char path[PATH_MAX];
    int rc = duration_path(st, path, sizeof path);
    if (rc)
        return rc;
    if (ms < 1)
        ms = 1;
    if (ms > CAIRN_DURATION_MAX_MS)
        ms = CAIRN_DURATION_MAX_MS;
    uint8_t rec[DURATION_REC];
    memcpy(rec, id, DURATION_ID_BYTES);
    for (int i = 0; i < 4; i++)
        rec[28 + i] = (uint8_t)((uint64_t)ms >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    ssize_t put = pwrite(fd, rec, sizeof rec, duration_slot(id));
    rc = put < 0 ? -errno : put != (ssize_t)sizeof rec ? -EIO : 0;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    return rc;
}
