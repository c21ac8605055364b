/* The bucket under LMDB (docs/storage.md "Two tiers"). With
 * cd_store_opts.s3 set, LMDB is this node's hot tier and the bucket the
 * durable one that every node shares:
 *
 * - writes go through: an upload's bytes are kept (in memory when small,
 *   else in an unlinked temp file beside the LMDB file) while they arrive,
 *   and its commit puts them in the bucket after the digest check and
 *   before the blob is published or acknowledged (a blob of several parts
 *   streams: its parts but the last go up while it arrives, the last and
 *   CompleteMultipartUpload at commit; an upload that ends otherwise is
 *   aborted); an action result is put before it is stored locally. A blob
 *   in a temp file is not staged in LMDB while it arrives: once the
 *   bucket has it, the call is answered and a thread stores it in LMDB
 *   from the temp file (cd_store_tier_upload_done runs the keep that
 *   store.c gave at open, store_tier_read.c's; reads on this node
 *   meanwhile read the temp file).
 *   BatchUpdateBlobs' blobs are put in parallel. A bucket that cannot be
 *   reached fails the call with CAIRN_E_RPC (UNAVAILABLE), and nothing
 *   becomes visible.
 * - reads and lookups (store_tier_read.c) take LMDB first and come to the
 *   bucket for the rest; absent answers of find_missing are remembered
 *   here (the negative cache) for STORE_TIER_NEG_TTL_MS, so a client's
 *   repeated question costs no HEADs (what that risks: docs/storage.md).
 * Eviction stays LMDB's: it drops local copies only.
 *
 * Object names: cas/<instance>/<sha256 hex>-<size> and ac/<...> alike,
 * the instance escaped (store_tier_instance_escape) so that any instance
 * name is one path segment of letters, digits, '-' and '_' escapes. */
#include "server/store/store_tier.h"

#include "common/buf.h"
#include "server/s3/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Blobs up to this size are kept in memory for their PUT; larger ones go
 * to a temp file, so an upload's memory stays bounded. */
#define STORE_TIER_MEM_MAX CD_STORE_CHUNK
#define STORE_TIER_NEG_SLOTS 8192

struct store_tier_neg {
    uint8_t hash[CK_SHA256_LEN];
    int64_t size;
    uint64_t inst; /* hash of the instance name */
    uint64_t until_ms; /* monotonic; 0: free */
};

struct store_tier_up {
    int fd;       /* the temp file, or -1 */
    uint8_t *mem; /* or the bytes (small blobs) */
    /* A blob of more than one part streams to the bucket while it
     * arrives: a multipart upload, begun when its first part is in the
     * temp file, fed each whole part as it arrives (store_tier_stream). */
    uint64_t psize;
    unsigned nparts, queued; /* nparts < 2: one PUT at commit */
    struct cd_s3_mpu *mpu;
    char key[CD_S3_MAX_KEY];
};

/* --- names -------------------------------------------------------------- */

int cd_store_tier_instance_escape(const char *instance, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (instance[0] == '\0') {
        /* "_" alone: an escape is always '_' and two hex digits. */
        if (cap < 2)
            return CAIRN_E_TOOBIG;
        out[0] = '_';
        out[1] = '\0';
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)instance; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-';
        if (n + (plain ? 1 : 3) >= cap)
            return CAIRN_E_TOOBIG;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '_';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return 0;
}

int cd_store_tier_key(char kind, const char *instance, const struct cd_digest *d,
                   char *out, size_t cap)
{
    if (strlen(instance) > CD_STORE_MAX_INSTANCE || d->size < 0)
        return CAIRN_E_INVAL;
    char inst[3 * CD_STORE_MAX_INSTANCE + 1];
    int rc = cd_store_tier_instance_escape(instance, inst, sizeof inst);
    if (rc != 0)
        return rc;
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(d->hash, hex);
    int n = snprintf(out, cap, "%s/%s/%s-%lld",
                     kind == STORE_KIND_AC ? "ac" : "cas", inst, hex,
                     (long long)d->size);
    return n < 0 || (size_t)n >= cap ? CAIRN_E_TOOBIG : 0;
}

/* The instance name inside an entry key (cd_store_key_make's layout),
 * copied to out (CD_STORE_MAX_INSTANCE + 1 bytes). */
static void store_tier_key_instance(const struct store_key *k, char *out)
{
    size_t n = (size_t)k->b[1] << 8 | k->b[2];
    memcpy(out, k->b + 3, n);
    out[n] = '\0';
}

/* --- the negative cache ------------------------------------------------- */

static struct store_tier_neg *store_tier_neg_slot(struct store_tier *t,
                                                  uint64_t inst,
                                                  const struct cd_digest *d)
{
    /* All of the digest, mixed: a client may ask about digests that are
     * not uniform (made up, or mostly zero). */
    uint64_t h = inst ^ (uint64_t)d->size;
    for (size_t i = 0; i < CK_SHA256_LEN; i += 8) {
        uint64_t w;
        memcpy(&w, d->hash + i, sizeof w);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    }
    return &t->neg[(h >> 32) % STORE_TIER_NEG_SLOTS];
}

static bool store_tier_neg_match(const struct store_tier_neg *e, uint64_t inst,
                                 const struct cd_digest *d)
{
    return e->until_ms != 0 && e->inst == inst && e->size == d->size &&
           memcmp(e->hash, d->hash, CK_SHA256_LEN) == 0;
}

bool cd_store_tier_neg_has(struct store_tier *t, uint64_t inst,
                           const struct cd_digest *d, uint64_t now)
{
    pthread_mutex_lock(&t->neg_mu);
    struct store_tier_neg *e = store_tier_neg_slot(t, inst, d);
    bool hit = store_tier_neg_match(e, inst, d) && now < e->until_ms;
    pthread_mutex_unlock(&t->neg_mu);
    return hit;
}

void cd_store_tier_neg_add(struct store_tier *t, uint64_t inst,
                           const struct cd_digest *d, uint64_t now)
{
    pthread_mutex_lock(&t->neg_mu);
    struct store_tier_neg *e = store_tier_neg_slot(t, inst, d);
    memcpy(e->hash, d->hash, CK_SHA256_LEN);
    e->size = d->size;
    e->inst = inst;
    e->until_ms = now + t->neg_ttl_ms;
    pthread_mutex_unlock(&t->neg_mu);
}

/* This node just put d: its own answers must not say missing any more. */
static void store_tier_neg_drop(struct store_tier *t, const char *instance,
                                const struct cd_digest *d)
{
    uint64_t inst = store_tier_inst_hash(instance);
    pthread_mutex_lock(&t->neg_mu);
    struct store_tier_neg *e = store_tier_neg_slot(t, inst, d);
    if (store_tier_neg_match(e, inst, d))
        e->until_ms = 0;
    pthread_mutex_unlock(&t->neg_mu);
}

/* --- open, close, stats, reports ---------------------------------------- */

int cd_store_tier_open(struct cd_store *st, const struct cd_store_opts *opts,
                       cd_store_tier_keep_fn *keep, struct cairn_err *err)
{
    if (opts->s3 == NULL)
        return 0;
    struct store_tier *t = calloc(1, sizeof *t);
    if (t == NULL || (t->dir = strdup(opts->dir)) == NULL ||
        (t->neg = calloc(STORE_TIER_NEG_SLOTS, sizeof *t->neg)) == NULL) {
        if (t != NULL) {
            free(t->dir);
            free(t);
        }
        return cairn_err_set(err, CAIRN_E_NOMEM, "store: out of memory");
    }
    t->s3 = opts->s3;
    t->keep = keep;
    t->report = opts->on_tier_report;
    t->report_ctx = opts->on_tier_ctx;
    t->neg_ttl_ms = STORE_TIER_NEG_TTL_MS;
    pthread_mutex_init(&t->neg_mu, NULL);
    pthread_mutex_init(&t->run_mu, NULL);
    pthread_cond_init(&t->run_cond, NULL);
    st->tier = t;
    return 0;
}

void cd_store_tier_close(struct cd_store *st)
{
    struct store_tier *t = st->tier;
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->run_mu);
    while (t->running > 0)
        pthread_cond_wait(&t->run_cond, &t->run_mu);
    pthread_mutex_unlock(&t->run_mu);
    pthread_mutex_destroy(&t->run_mu);
    pthread_cond_destroy(&t->run_cond);
    pthread_mutex_destroy(&t->neg_mu);
    free(t->neg);
    free(t->dir);
    free(t);
    st->tier = NULL;
}

void cd_store_tier_stats(struct cd_store *st, struct cd_store_stats *out)
{
    struct store_tier *t = st->tier;
    if (t == NULL)
        return;
    out->tier_puts = store_tier_ld(&t->puts);
    out->tier_put_bytes = store_tier_ld(&t->put_bytes);
    out->tier_fills = store_tier_ld(&t->fills);
    out->tier_fill_bytes = store_tier_ld(&t->fill_bytes);
    out->tier_ac_fills = store_tier_ld(&t->ac_fills);
    out->tier_heads = store_tier_ld(&t->heads);
    out->tier_neg_hits = store_tier_ld(&t->neg_hits);
    out->tier_errors = store_tier_ld(&t->errors);
    out->tier_corrupt = store_tier_ld(&t->corrupt);
    out->tier_shared = store_tier_ld(&t->shared);
}

void cd_store_tier_report(struct store_tier *t, const char *fmt, ...)
{
    if (t->report == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    t->report(t->report_ctx, msg);
}

int cd_store_tier_fail(struct store_tier *t, const char *what,
                       const char *key, int rc, const struct cairn_err *err)
{
    if (rc == CAIRN_E_NOTFOUND || rc == CAIRN_E_NOMEM)
        return rc;
    store_tier_add(&t->errors, 1);
    cd_store_tier_report(t, "bucket: %s %s: %s", what, key,
                         err->msg[0] ? err->msg : cairn_strerror(rc));
    return CAIRN_E_RPC;
}

/* --- uploads: write-through --------------------------------------------- */

int cd_store_tier_tmp_open(const char *dir, int *out)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/tier-XXXXXX", dir);
        if (n < 0 || (size_t)n >= sizeof path)
            return -ENAMETOOLONG;
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

/* Queues to the multipart upload every whole part but the last that is
 * in the temp file once arrived bytes are: the bucket PUT runs while the
 * client still streams. The last part waits for commit, after the digest
 * check; nothing is visible before CompleteMultipartUpload. */
static int store_tier_stream(struct store_tier *t, struct store_tier_up *tu,
                             uint64_t arrived)
{
    while (tu->queued + 1 < tu->nparts &&
           (uint64_t)(tu->queued + 1) * tu->psize <= arrived) {
        struct cairn_err err = {0};
        int rc = 0;
        if (tu->mpu == NULL)
            rc = cd_s3_mpu_begin(t->s3, tu->key, tu->nparts, &tu->mpu, &err);
        if (rc == 0)
            rc = cd_s3_mpu_part(tu->mpu, tu->fd, tu->queued * tu->psize,
                                tu->psize, &err);
        if (rc != 0)
            return cd_store_tier_fail(t, "PUT", tu->key, rc, &err);
        tu->queued++;
    }
    return 0;
}

/* The upload's tier state at its first write: memory for a small blob,
 * else a temp file, and the part plan of a blob past one part. */
static int store_tier_up_new(struct cd_upload *u, struct store_tier_up **out)
{
    struct store_tier *t = u->st->tier;
    struct store_tier_up *tu = calloc(1, sizeof *tu);
    if (tu == NULL)
        return CAIRN_E_NOMEM;
    tu->fd = -1;
    char instance[CD_STORE_MAX_INSTANCE + 1];
    store_tier_key_instance(&u->key, instance);
    int rc = cd_store_tier_key(STORE_KIND_BLOB, instance, &u->d, tu->key,
                               sizeof tu->key);
    uint64_t size = (uint64_t)u->d.size;
    if (rc == 0 && size <= STORE_TIER_MEM_MAX) {
        if ((tu->mem = malloc((size_t)size)) == NULL)
            rc = CAIRN_E_NOMEM;
    } else if (rc == 0) {
        rc = cd_store_tier_tmp_open(t->dir, &tu->fd);
        /* A plan that fails (past the largest object) leaves one PUT at
         * commit, which reports it. */
        if (rc == 0 && cd_s3_parts_plan(size,
                                        cd_s3_stream_part_size(t->s3, size),
                                        &tu->psize, &tu->nparts) != 0)
            tu->nparts = 0;
    }
    if (rc != 0) {
        free(tu->mem);
        free(tu);
        return rc;
    }
    *out = tu;
    return 0;
}

int cd_store_tier_upload_write(struct cd_upload *u, const void *p, size_t n)
{
    if (u->tier_skip || n == 0)
        return 0;
    struct store_tier_up *tu = u->tier;
    int rc;
    if (tu == NULL) {
        if ((rc = store_tier_up_new(u, &tu)) != 0)
            return rc;
        u->tier = tu;
        /* A blob in a temp file reaches LMDB from there after the ack
         * (cd_store_tier_upload_keep), not while it arrives. */
        u->tier_only = tu->fd >= 0;
    }
    /* The caller checked that [off, off + n) is inside the blob. */
    if (tu->mem != NULL) {
        memcpy(tu->mem + u->off, p, n);
        return 0;
    }
    const uint8_t *src = p;
    uint64_t off = u->off;
    for (size_t left = n; left > 0;) {
        ssize_t w = pwrite(tu->fd, src, left, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : CAIRN_E_IO;
        src += w;
        off += (uint64_t)w;
        left -= (size_t)w;
    }
    return store_tier_stream(u->st->tier, tu, off);
}

/* The rest of a streamed upload at commit: the parts not yet queued, the
 * last one, and CompleteMultipartUpload. */
static int store_tier_stream_finish(struct store_tier *t,
                                    struct store_tier_up *tu, uint64_t size)
{
    int rc = store_tier_stream(t, tu, size);
    if (rc != 0)
        return rc;
    struct cairn_err err = {0};
    if (tu->mpu == NULL)
        rc = cd_s3_mpu_begin(t->s3, tu->key, tu->nparts, &tu->mpu, &err);
    uint64_t off = (uint64_t)(tu->nparts - 1) * tu->psize;
    if (rc == 0)
        rc = cd_s3_mpu_part(tu->mpu, tu->fd, off, size - off, &err);
    if (rc == 0) {
        rc = cd_s3_mpu_complete(tu->mpu, &err);
        tu->mpu = NULL; /* complete frees it, and aborts what failed */
    }
    /* A write's 404 (no such bucket, upload gone) is the bucket's
     * failure, not a missing blob: UNAVAILABLE, and reported. */
    if (rc == CAIRN_E_NOTFOUND)
        rc = CAIRN_E_RPC;
    return rc != 0 ? cd_store_tier_fail(t, "PUT", tu->key, rc, &err) : 0;
}

int cd_store_tier_upload_commit(struct cd_upload *u)
{
    struct store_tier *t = u->st->tier;
    if (u->tier_skip)
        return 0;
    struct store_tier_up *tu = u->tier;
    if (tu == NULL)
        return CAIRN_E_DIGEST; /* no bytes arrived; the digest check ran */
    char instance[CD_STORE_MAX_INSTANCE + 1];
    store_tier_key_instance(&u->key, instance);
    struct cairn_err err = {0};
    uint64_t size = (uint64_t)u->d.size;
    int rc;
    if (tu->mem != NULL)
        rc = cd_s3_put(t->s3, tu->key, tu->mem, (size_t)size, &err);
    else if (tu->nparts >= 2)
        rc = store_tier_stream_finish(t, tu, size);
    else
        rc = cd_s3_put_fd(t->s3, tu->key, tu->fd, size, &err);
    if (rc != 0)
        return tu->nparts >= 2 ? rc : cd_store_tier_fail(t, "PUT", tu->key, rc, &err);
    store_tier_add(&t->puts, 1);
    store_tier_add(&t->put_bytes, size);
    store_tier_neg_drop(t, instance, &u->d);
    return 0;
}

void cd_store_tier_upload_done(struct cd_upload *u)
{
    u->st->tier->keep(u);
}

/* Objects per cd_s3_put_many: bounds the keys' memory (1 KiB each). */
#define STORE_TIER_PUT_BATCH 256

int cd_store_tier_put_many(struct cd_store *st, const char *instance,
                           const struct cd_digest *d, const void *const *data,
                           const size_t *which, size_t n)
{
    struct store_tier *t = st->tier;
    size_t cap = n < STORE_TIER_PUT_BATCH ? n : STORE_TIER_PUT_BATCH;
    char *keys = malloc(cap * CD_S3_MAX_KEY);
    const char **kp = malloc(cap * sizeof *kp);
    const void **dp = malloc(cap * sizeof *dp);
    size_t *lens = malloc(cap * sizeof *lens);
    int rc = 0;
    if (keys == NULL || kp == NULL || dp == NULL || lens == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    for (size_t at = 0; at < n && rc == 0; at += cap) {
        size_t k = n - at < cap ? n - at : cap;
        uint64_t bytes = 0;
        for (size_t j = 0; j < k && rc == 0; j++) {
            const struct cd_digest *dj = &d[which[at + j]];
            kp[j] = keys + j * CD_S3_MAX_KEY;
            rc = cd_store_tier_key(STORE_KIND_BLOB, instance, dj,
                                   keys + j * CD_S3_MAX_KEY, CD_S3_MAX_KEY);
            dp[j] = data[which[at + j]];
            lens[j] = (size_t)dj->size;
            bytes += (uint64_t)dj->size;
        }
        if (rc != 0)
            break;
        struct cairn_err err = {0};
        if ((rc = cd_s3_put_many(t->s3, kp, dp, lens, k, &err)) != 0) {
            rc = cd_store_tier_fail(t, "PUT", kp[0], rc, &err);
            break;
        }
        store_tier_add(&t->puts, k);
        store_tier_add(&t->put_bytes, bytes);
        for (size_t j = 0; j < k; j++)
            store_tier_neg_drop(t, instance, &d[which[at + j]]);
    }
out:
    free(keys);
    free(kp);
    free(dp);
    free(lens);
    return rc;
}

void cd_store_tier_upload_free(struct cd_upload *u)
{
    struct store_tier_up *tu = u->tier;
    if (tu == NULL)
        return;
    /* Before the file closes: its workers read the parts from it. An
     * upload that did not complete leaves nothing in the bucket. */
    cd_s3_mpu_abort(tu->mpu);
    if (tu->fd >= 0)
        close(tu->fd);
    free(tu->mem);
    free(tu);
    u->tier = NULL;
}

int cd_store_ac_put(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, const void *data,
                    size_t len)
{
    struct store_tier *t = st->tier;
    if (t == NULL)
        return cd_store_ac_put_local(st, instance, action, data, len);
    if (len > CD_STORE_MAX_AC_RESULT)
        return CAIRN_E_TOOBIG;
    if (instance == NULL)
        instance = "";
    char key[CD_S3_MAX_KEY];
    int rc = cd_store_tier_key(STORE_KIND_AC, instance, action, key, sizeof key);
    if (rc != 0)
        return rc;
    struct cairn_err err = {0};
    if ((rc = cd_s3_put(t->s3, key, data, len, &err)) != 0)
        return cd_store_tier_fail(t, "PUT", key, rc, &err);
    store_tier_add(&t->puts, 1);
    store_tier_add(&t->put_bytes, len);
    return cd_store_ac_put_local(st, instance, action, data, len);
}

int cd_store_tier_upload_take(struct cd_upload *u, int *fd, char *key,
                              char *instance)
{
    struct store_tier_up *tu = u->tier;
    if (tu == NULL || tu->fd < 0)
        return CAIRN_E_INVAL;
    memcpy(key, tu->key, CD_S3_MAX_KEY);
    store_tier_key_instance(&u->key, instance);
    *fd = tu->fd;
    tu->fd = -1; /* the caller's now */
    return 0;
}
