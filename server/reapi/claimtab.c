/* The claim table (claimtab.h): a chained hash table of live claims
 * under one mutex. Expired claims are dropped when a lookup meets them
 * and swept as a whole only when the table is full, so a claim costs no
 * timer and no thread. */
#include "server/reapi/claimtab.h"

#include "common/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct claim {
    struct claim *next;
    struct cd_digest d;
    uint64_t since_ms, expires_ms;
    uint32_t expected_ms; /* the holder's, from its Claim */
    char builder[CD_CLAIM_MAX_BUILDER + 1];
    char instance[CD_STORE_MAX_INSTANCE];
};

struct cd_claims {
    pthread_mutex_t mu;
    struct claim **buckets;
    size_t nbuckets; /* a power of two */
    size_t n, max;
};

int cd_claims_new(size_t max, struct cd_claims **out)
{
    struct cd_claims *t = calloc(1, sizeof *t);
    if (t == NULL)
        return CAIRN_E_NOMEM;
    t->max = max ? max : CD_CLAIMS_DEFAULT_MAX;
    /* About one claim per bucket when full. */
    t->nbuckets = 64;
    while (t->nbuckets < t->max && t->nbuckets < ((size_t)1 << 20))
        t->nbuckets <<= 1;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return CAIRN_E_NOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void cd_claims_free(struct cd_claims *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct claim *c = t->buckets[i], *next; c != NULL; c = next) {
            next = c->next;
            free(c);
        }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* FNV-1a over the instance and the digest: the hash is a SHA-256, so its
 * first bytes alone would do, but keys of two instances must spread too. */
static size_t bucket_of(const struct cd_claims *t, const char *instance,
                        const struct cd_digest *d)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = instance; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (size_t i = 0; i < sizeof d->hash; i++)
        h = (h ^ d->hash[i]) * 1099511628211ull;
    return (size_t)(h & (t->nbuckets - 1));
}

/* The link that points at (instance, d)'s claim, or at the NULL ending its
 * bucket. An expired claim met on the way is dropped. */
static struct claim **find(struct cd_claims *t, const char *instance,
                           const struct cd_digest *d, uint64_t now_ms)
{
    struct claim **pp = &t->buckets[bucket_of(t, instance, d)];
    while (*pp != NULL) {
        struct claim *c = *pp;
        if (c->expires_ms <= now_ms) {
            *pp = c->next;
            free(c);
            t->n--;
            continue;
        }
        if (c->d.size == d->size && memcmp(c->d.hash, d->hash, sizeof d->hash) == 0 &&
            strcmp(c->instance, instance) == 0)
            return pp;
        pp = &c->next;
    }
    return pp;
}

static void sweep(struct cd_claims *t, uint64_t now_ms)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct claim **pp = &t->buckets[i];
        while (*pp != NULL) {
            struct claim *c = *pp;
            if (c->expires_ms <= now_ms) {
                *pp = c->next;
                free(c);
                t->n--;
            } else {
                pp = &c->next;
            }
        }
    }
}

static uint32_t clamp_ttl(uint32_t ttl_ms)
{
    if (ttl_ms < CD_CLAIM_TTL_MIN_MS)
        return CD_CLAIM_TTL_MIN_MS;
    return ttl_ms > CD_CLAIM_TTL_MAX_MS ? CD_CLAIM_TTL_MAX_MS : ttl_ms;
}

static uint32_t ms_between(uint64_t from, uint64_t to)
{
    uint64_t d = to > from ? to - from : 0;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

static void view_of(const struct claim *c, enum cd_claim_state state, uint32_t ttl_ms,
                    uint64_t now_ms, struct cd_claim_view *v)
{
    memset(v, 0, sizeof *v);
    v->state = state;
    v->ttl_ms = ttl_ms;
    if (c != NULL) {
        v->remaining_ms = ms_between(now_ms, c->expires_ms);
        v->held_ms = ms_between(c->since_ms, now_ms);
        v->expected_ms = c->expected_ms;
    }
}

/* The shared body of take and renew: create tells them apart. */
static int claim_op(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                    const char *builder, uint32_t ttl_ms, uint32_t expected_ms,
                    uint64_t now_ms, bool create, struct cd_claim_view *v)
{
    if (strlen(builder) > CD_CLAIM_MAX_BUILDER || strlen(instance) >= CD_STORE_MAX_INSTANCE)
        return CAIRN_E_INVAL;
    uint32_t ttl = clamp_ttl(ttl_ms);
    struct cd_claim_view out;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    struct claim **pp = find(t, instance, d, now_ms);
    struct claim *c = *pp;
    if (c != NULL && strcmp(c->builder, builder) != 0) {
        view_of(c, create ? CD_CLAIM_HELD : CD_CLAIM_GONE, ttl, now_ms, &out);
        if (!create)
            out.remaining_ms = out.held_ms = out.expected_ms = 0;
    } else if (c != NULL) {
        c->expires_ms = now_ms + ttl;
        if (expected_ms)
            c->expected_ms = expected_ms;
        view_of(c, CD_CLAIM_GRANTED, ttl, now_ms, &out);
    } else if (!create) {
        view_of(NULL, CD_CLAIM_GONE, ttl, now_ms, &out);
    } else {
        if (t->n >= t->max) {
            sweep(t, now_ms);
            /* The sweep may have freed the node pp pointed into. */
            pp = find(t, instance, d, now_ms);
        }
        c = t->n < t->max ? calloc(1, sizeof *c) : NULL;
        if (c == NULL) {
            rc = t->n < t->max ? CAIRN_E_NOMEM : CAIRN_E_FULL;
            goto out;
        }
        c->d = *d;
        c->since_ms = now_ms;
        c->expires_ms = now_ms + ttl;
        c->expected_ms = expected_ms;
        memcpy(c->builder, builder, strlen(builder) + 1);
        memcpy(c->instance, instance, strlen(instance) + 1);
        /* find left pp at the end of the bucket (an expired entry it
         * dropped cannot move it elsewhere). */
        *pp = c;
        t->n++;
        view_of(c, CD_CLAIM_GRANTED, ttl, now_ms, &out);
    }
out:
    pthread_mutex_unlock(&t->mu);
    if (rc == 0)
        *v = out;
    return rc;
}

int cd_claims_take(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                   const char *builder, uint32_t ttl_ms, uint64_t now_ms,
                   struct cd_claim_view *v)
{
    return claim_op(t, instance, d, builder, ttl_ms, 0, now_ms, true, v);
}

int cd_claims_take_expecting(struct cd_claims *t, const char *instance,
                             const struct cd_digest *d, const char *builder, uint32_t ttl_ms,
                             uint32_t expected_ms, uint64_t now_ms, struct cd_claim_view *v)
{
    return claim_op(t, instance, d, builder, ttl_ms, expected_ms, now_ms, true, v);
}

int cd_claims_renew(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                    const char *builder, uint32_t ttl_ms, uint64_t now_ms,
                    struct cd_claim_view *v)
{
    return claim_op(t, instance, d, builder, ttl_ms, 0, now_ms, false, v);
}

int cd_claims_release(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                      const char *builder, uint64_t now_ms, struct cd_claim_view *v)
{
    struct cd_claim_view out;
    pthread_mutex_lock(&t->mu);
    struct claim **pp = find(t, instance, d, now_ms);
    struct claim *c = *pp;
    if (c != NULL && strcmp(c->builder, builder) != 0) {
        view_of(c, CD_CLAIM_HELD, 0, now_ms, &out);
    } else {
        if (c != NULL) {
            *pp = c->next;
            free(c);
            t->n--;
        }
        view_of(NULL, CD_CLAIM_GONE, 0, now_ms, &out);
    }
    pthread_mutex_unlock(&t->mu);
    *v = out;
    return 0;
}

bool cd_claims_end(struct cd_claims *t, const char *instance, const struct cd_digest *d)
{
    if (t == NULL)
        return false;
    pthread_mutex_lock(&t->mu);
    /* now 0: nothing counts as expired here; this drops only the match. */
    struct claim **pp = find(t, instance, d, 0);
    struct claim *c = *pp;
    bool ended = c != NULL;
    if (ended) {
        *pp = c->next;
        free(c);
        t->n--;
    }
    pthread_mutex_unlock(&t->mu);
    return ended;
}

size_t cd_claims_count(struct cd_claims *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}
