/* Step claims: when builders miss the same step at once, one runs it and
 * the others wait for its result (docs/remote.md, "Claims").
 *
 * A layer step that misses both the local store and the cache is claimed
 * on the endpoint that holds its key (cairn.claim.v1, cairnd's extension;
 * cairn_remote_claim). GRANTED: this build runs the step; a thread renews
 * the claim every third of its ttl until the result's upload ends it on
 * the server (UpdateActionResult), and a failed step releases it. HELD:
 * the build says so and polls the action cache (every 200 ms, backing
 * off to 1 s) until the result appears (fetched like any remote hit), or
 * the claim is gone without one (its owner died and the ttl ran out, or
 * its step failed): then this build claims it and runs the step. It
 * also runs the step, unclaimed, when the holder has been at it far
 * longer than the step took before (cairn_claims_overdue), and after an
 * hour of waiting in any case. The
 * step runs here at once, unclaimed, when the server does not offer
 * claims (UNIMPLEMENTED: any other REAPI server, or cairnd --no-claims),
 * when the cache is read-only for this client or down, when claims are
 * off (cache-claim-ttl = off), or on any error of the claim calls; the
 * first such error turns claims off for the rest of the build, so a
 * server without them costs one call per build.
 *
 * Thread-safety: settle, done and stats are called by the build thread;
 * the renewer is internal. */
#ifndef CAIRN_CLIENT_CLAIM_H
#define CAIRN_CLIENT_CLAIM_H

#include "client/remote/cache.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct cairn_claims;

/* Claims of one build over cache c (borrowed: it outlives the claims).
 * Nothing is contacted yet. Returns 0 or CAIRN_E_NOMEM. */
int cairn_claims_open(struct cairn_cache *c, struct cairn_claims **out);
/* Stops the renewer and releases every claim still held (call it after
 * cairn_cache_finish, so that uploads ended theirs first). Accepts NULL. */
void cairn_claims_close(struct cairn_claims *cl);

enum cairn_claim_outcome {
    CAIRN_CLAIM_RUN,   /* run the step; nothing is claimed */
    CAIRN_CLAIM_OWNED, /* run the step; this build holds its claim */
    CAIRN_CLAIM_FOUND, /* another builder's result: s->hit, and its layer
                          fetched into st (s->fetched) unless empty */
};

/* Decides who runs step s (a step the cache lookup missed: key_hex and
 * material set), waiting for another builder when it holds the claim.
 * expected_ms is how long the step took here before (0: unknown); it
 * goes with this build's claim, and caps its wait for another's (else
 * the holder's expected time does). Progress goes to out as " --->
 * waiting for another builder to finish <label>..." (label: e.g. "step
 * 3/5"). Never fails: trouble is a warning and CAIRN_CLAIM_RUN. */
enum cairn_claim_outcome cairn_claims_settle(struct cairn_claims *cl,
                                             struct cairn_store *st,
                                             struct cairn_cache_step *s,
                                             int64_t expected_ms, FILE *out,
                                             const char *label);

/* Whether a waiter should stop waiting for a holder that has been at a
 * step for held_ms when the step is expected to take expected_ms: past
 * max(2 x expected, expected + 10 s). Never with expected_ms <= 0
 * (unknown). */
bool cairn_claims_overdue(int64_t expected_ms, int64_t held_ms);

/* The step of an OWNED claim on key_hex ended: ok, its result is queued
 * for upload (the claim is renewed until the upload ends it); not ok, the
 * claim is released now for a waiter to take. */
void cairn_claims_done(struct cairn_claims *cl, const char *key_hex, bool ok);

struct cairn_claims_stats {
    unsigned claimed;   /* steps this build claimed and ran */
    unsigned waited;    /* steps it waited for another builder on */
    unsigned found;     /* ... that ended with the other's result */
    unsigned took_over; /* ... that it claimed after the other's was gone */
};
void cairn_claims_stats_get(struct cairn_claims *cl, struct cairn_claims_stats *out);

#endif
