/* Step claims (claim.h): the waiting loop of a step that another builder
 * holds, and the renewer thread that keeps this build's claims alive. */
#include "client/remote/claim.h"

#include "cachekey/digest.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Polls of a waiting step: the first after this long, each next one half
 * again as late, up to the last. */
#define CLAIM_POLL_FIRST_MS 200
#define CLAIM_POLL_MIN_MS 50
#define CLAIM_POLL_MAX_MS 1000
/* The longest a step waits for another builder before running it here:
 * a holder that renews forever (a hung step, or a server that answers
 * HELD to everything) must not hang the build. Past it the step runs
 * twice, which is waste, never a wrong result. */
#define CLAIM_MAX_WAIT_MS ((int64_t)3600 * 1000)

/* One claim this build holds. Only the renewer unlinks and frees nodes;
 * the build thread prepends them and sets flags, under cl->mu. */
struct held {
    struct held *next;
    char key_hex[CK_SHA256_HEX_LEN + 1];
    struct cairn_remote_digest action;
    struct cairn_cache_target t;
    int64_t next_ms; /* when to renew next (monotonic) */
    bool release;    /* the step failed: release it now */
};

struct cairn_claims {
    struct cairn_cache *c;
    char builder[128];
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    struct held *held;
    bool running, stopping;
    pthread_t renewer;
    bool off; /* the build thread's: no more claims this build */
    struct cairn_claims_stats stats;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int cairn_claims_open(struct cairn_cache *c, struct cairn_claims **out)
{
    struct cairn_claims *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return CAIRN_E_NOMEM;
    cl->c = c;
    /* Unique per build: a host name alone would let two builds on one
     * machine (or two containers with one name) renew each other's. */
    uint8_t rnd[8] = {0};
    char host[64] = "";
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        int64_t t = mono_ms() ^ (int64_t)getpid() << 20;
        memcpy(rnd, &t, sizeof rnd);
    }
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(cl->builder, sizeof cl->builder, "%.60s/%ld/%02x%02x%02x%02x%02x%02x%02x%02x",
             host, (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
             rnd[7]);
    pthread_mutex_init(&cl->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = cl;
    return 0;
}

/* ---- the renewer ---------------------------------------------------------- */

/* Renews (or releases) one claim outside the lock; true when the claim is
 * over for this build and its node can go. A renewal that fails for the
 * transport is tried again at the next round: the claim may still be
 * alive when the server is back. */
static bool held_service(struct cairn_claims *cl, struct held *h, bool release)
{
    /* An endpoint the build has marked down gets no calls (each could
     * wait a whole cache-timeout): its claim simply expires. */
    struct cairn_cache_target t;
    if (cairn_cache_claim_target(cl->c, h->key_hex, &t) != 0)
        return release;
    struct cairn_remote_claim cr;
    struct cairn_err err;
    cairn_err_clear(&err);
    enum cairn_remote_claim_op op = release ? CAIRN_REMOTE_CLAIM_RELEASE : CAIRN_REMOTE_CLAIM_RENEW;
    int rc = cairn_remote_claim(h->t.r, h->t.instance, &h->action, op, h->t.ttl_ms, 0,
                                cl->builder, &cr, &err);
    if (release)
        return true;
    /* GONE: the upload ended it (or it expired and another took it). */
    return rc == 0 ? cr.state != CAIRN_REMOTE_CLAIM_GRANTED : rc != CAIRN_E_RPC && rc != CAIRN_E_TIMEOUT;
}

static void *renewer(void *arg)
{
    struct cairn_claims *cl = arg;
    pthread_mutex_lock(&cl->mu);
    for (;;) {
        int64_t now = mono_ms(), wake = now + 1000;
        bool stopping = cl->stopping;
        /* Nodes are only unlinked here, so the list can be walked without
         * the lock while the calls run; the build thread only prepends. */
        struct held *head = cl->held;
        pthread_mutex_unlock(&cl->mu);
        for (struct held *h = head; h != NULL; h = h->next) {
            pthread_mutex_lock(&cl->mu);
            bool release = h->release || stopping;
            bool due = release || h->next_ms <= now;
            pthread_mutex_unlock(&cl->mu);
            bool over = due && held_service(cl, h, release);
            pthread_mutex_lock(&cl->mu);
            if (over) {
                h->release = true;
                h->next_ms = INT64_MAX;
            } else if (due) {
                h->next_ms = now + h->t.ttl_ms / 3;
            }
            if (h->next_ms < wake)
                wake = h->next_ms;
            pthread_mutex_unlock(&cl->mu);
        }
        pthread_mutex_lock(&cl->mu);
        /* Drop the nodes that are over (marked release and served). */
        for (struct held **pp = &cl->held; *pp != NULL;) {
            struct held *h = *pp;
            if (h->next_ms == INT64_MAX) {
                *pp = h->next;
                free(h);
            } else {
                pp = &h->next;
            }
        }
        if (stopping && cl->held == NULL)
            break;
        if (stopping)
            continue;
        /* A node added or marked for release while the calls ran wakes
         * the loop through the condition variable. */
        bool pending = false;
        for (struct held *h = cl->held; h != NULL; h = h->next)
            pending = pending || h->release || h->next_ms <= mono_ms();
        if (!pending && !cl->stopping) {
            struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000};
            pthread_cond_timedwait(&cl->cv, &cl->mu, &ts);
        }
    }
    pthread_mutex_unlock(&cl->mu);
    return NULL;
}

/* Adds an OWNED claim for the renewer. false when the renewer cannot run
 * (then the claim is released at once and the step runs unclaimed). */
static bool held_add(struct cairn_claims *cl, const char *key_hex,
                     const struct cairn_remote_digest *action, const struct cairn_cache_target *t)
{
    struct held *h = calloc(1, sizeof *h);
    if (h == NULL)
        return false;
    snprintf(h->key_hex, sizeof h->key_hex, "%s", key_hex);
    h->action = *action;
    h->t = *t;
    h->next_ms = mono_ms() + t->ttl_ms / 3;
    pthread_mutex_lock(&cl->mu);
    if (!cl->running)
        cl->running = pthread_create(&cl->renewer, NULL, renewer, cl) == 0;
    if (!cl->running) {
        pthread_mutex_unlock(&cl->mu);
        free(h);
        return false;
    }
    h->next = cl->held;
    cl->held = h;
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
    return true;
}

void cairn_claims_done(struct cairn_claims *cl, const char *key_hex, bool ok)
{
    if (cl == NULL || ok)
        return;
    pthread_mutex_lock(&cl->mu);
    for (struct held *h = cl->held; h != NULL; h = h->next)
        if (strcmp(h->key_hex, key_hex) == 0)
            h->release = true;
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
}

void cairn_claims_close(struct cairn_claims *cl)
{
    if (cl == NULL)
        return;
    pthread_mutex_lock(&cl->mu);
    cl->stopping = true;
    pthread_cond_broadcast(&cl->cv);
    bool running = cl->running;
    pthread_mutex_unlock(&cl->mu);
    if (running)
        pthread_join(cl->renewer, NULL);
    pthread_cond_destroy(&cl->cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}

void cairn_claims_stats_get(struct cairn_claims *cl, struct cairn_claims_stats *out)
{
    if (cl == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = cl->stats;
}

/* ---- settling a step ------------------------------------------------------ */

/* The slack past the expected time: a step's time varies with the load
 * of the machine, and a short step's more so. */
#define CLAIM_OVERDUE_SLACK_MS 10000

bool cairn_claims_overdue(int64_t expected_ms, int64_t held_ms)
{
    if (expected_ms <= 0)
        return false;
    int64_t cap = expected_ms > CLAIM_OVERDUE_SLACK_MS ? 2 * expected_ms
                                                       : expected_ms + CLAIM_OVERDUE_SLACK_MS;
    return held_ms > cap;
}

/* Whether the cache has s's result now; when it does, its layer is
 * fetched into st as for any remote hit. A result whose layer cannot be
 * fetched counts as none (the step runs). */
static bool result_found(struct cairn_claims *cl, struct cairn_store *st, struct cairn_cache_step *s)
{
    cairn_cache_lookup(cl->c, st, s, 1);
    if (!s->hit)
        return false;
    if (s->rec.empty)
        return true;
    struct cairn_cache_step *want = s;
    return cairn_cache_fetch(cl->c, st, &want, 1) == 0 && s->fetched;
}

/* The first failure of a claim call turns claims off for this build: a
 * server without the service says so once. */
static enum cairn_claim_outcome claims_off(struct cairn_claims *cl, const struct cairn_cache_target *t,
                                           int rc, const struct cairn_err *err)
{
    cl->off = true;
    if (rc == CAIRN_E_UNSUPPORTED)
        fprintf(stderr, "cairn: cache %s does not offer step claims; concurrent builders may "
                        "run the same steps\n", t->url);
    else
        fprintf(stderr, "cairn: warning: cache %s: step claims off for this build: %s\n", t->url,
                err->msg[0] ? err->msg : cairn_strerror(rc));
    return CAIRN_CLAIM_RUN;
}

enum cairn_claim_outcome cairn_claims_settle(struct cairn_claims *cl, struct cairn_store *st,
                                             struct cairn_cache_step *s,
                                             int64_t expected_ms, FILE *out,
                                             const char *label)
{
    if (cl == NULL || cl->off)
        return CAIRN_CLAIM_RUN;
    struct cairn_remote_digest action;
    snprintf(action.hash, sizeof action.hash, "%s", s->key_hex);
    action.size = (int64_t)s->material_len;
    bool waited = false;
    int64_t pause = CLAIM_POLL_FIRST_MS, since = mono_ms();
    for (;;) {
        /* Again each round: the endpoint may have gone down meanwhile. */
        struct cairn_cache_target t;
        if (cairn_cache_claim_target(cl->c, s->key_hex, &t) != 0)
            return CAIRN_CLAIM_RUN;
        struct cairn_remote_claim cr;
        struct cairn_err err;
        cairn_err_clear(&err);
        int rc = cairn_remote_claim(t.r, t.instance, &action, CAIRN_REMOTE_CLAIM_TAKE, t.ttl_ms,
                                    expected_ms, cl->builder, &cr, &err);
        if (rc)
            return claims_off(cl, &t, rc, &err);
        if (cr.state == CAIRN_REMOTE_CLAIM_GRANTED) {
            /* Nobody holds it: perhaps because its result landed since
             * the build's lookups (another builder ran it and its upload
             * ended the claim). One more look before running it. */
            if (result_found(cl, st, s)) {
                cairn_remote_claim(t.r, t.instance, &action, CAIRN_REMOTE_CLAIM_RELEASE, 0, 0,
                                   cl->builder, &cr, &err);
                cl->stats.found += waited;
                return CAIRN_CLAIM_FOUND;
            }
            if (!held_add(cl, s->key_hex, &action, &t)) {
                cairn_remote_claim(t.r, t.instance, &action, CAIRN_REMOTE_CLAIM_RELEASE, 0, 0,
                                   cl->builder, &cr, &err);
                return CAIRN_CLAIM_RUN;
            }
            cl->stats.claimed++;
            if (waited) {
                cl->stats.took_over++;
                fprintf(out, " ---> the other builder is gone; running %s here\n", label);
            }
            return CAIRN_CLAIM_OWNED;
        }
        if (cr.state != CAIRN_REMOTE_CLAIM_HELD)
            return CAIRN_CLAIM_RUN;
        if (!waited) {
            waited = true;
            cl->stats.waited++;
            fprintf(out, " ---> waiting for another builder to finish %s...\n", label);
            fflush(out);
        }
        /* This build's own history first: it is what running the step
         * here would cost. */
        int64_t expect = expected_ms > 0 ? expected_ms : cr.expected_ms;
        if (cairn_claims_overdue(expect, cr.held_ms)) {
            fprintf(out, " ---> the other builder is taking longer than this step took before "
                         "(%llds); running %s here\n",
                    (long long)((expect + 999) / 1000), label);
            return CAIRN_CLAIM_RUN;
        }
        if (mono_ms() - since > CLAIM_MAX_WAIT_MS) {
            fprintf(out, " ---> waited %lld s for another builder; running %s here\n",
                    (long long)(CLAIM_MAX_WAIT_MS / 1000), label);
            return CAIRN_CLAIM_RUN;
        }
        /* Not past the holder's expiry by much: if it died, its claim is
         * free then. */
        int64_t nap = pause < cr.remaining_ms + 20 ? pause : cr.remaining_ms + 20;
        if (nap < CLAIM_POLL_MIN_MS)
            nap = CLAIM_POLL_MIN_MS; /* a claim about to expire: no busy loop */
        sleep_ms(nap);
        pause = pause * 3 / 2 < CLAIM_POLL_MAX_MS ? pause * 3 / 2 : CLAIM_POLL_MAX_MS;
        if (result_found(cl, st, s)) {
            cl->stats.found++;
            return CAIRN_CLAIM_FOUND;
        }
    }
}
