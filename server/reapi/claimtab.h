/* The claim table: which builder holds which action digest of which
 * instance, until when (cairn.claim.v1, docs/protocol.md "Claims").
 *
 * In memory only: a restart forgets every claim, which costs at most one
 * duplicate run of the steps running then (their owners' renewals answer
 * GONE, their waiters see the claim gone and claim it again). Bounded: at
 * most `max` claims; when full, expired ones are swept and, if none, the
 * new claim is refused (CAIRN_E_FULL) and its builder simply runs the
 * step. Times are milliseconds of a monotonic clock, passed in by the
 * caller so that tests need no sleeping.
 *
 * Thread-safe: one mutex around the table (each operation is a hash
 * lookup; claims are one call per step and builder, not per blob). */
#ifndef CAIRN_SERVER_CLAIMTAB_H
#define CAIRN_SERVER_CLAIMTAB_H

#include "server/store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest builder id kept (longer ids are refused by the handler). */
#define CD_CLAIM_MAX_BUILDER 128
/* The ttl a claim may ask for is clamped to [MIN, MAX]. */
#define CD_CLAIM_TTL_MIN_MS 200u
#define CD_CLAIM_TTL_MAX_MS 600000u
/* Default table size (cairnd has no flag for it: 64 Ki claims are 64 Ki
 * builders each running a step at the same moment). */
#define CD_CLAIMS_DEFAULT_MAX 65536

struct cd_claims;

enum cd_claim_state { CD_CLAIM_GRANTED = 1, CD_CLAIM_HELD = 2, CD_CLAIM_GONE = 3 };

/* What an operation found. remaining_ms and held_ms are 0 for GONE. */
struct cd_claim_view {
    enum cd_claim_state state;
    uint32_t remaining_ms; /* until the claim expires */
    uint32_t held_ms;      /* since its holder took it */
    uint32_t ttl_ms;       /* the ttl applied (clamped) */
    uint32_t expected_ms;  /* the holder's expected step time (0: unknown) */
};

/* A table for at most max claims (0: CD_CLAIMS_DEFAULT_MAX). Returns 0 or
 * CAIRN_E_NOMEM. */
int cd_claims_new(size_t max, struct cd_claims **out);
/* Accepts NULL. */
void cd_claims_free(struct cd_claims *t);

/* The three operations of the service, for builder (NUL-terminated, at
 * most CD_CLAIM_MAX_BUILDER bytes) on (instance, d) at time now_ms; ttl_ms
 * is clamped. take: GRANTED (new, or the caller's own renewed) or HELD
 * (another's, unexpired); CAIRN_E_FULL when the table is full of live
 * claims. renew: GRANTED (the caller's, extended) or GONE. release: GONE
 * (the caller's ended, or none) or HELD (another's, untouched). *v is
 * written on success. */
int cd_claims_take(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                   const char *builder, uint32_t ttl_ms, uint64_t now_ms,
                   struct cd_claim_view *v);
/* take with the caller's expected step time (0: unknown): kept with the
 * claim when it is granted (a nonzero one replaces the holder's own
 * earlier one), reported to others in their HELD views. */
int cd_claims_take_expecting(struct cd_claims *t, const char *instance,
                             const struct cd_digest *d, const char *builder, uint32_t ttl_ms,
                             uint32_t expected_ms, uint64_t now_ms, struct cd_claim_view *v);
int cd_claims_renew(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                    const char *builder, uint32_t ttl_ms, uint64_t now_ms,
                    struct cd_claim_view *v);
int cd_claims_release(struct cd_claims *t, const char *instance, const struct cd_digest *d,
                      const char *builder, uint64_t now_ms, struct cd_claim_view *v);

/* Ends whatever claim (instance, d) has, whoever holds it: the action's
 * result was just stored. Returns whether there was one. Accepts t NULL
 * (claims off). */
bool cd_claims_end(struct cd_claims *t, const char *instance, const struct cd_digest *d);

/* Live claims now (expired ones not yet swept may be counted). */
size_t cd_claims_count(struct cd_claims *t);

#endif
