/* HEAD of one object and of many at once (s3.h). */
#include "server/s3/s3.h"

#include "server/s3/request.h"

#include <stdlib.h>

int cd_s3_head(struct cd_s3 *s3, const char *key, uint64_t *size,
               struct cairn_err *err)
{
    struct cd_s3_req r;
    int rc = cd_s3_req_init(s3, &r, "HEAD", key, NULL, err);
    if (rc == 0)
        rc = cd_s3_req_run(s3, &r, err);
    if (rc == 0 && !r.has_length)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "S3 %s: answer without Content-Length", r.what);
    if (rc == 0)
        *size = r.content_length;
    cd_s3_req_free(&r);
    return rc;
}

int cd_s3_head_many(struct cd_s3 *s3, const char *const *keys, size_t n,
                    bool *present, struct cairn_err *err)
{
    int rc = 0;
    size_t made = 0;
    if (n == 0)
        return 0;
    struct cd_s3_req *reqs = calloc(n, sizeof *reqs);
    struct cd_s3_req **order = calloc(n, sizeof *order);
    if (reqs == NULL || order == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3: HEAD of %zu objects", n);
        goto out;
    }
    for (; made < n; made++) {
        rc = cd_s3_req_init(s3, &reqs[made], "HEAD", keys[made], NULL, err);
        if (rc) {
            made++;
            goto out;
        }
        reqs[made].ok_404 = true;
        order[made] = &reqs[made];
    }
    rc = cd_s3_batch_run(s3, order, n, s3->parallel, NULL, err);
    if (rc == 0)
        for (size_t i = 0; i < n; i++)
            present[i] = reqs[i].status == 200;
out:
    for (size_t i = 0; reqs != NULL && i < made; i++)
        cd_s3_req_free(&reqs[i]);
    free(reqs);
    free(order);
    return rc;
}
