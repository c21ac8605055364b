/* PUT from a file: one request, or a multipart upload with its parts in
 * parallel (s3.h). Parts stream from the file with pread; nothing is
 * buffered. */
#include "server/s3/s3.h"

#include "cachekey/digest.h"
#include "server/s3/answer.h"
#include "server/s3/request.h"
#include "server/s3/url.h"
#include "server/s3/xml.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIN_PART ((uint64_t)5 << 20)
#define MAX_PART ((uint64_t)5 << 30)
#define MIB ((uint64_t)1 << 20)
#define UPLOAD_ID_MAX 1024
#define MAX_WIDE_PART ((uint64_t)512 << 20)
/* A streamed upload aims at this many parts, of at most MAX_STREAM_PART
 * (cd_s3_stream_part_size). */
#define STREAM_PARTS 4
#define MAX_STREAM_PART ((uint64_t)64 << 20)

int cd_s3_parts_plan(uint64_t size, size_t part_size, uint64_t *psize,
                     unsigned *nparts)
{
    uint64_t ps = part_size > MIN_PART ? part_size : MIN_PART;
    if (size <= part_size || size <= ps) {
        if (size > MAX_PART)
            return CAIRN_E_TOOBIG;
        *psize = size;
        *nparts = 1;
        return 0;
    }
    if ((size + ps - 1) / ps > CD_S3_MAX_PARTS) {
        ps = (size + CD_S3_MAX_PARTS - 1) / CD_S3_MAX_PARTS;
        ps = (ps + MIB - 1) / MIB * MIB;
    }
    if (ps > MAX_PART)
        return CAIRN_E_TOOBIG;
    *psize = ps;
    *nparts = (unsigned)((size + ps - 1) / ps);
    return 0;
}

static int put_one(struct cd_s3 *s3, const char *key, int fd, uint64_t size,
                   struct cairn_err *err)
{
    struct cd_s3_req r;
    int rc = cd_s3_req_init(s3, &r, "PUT", key, NULL, err);
    if (rc == 0) {
        r.from_fd = true;
        r.fd = fd;
        r.fd_len = size;
        rc = cd_s3_req_run(s3, &r, err);
    }
    cd_s3_req_free(&r);
    return rc;
}

/* query = name=ESCAPED(value)[&...] for the upload id. */
static int upload_query(struct cairn_buf *q, unsigned part, const char *id)
{
    cairn_buf_reset(q);
    int rc = part ? cairn_buf_printf(q, "partNumber=%u&uploadId=", part)
                  : cairn_buf_puts(q, "uploadId=");
    if (rc == 0)
        rc = cd_s3_url_escape(q, id, strlen(id), false);
    return rc;
}

/* POST ?uploads=: the new upload's id into id. */
static int initiate(struct cd_s3 *s3, const char *key, char *id,
                    struct cairn_err *err)
{
    struct cd_s3_req r;
    int rc = cd_s3_req_init(s3, &r, "POST", key, "uploads=", err);
    if (rc == 0) {
        r.body = "";
        r.body_sha = CD_S3_SHA_EMPTY;
        rc = cd_s3_req_run(s3, &r, err);
    }
    if (rc == 0 && cd_s3_xml_text(r.answer.data ? r.answer.data : "",
                                  r.answer.len, "UploadId", id,
                                  UPLOAD_ID_MAX + 1) != 0)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "S3 %s: answer has no usable UploadId", r.what);
    cd_s3_req_free(&r);
    return rc;
}

static int xml_escaped(struct cairn_buf *b, const char *s)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        switch (*s) {
        case '&': rc = cairn_buf_puts(b, "&amp;"); break;
        case '<': rc = cairn_buf_puts(b, "&lt;"); break;
        case '>': rc = cairn_buf_puts(b, "&gt;"); break;
        default: rc = cairn_buf_putc(b, *s); break;
        }
    }
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cd_s3_multipart_etag(const char *const *etags, unsigned n, char *out,
                         size_t cap)
{
    uint8_t *bin = malloc((size_t)n * 16 + 1);
    if (bin == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        const char *e = etags[i];
        size_t l = strlen(e);
        if (l == 34 && e[0] == '"' && e[33] == '"')
            e++, l -= 2;
        for (size_t j = 0; rc == 0 && j < 32; j++) {
            int v = l != 32 ? -1 : hexval(e[j]);
            if (v < 0)
                rc = CAIRN_E_INVAL;
            else
                bin[(size_t)i * 16 + j / 2] =
                    (uint8_t)(j % 2 ? bin[(size_t)i * 16 + j / 2] | v : v << 4);
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (rc == 0 && EVP_Digest(bin, (size_t)n * 16, md, &mdlen, EVP_md5(),
                              NULL) != 1)
        rc = CAIRN_E_NOMEM;
    free(bin);
    if (rc != 0)
        return rc;
    static const char hex[] = "0123456789abcdef";
    if (cap < 2 * (size_t)mdlen + 12)
        return CAIRN_E_TOOBIG;
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    snprintf(out + 2 * mdlen, cap - 2 * mdlen, "-%u", n);
    return 0;
}

/* CompleteMultipartUpload answered NoSuchUpload: an earlier attempt may
 * have completed the upload and its answer been lost (S3 forgets a
 * completed upload's id). Accepted only if the object is there
 * now with exactly size bytes and the ETag these very parts make: that
 * ETag is a hash of the parts' MD5s, so it says the object is this
 * upload's bytes without reading them back. Anything else is the
 * original failure. */
static int complete_lost(struct cd_s3 *s3, const char *key,
                         const char *const *etags, unsigned n, uint64_t size,
                         struct cairn_err *err)
{
    char want[64];
    int rc = cd_s3_multipart_etag(etags, n, want, sizeof want);
    if (rc != 0)
        return rc == CAIRN_E_INVAL ? CAIRN_E_NOTFOUND : rc;
    struct cd_s3_req r;
    struct cairn_err herr = {0};
    if ((rc = cd_s3_req_init(s3, &r, "HEAD", key, NULL, &herr)) != 0)
        return CAIRN_E_NOTFOUND;
    rc = cd_s3_req_run(s3, &r, &herr);
    const char *got = r.etag;
    size_t gl = strlen(got);
    if (gl >= 2 && got[0] == '"' && got[gl - 1] == '"')
        got++, gl -= 2;
    bool same = rc == 0 && r.has_length && r.content_length == size &&
                gl == strlen(want) && strncasecmp(got, want, gl) == 0;
    cd_s3_req_free(&r);
    if (!same)
        return CAIRN_E_NOTFOUND;
    cairn_err_clear(err);
    return 0;
}

/* POST ?uploadId=: the parts, by number and ETag, become the object
 * (size bytes in all). */
static int complete(struct cd_s3 *s3, const char *key, const char *id,
                    const char *const *etags, unsigned n, uint64_t size,
                    struct cairn_err *err)
{
    struct cd_s3_req r;
    struct cairn_buf q, xml;
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    cairn_buf_init(&q, 0);
    cairn_buf_init(&xml, 0);
    int rc = upload_query(&q, 0, id);
    rc = rc ? rc : cairn_buf_puts(&xml, "<CompleteMultipartUpload>");
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rc = cairn_buf_printf(&xml, "<Part><PartNumber>%u</PartNumber><ETag>",
                              i + 1);
        rc = rc ? rc : xml_escaped(&xml, etags[i]);
        rc = rc ? rc : cairn_buf_puts(&xml, "</ETag></Part>");
    }
    rc = rc ? rc : cairn_buf_puts(&xml, "</CompleteMultipartUpload>");
    rc = rc ? rc : ck_sha256(xml.data, xml.len, bin);
    if (rc) {
        memset(&r, 0, sizeof r);
        rc = cairn_err_set(err, rc, "S3 complete %s: %s", key,
                           cairn_strerror(rc));
        goto out;
    }
    ck_hex_encode(bin, hex);
    rc = cd_s3_req_init(s3, &r, "POST", key, q.data, err);
    if (rc)
        goto out;
    r.body = xml.data;
    r.body_len = xml.len;
    r.body_sha = hex;
    rc = cd_s3_req_run(s3, &r, err);
    /* S3 may answer 200 and then report the failure in the body. */
    const char *a = r.answer.data ? r.answer.data : "";
    char code[64];
    /* NoSuchUpload: maybe completed by an attempt whose answer was lost
     * (retried here, or by libcurl itself on a reused connection that
     * died before answering: so whether there was a retry is not known). */
    if (rc == CAIRN_E_NOTFOUND &&
        cd_s3_xml_text(a, r.answer.len, "Code", code, sizeof code) == 0 &&
        strcmp(code, "NoSuchUpload") == 0) {
        if (complete_lost(s3, key, etags, n, size, err) == 0)
            rc = 0;
    } else if (rc == 0 && cd_s3_xml_text(a, r.answer.len, "Code", code,
                                         sizeof code) == 0) {
        rc = cd_s3_answer_error(r.status, a, r.answer.len, r.what, err);
    } else if (rc == 0 && strstr(a, "CompleteMultipartUploadResult") == NULL)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "S3 %s: answer is not a completed upload", r.what);
out:
    cd_s3_req_free(&r);
    cairn_buf_free(&q);
    cairn_buf_free(&xml);
    return rc;
}

/* DELETE ?uploadId=, best effort: the upload failed already, and an
 * upload left behind costs only space (a lifecycle rule can reap it). */
static void abort_upload(struct cd_s3 *s3, const char *key, const char *id)
{
    struct cd_s3_req r;
    struct cairn_buf q;
    memset(&r, 0, sizeof r);
    cairn_buf_init(&q, 0);
    if (upload_query(&q, 0, id) == 0 &&
        cd_s3_req_init(s3, &r, "DELETE", key, q.data, NULL) == 0)
        cd_s3_req_run(s3, &r, NULL);
    cd_s3_req_free(&r);
    cairn_buf_free(&q);
}

static int put_parts(struct cd_s3 *s3, const char *key, int fd, uint64_t size,
                     uint64_t psize, unsigned n, struct cairn_err *err)
{
    char id[UPLOAD_ID_MAX + 1];
    struct cairn_buf q;
    cairn_buf_init(&q, 0);
    struct cd_s3_req *parts = calloc(n, sizeof *parts);
    struct cd_s3_req **order = calloc(n, sizeof *order);
    const char **etags = calloc(n, sizeof *etags);
    unsigned made = 0;
    bool started = false;
    int rc = 0;
    if (parts == NULL || order == NULL || etags == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3 PUT %s", key);
        goto out;
    }
    rc = initiate(s3, key, id, err);
    if (rc)
        goto out;
    started = true;
    for (; made < n; made++) {
        struct cd_s3_req *r = &parts[made];
        rc = upload_query(&q, made + 1, id);
        rc = rc ? cairn_err_set(err, rc, "S3 PUT %s", key)
                : cd_s3_req_init(s3, r, "PUT", key, q.data, err);
        if (rc) {
            made++;
            goto out;
        }
        r->from_fd = true;
        r->fd = fd;
        r->fd_off = (uint64_t)made * psize;
        r->fd_len = made + 1 < n ? psize : size - r->fd_off;
        order[made] = r;
    }
    rc = cd_s3_batch_run(s3, order, n, s3->parallel, NULL, err);
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        etags[i] = parts[i].etag;
        if (parts[i].etag[0] == '\0')
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "S3 %s: answer without ETag", parts[i].what);
    }
    if (rc == 0)
        rc = complete(s3, key, id, etags, n, size, err);
out:
    if (rc && started)
        abort_upload(s3, key, id);
    for (unsigned i = 0; parts != NULL && i < made; i++)
        cd_s3_req_free(&parts[i]);
    free(parts);
    free(order);
    free(etags);
    cairn_buf_free(&q);
    return rc;
}

/* The part size for an upload of size bytes: part_size, or more so that
 * the parts are no more than the requests in flight. Parts stream from the
 * file, so a bigger part costs no memory, while every part is a request
 * (and, on some servers, an object) of its own. Capped so that a failed
 * part is not a costly retry. */
static uint64_t upload_part_size(const struct cd_s3 *s3, uint64_t size)
{
    uint64_t ps = s3->part_size;
    if (s3->parallel <= 1 || size <= ps)
        return ps;
    uint64_t wide = (size + s3->parallel - 1) / s3->parallel;
    wide = (wide + MIB - 1) / MIB * MIB;
    if (wide > MAX_WIDE_PART)
        wide = MAX_WIDE_PART;
    return wide > ps ? wide : ps;
}

size_t cd_s3_stream_part_size(const struct cd_s3 *s3, uint64_t size)
{
    uint64_t ps = s3->part_size;
    uint64_t quarter = (size + STREAM_PARTS - 1) / STREAM_PARTS;
    quarter = (quarter + MIB - 1) / MIB * MIB;
    if (quarter > MAX_STREAM_PART)
        quarter = MAX_STREAM_PART;
    return (size_t)(quarter > ps ? quarter : ps);
}

int cd_s3_put_fd(struct cd_s3 *s3, const char *key, int fd, uint64_t size,
                 struct cairn_err *err)
{
    uint64_t psize;
    unsigned n;
    if (cd_s3_parts_plan(size, (size_t)upload_part_size(s3, size), &psize,
                         &n) != 0)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "S3 PUT %s: %" PRIu64 " bytes is past the "
                             "largest object (%d parts of 5 GiB)",
                             key, size, CD_S3_MAX_PARTS);
    if (n == 1)
        return put_one(s3, key, fd, size, err);
    return put_parts(s3, key, fd, size, psize, n, err);
}

/* --- a multipart upload fed while its bytes arrive ----------------------- */

#define MPU_THREADS_MAX 16

struct mpu_part {
    int fd;
    uint64_t off, len;
    char etag[130];
};

struct cd_s3_mpu {
    struct cd_s3 *s3;
    char key[CD_S3_MAX_KEY];
    char id[UPLOAD_ID_MAX + 1];
    unsigned nparts;
    struct mpu_part *parts;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* parts[0..queued) are queued, [0..taken) taken by a worker, done of
     * them finished (mu). */
    unsigned queued, taken, done;
    bool closing; /* complete: no more parts come; workers end when idle */
    bool stop;    /* abort: workers end after their part in flight */
    int rc;       /* the first part's failure, with err */
    struct cairn_err err;
    unsigned nthreads;
    pthread_t threads[MPU_THREADS_MAX];
};

size_t cd_s3_part_size(const struct cd_s3 *s3)
{
    return s3->part_size;
}

/* PUT ?partNumber=i+1&uploadId=: one part from its fd. */
static int mpu_send(struct cd_s3_mpu *m, unsigned i, struct cairn_err *err)
{
    struct mpu_part *p = &m->parts[i];
    struct cd_s3_req r;
    struct cairn_buf q;
    cairn_buf_init(&q, 0);
    memset(&r, 0, sizeof r);
    int rc = upload_query(&q, i + 1, m->id);
    rc = rc ? cairn_err_set(err, rc, "S3 PUT %s", m->key)
            : cd_s3_req_init(m->s3, &r, "PUT", m->key, q.data, err);
    if (rc == 0) {
        r.from_fd = true;
        r.fd = p->fd;
        r.fd_off = p->off;
        r.fd_len = p->len;
        rc = cd_s3_req_run(m->s3, &r, err);
    }
    if (rc == 0 && r.etag[0] == '\0')
        rc = cairn_err_set(err, CAIRN_E_CORRUPT, "S3 %s: answer without ETag",
                           r.what);
    if (rc == 0)
        memcpy(p->etag, r.etag, sizeof p->etag);
    cd_s3_req_free(&r);
    cairn_buf_free(&q);
    return rc;
}

static void *mpu_worker(void *arg)
{
    struct cd_s3_mpu *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->stop && m->rc == 0 && !m->closing && m->taken == m->queued)
            pthread_cond_wait(&m->cond, &m->mu);
        if (m->stop || m->rc != 0 || m->taken == m->queued)
            break;
        unsigned i = m->taken++;
        pthread_mutex_unlock(&m->mu);
        struct cairn_err err = {0};
        int rc = mpu_send(m, i, &err);
        pthread_mutex_lock(&m->mu);
        if (rc != 0 && m->rc == 0) {
            m->rc = rc;
            m->err = err;
        }
        m->done++;
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* Ends the workers (after their part in flight) and frees m's memory; the
 * upload itself is the caller's (completed or aborted). */
static void mpu_free(struct cd_s3_mpu *m, bool stop)
{
    pthread_mutex_lock(&m->mu);
    m->closing = true;
    m->stop = m->stop || stop;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    for (unsigned i = 0; i < m->nthreads; i++)
        pthread_join(m->threads[i], NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    free(m->parts);
    free(m);
}

int cd_s3_mpu_begin(struct cd_s3 *s3, const char *key, unsigned nparts,
                    struct cd_s3_mpu **out, struct cairn_err *err)
{
    if (nparts < 2 || nparts > CD_S3_MAX_PARTS ||
        strlen(key) >= CD_S3_MAX_KEY)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 PUT %s: %u parts is not a multipart upload",
                             key, nparts);
    struct cd_s3_mpu *m = calloc(1, sizeof *m);
    if (m == NULL || (m->parts = calloc(nparts, sizeof *m->parts)) == NULL) {
        free(m);
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3 PUT %s", key);
    }
    m->s3 = s3;
    m->nparts = nparts;
    memcpy(m->key, key, strlen(key) + 1);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cond, NULL);
    int rc = initiate(s3, key, m->id, err);
    if (rc != 0) {
        mpu_free(m, true);
        return rc;
    }
    unsigned want = s3->parallel < nparts ? s3->parallel : nparts;
    if (want > MPU_THREADS_MAX)
        want = MPU_THREADS_MAX;
    for (; m->nthreads < want; m->nthreads++) {
        if (pthread_create(&m->threads[m->nthreads], NULL, mpu_worker, m) !=
            0)
            break;
    }
    if (m->nthreads == 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3 PUT %s: no thread", key);
        cd_s3_mpu_abort(m);
        return rc;
    }
    *out = m;
    return 0;
}

int cd_s3_mpu_part(struct cd_s3_mpu *m, int fd, uint64_t off, uint64_t len,
                   struct cairn_err *err)
{
    pthread_mutex_lock(&m->mu);
    int rc = m->rc;
    if (rc != 0) {
        if (err != NULL)
            *err = m->err;
    } else if (m->queued == m->nparts || m->closing) {
        rc = cairn_err_set(err, CAIRN_E_INVAL, "S3 PUT %s: part %u of %u",
                           m->key, m->queued + 1, m->nparts);
    } else {
        struct mpu_part *p = &m->parts[m->queued++];
        p->fd = fd;
        p->off = off;
        p->len = len;
        pthread_cond_signal(&m->cond);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int cd_s3_mpu_complete(struct cd_s3_mpu *m, struct cairn_err *err)
{
    pthread_mutex_lock(&m->mu);
    m->closing = true;
    pthread_cond_broadcast(&m->cond);
    while (m->rc == 0 && m->done < m->queued)
        pthread_cond_wait(&m->cond, &m->mu);
    int rc = m->rc;
    if (rc != 0 && err != NULL)
        *err = m->err;
    else if (rc == 0 && m->queued != m->nparts)
        rc = cairn_err_set(err, CAIRN_E_INVAL, "S3 PUT %s: %u of %u parts",
                           m->key, m->queued, m->nparts);
    pthread_mutex_unlock(&m->mu);
    if (rc != 0) {
        cd_s3_mpu_abort(m);
        return rc;
    }
    const char **etags = calloc(m->nparts, sizeof *etags);
    if (etags == NULL) {
        cd_s3_mpu_abort(m);
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3 PUT %s", m->key);
    }
    uint64_t size = 0;
    for (unsigned i = 0; i < m->nparts; i++) {
        etags[i] = m->parts[i].etag;
        size += m->parts[i].len;
    }
    rc = complete(m->s3, m->key, m->id, etags, m->nparts, size, err);
    free(etags);
    if (rc != 0) {
        cd_s3_mpu_abort(m);
        return rc;
    }
    mpu_free(m, false);
    return 0;
}

void cd_s3_mpu_abort(struct cd_s3_mpu *m)
{
    if (m == NULL)
        return;
    struct cd_s3 *s3 = m->s3;
    char key[CD_S3_MAX_KEY], id[UPLOAD_ID_MAX + 1];
    memcpy(key, m->key, sizeof key);
    memcpy(id, m->id, sizeof id);
    mpu_free(m, true);
    /* After the workers: a part still in flight would outlive the abort. */
    if (id[0] != '\0')
        abort_upload(s3, key, id);
}
