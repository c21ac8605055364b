/* The bucket session: open/close, the start-up check, whole-object PUT
 * from memory, DELETE (s3.h). */
#include "server/s3/s3.h"

#include "cachekey/digest.h"
#include "server/s3/answer.h"
#include "server/s3/request.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_PARALLEL 8
#define DEFAULT_PART_SIZE ((size_t)16 << 20)
#define MAX_PARALLEL 256
#define MIN_PART_SIZE ((size_t)64 << 10)
#define MAX_PART_SIZE ((size_t)5 << 30)
#define MAX_TIMEOUT_S 3600

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int cd_s3_open(const struct cd_s3_opts *opts, struct cd_s3 **out,
               struct cairn_err *err)
{
    struct cd_s3 *s3 = NULL;
    int rc;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3: libcurl init failed");
    if (opts->creds == NULL || opts->creds->access_key[0] == '\0' ||
        opts->creds->secret_key[0] == '\0')
        return cairn_err_set(err, CAIRN_E_INVAL, "S3: no credentials");
    const char *region = opts->region ? opts->region : "us-east-1";
    size_t rl = strlen(region);
    if (rl == 0 || rl > 64 || strspn(region, "abcdefghijklmnopqrstuvwxyz"
                                             "0123456789-") != rl)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 region must be 1-64 of a-z, 0-9 and '-'");
    if (opts->parallel > MAX_PARALLEL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 parallelism above %d", MAX_PARALLEL);
    if (opts->part_size != 0 &&
        (opts->part_size < MIN_PART_SIZE || opts->part_size > MAX_PART_SIZE))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 part size must be 64 KiB to 5 GiB");
    if (opts->timeout_s > MAX_TIMEOUT_S)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 timeout above %d s", MAX_TIMEOUT_S);
    s3 = calloc(1, sizeof *s3);
    if (s3 == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3: %s",
                             cairn_strerror(CAIRN_E_NOMEM));
    rc = cd_s3_url_parse(opts->url, &s3->where, err);
    if (rc == 0)
        rc = cd_s3_endpoint_parse(opts->endpoint, s3->endpoint, err);
    if (rc) {
        free(s3);
        return rc;
    }
    /* Virtual-host addressing puts the bucket in the host name, where
     * dots would break TLS certificate matching. */
    if (!opts->path_style && strchr(s3->where.bucket, '.') != NULL) {
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "S3 bucket %s has dots: use path-style addressing",
                           s3->where.bucket);
        free(s3);
        return rc;
    }
    snprintf(s3->sigv4, sizeof s3->sigv4, "aws:amz:%s:s3", region);
    s3->creds = *opts->creds;
    s3->path_style = opts->path_style;
    s3->timeout_s = opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S;
    s3->parallel = opts->parallel ? opts->parallel : DEFAULT_PARALLEL;
    s3->part_size = opts->part_size ? opts->part_size : DEFAULT_PART_SIZE;
    rc = cd_s3_pool_init(s3, err);
    if (rc) {
        cd_s3_close(s3);
        return rc;
    }
    *out = s3;
    return 0;
}

void cd_s3_close(struct cd_s3 *s3)
{
    if (s3 == NULL)
        return;
    cd_s3_pool_fini(s3);
    explicit_bzero(&s3->creds, sizeof s3->creds);
    free(s3);
}

int cd_s3_check(struct cd_s3 *s3, struct cairn_err *err)
{
    struct cd_s3_req r;
    int rc = cd_s3_req_init(s3, &r, "HEAD", NULL, NULL, err);
    if (rc == 0)
        rc = cd_s3_req_run(s3, &r, err);
    if (rc == CAIRN_E_AUTH || (rc == CAIRN_E_INVAL && r.status == 400)) {
        /* A HEAD answer has no body to say why; a listing of at most one
         * key asks the same question and names the cause. Should the
         * listing be allowed where the HEAD was not, the HEAD's answer
         * stands. */
        struct cd_s3_req g;
        struct cairn_err gerr = {0};
        int grc = cd_s3_req_init(s3, &g, "GET", NULL, "max-keys=1", &gerr);
        if (grc == 0)
            grc = cd_s3_req_run(s3, &g, &gerr);
        if (grc != 0 && grc != CAIRN_E_NOMEM) {
            rc = grc;
            if (err != NULL)
                *err = gerr;
        }
        cd_s3_req_free(&g);
    }
    if (rc == CAIRN_E_NOTFOUND)
        cairn_err_set(err, rc, "S3 bucket %s not found at %s",
                      s3->where.bucket, s3->endpoint);
    cd_s3_req_free(&r);
    return rc;
}

int cd_s3_put(struct cd_s3 *s3, const char *key, const void *data,
              size_t len, struct cairn_err *err)
{
    struct cd_s3_req r;
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    int rc = cd_s3_req_init(s3, &r, "PUT", key, NULL, err);
    if (rc)
        goto out;
    rc = ck_sha256(data, len, bin);
    if (rc) {
        cairn_err_set(err, rc, "S3 %s: sha256", r.what);
        goto out;
    }
    ck_hex_encode(bin, hex);
    /* A zero-length body is still an upload of zero bytes. */
    r.body = len ? data : "";
    r.body_len = len;
    r.body_sha = hex;
    rc = cd_s3_req_run(s3, &r, err);
out:
    cd_s3_req_free(&r);
    return rc;
}

int cd_s3_put_many(struct cd_s3 *s3, const char *const *keys,
                   const void *const *data, const size_t *lens, size_t n,
                   struct cairn_err *err)
{
    if (n == 0)
        return 0;
    struct cd_s3_req *reqs = calloc(n, sizeof *reqs);
    struct cd_s3_req **order = calloc(n, sizeof *order);
    char (*hex)[CK_SHA256_HEX_LEN + 1] = calloc(n, sizeof *hex);
    size_t made = 0;
    int rc = 0;
    if (reqs == NULL || order == NULL || hex == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3 PUT of %zu objects", n);
        goto out;
    }
    for (; made < n; made++) {
        struct cd_s3_req *r = &reqs[made];
        uint8_t bin[CK_SHA256_LEN];
        if ((rc = cd_s3_req_init(s3, r, "PUT", keys[made], NULL, err)) != 0) {
            made++;
            goto out;
        }
        if ((rc = ck_sha256(data[made], lens[made], bin)) != 0) {
            cairn_err_set(err, rc, "S3 %s: sha256", r->what);
            made++;
            goto out;
        }
        ck_hex_encode(bin, hex[made]);
        r->body = lens[made] ? data[made] : "";
        r->body_len = lens[made];
        r->body_sha = hex[made];
        order[made] = r;
    }
    rc = cd_s3_batch_run(s3, order, n, s3->parallel, NULL, err);
out:
    for (size_t i = 0; reqs != NULL && i < made; i++)
        cd_s3_req_free(&reqs[i]);
    free(reqs);
    free(order);
    free(hex);
    return rc;
}

int cd_s3_delete(struct cd_s3 *s3, const char *key, struct cairn_err *err)
{
    struct cd_s3_req r;
    int rc = cd_s3_req_init(s3, &r, "DELETE", key, NULL, err);
    if (rc == 0)
        rc = cd_s3_req_run(s3, &r, err);
    cd_s3_req_free(&r);
    return rc;
}
