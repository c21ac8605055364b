/* The shared cache loop (DESIGN.md, "Protocol"): layer steps of a build
 * looked up in REAPI action caches, the blobs of the hits a build needs
 * fetched and verified into the local store, new layers uploaded in the
 * background.
 *
 * A step's action digest is {sha256(key material) = the step key,
 * len(material)}; its ActionResult has one output file, `layer`: the OCI
 * layer blob, or the empty blob for a step that changed nothing. The
 * file's node properties (standard REAPI OutputFile.node_properties, which
 * any REAPI cache keeps) carry the rest of the layer record:
 * "cairn.media_type" and "cairn.diff_id", or "cairn.empty" = "true". So a
 * hit costs one GetActionResult, plus one ByteStream Read when its layer
 * is needed. The material itself is stored in the CAS. Keys and blobs of
 * a step live on the endpoint rendezvous hashing picks for the key, so a
 * server's completeness check sees every blob its action result
 * references.
 *
 * Nothing the cache says is trusted: a layer is used only after it is
 * verified while it streams (cairn_layer_verify_fd: media type, every
 * entry by the unpacker's rules, digest, diff_id, size caps), and the
 * local key index gets a record only when its blob is in the store. Every
 * failure (server down, slow, refusing, lying) is a warning on stderr and
 * the step runs locally. An endpoint with a transport failure is marked
 * down for the rest of the build, so its share of steps costs one
 * timeout. A result without cairn's properties (written by something
 * else, or by a cairn that stored them in a `layer.json` blob) is a
 * quiet miss.
 *
 * Signed entries (sign.h): with a sign-key, every uploaded result is
 * signed; an endpoint that trust covers accepts only results signed by
 * one of its trusted keys (checked right after the result is parsed,
 * before any blob is read; a refusal is a warning, and the step's
 * `refused` says why for --explain), and an offer replaces a result it
 * refuses.
 *
 * Thread-safety: lookup, fetch and finish are called by the build thread;
 * upload may be called from it while the background uploader runs.
 */
#ifndef CAIRN_CLIENT_CACHE_H
#define CAIRN_CLIENT_CACHE_H

#include "client/remote/config.h"
#include "client/remote/remote.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cairn_cache;

/* Endpoint URL: grpc://host:port[/instance] or grpcs://host:port[/instance].
 * Fills target ("host:port"), instance ("" when none) and tls. */
int cairn_cache_url_parse(const char *url, char *target, size_t tlen,
                          char *instance, size_t ilen, bool *tls,
                          struct cairn_err *err);

/* Opens a client for each URL of cfg (nothing is contacted yet).
 * CAIRN_E_INVAL for a bad URL. cfg is copied. */
int cairn_cache_open(const struct cairn_config *cfg, struct cairn_cache **out,
                     struct cairn_err *err);
/* Waits for uploads (as cairn_cache_finish) and frees. Accepts NULL. */
void cairn_cache_close(struct cairn_cache *c);
/* For a process that exits next: waits for uploads and ends the cache's
 * own threads (as cairn_cache_close), but leaves the gRPC channels and
 * gRPC's threads as they are, kept reachable until exit, instead of
 * shutting gRPC down (its threads' joins and stacks, a few milliseconds
 * that the exit does anyway). c must not be used after. Accepts NULL. */
void cairn_cache_leave(struct cairn_cache *c);

/* One layer step of a build. key_hex and material are borrowed for the
 * calls that get the step. */
struct cairn_cache_step {
    const char *key_hex;
    const void *material;
    size_t material_len;
    /* Set by the caller: the build needs this step's layer whenever it
     * hits (the target stage's chain), so the lookup thread fetches it
     * as soon as the hit is known (one round of round trips, not two)
     * when it is small (at most 1 MiB); fetched then says so, as after
     * cairn_cache_fetch. */
    bool fetch_on_hit;
    /* Set by lookup: the cache has a valid result for the key, whose
     * layer record is rec. An empty step's record is put in st's key
     * index at once (it has no blob); any other is not, until fetched. */
    bool hit;
    struct cairn_layer_rec rec;
    /* Set by fetch: the layer blob is in st and the record waits for
     * st's next commit (cairn_store_key_put_later; if that fails, with a
     * warning, the record is used from memory only). A fetch that fails
     * clears hit (the step must run). */
    bool fetched;
    /* Set by lookup when trust (config.h) refused the cache's entry for
     * the key: why, for --explain; "" otherwise. */
    char refused[256];
};
/* Starts probing the endpoints (Capabilities: the connection is made
 * and the digest function, batch size and write access learnt) on a
 * thread of its own, so that the round trip overlaps the work before
 * the first lookup; whatever needs the probe's answer waits for it.
 * Without this call the first lookup, fetch or upload probes. */
void cairn_cache_probe_start(struct cairn_cache *c);

/* Probes the endpoints, then looks all steps up in parallel (action
 * cache only, no blob is read, but for a hit with fetch_on_hit, whose
 * layer its lookup's thread fetches as cairn_cache_fetch would; and the
 * entry of cairn_cache_entry_prefetch, read in the same batch). A layer
 * over cfg's max_layer is a miss with a warning. Never fails the build:
 * misses and failures leave hit false. */
void cairn_cache_lookup(struct cairn_cache *c, struct cairn_store *st,
                        struct cairn_cache_step *steps, size_t n);

/* Fetches, in parallel, the layer blobs of the n steps of want (hits,
 * not empty, not fetched yet) from the endpoints that answered their
 * lookups, verifies each against rec while it streams (see the top of
 * this file; a blob already in st is verified too) and adds it to st and
 * the record to st's key index. A broken stream is resumed at its
 * offset; one under cfg's min_rate is not. Failures (a refused layer, a
 * full disk) are warnings and leave nothing behind; their steps get hit
 * cleared. Returns how many failed. */
size_t cairn_cache_fetch(struct cairn_cache *c, struct cairn_store *st,
                         struct cairn_cache_step *const *want, size_t n);

/* Queues a new layer (already in st under rec->layer.digest unless
 * rec->empty), its key material and its action result for upload in the
 * background. Copies what it needs. A no-op for read-only caches. */
void cairn_cache_upload(struct cairn_cache *c, struct cairn_store *st,
                        const char *key_hex, const void *material,
                        size_t material_len, const struct cairn_layer_rec *rec);

/* Offers a step this build took from the local store (a local hit, its
 * layer in st) to the cache: in the background, one GetActionResult, and
 * the upload of cairn_cache_upload only when the cache has no valid
 * result for the key (a missing blob of the result is a miss too), so a
 * server that was wiped or evicted the step is refilled by whichever
 * machine has it. Copies what it needs. A no-op for read-only caches. */
void cairn_cache_offer(struct cairn_cache *c, struct cairn_store *st,
                       const char *key_hex, const void *material,
                       size_t material_len, const struct cairn_layer_rec *rec);

/* A step's layer record as the action result carries it (see the top of
 * this file). parse returns CAIRN_E_NOTFOUND for a result that is not
 * cairn's or is in the old form (a layer.json blob), which callers treat
 * as a quiet miss, and CAIRN_E_CORRUPT for one with cairn's properties
 * that does not add up (bad media type or diff_id, an empty step with a
 * layer); *out is written only on success, its media_type static. make
 * fills res (nothing is borrowed) from a record whose media_type is one
 * of the CAIRN_MEDIA_*LAYER* types. */
int cairn_cache_result_parse(const struct cairn_remote_result *res,
                             struct cairn_layer_rec *out,
                             struct cairn_err *err);
void cairn_cache_result_make(const struct cairn_layer_rec *rec,
                             struct cairn_remote_result *res);

/* Where step claims for key_hex go (client/remote/claim.h): the
 * endpoint that holds the key, when the lookups probed it, it is up, this
 * client may write it and claims are not off (cache-claim-ttl). r,
 * instance and url are borrowed for c's life. CAIRN_E_NOTFOUND when the
 * step is not to be claimed. */
struct cairn_cache_target {
    struct cairn_remote *r;
    const char *instance;
    const char *url;
    int64_t ttl_ms;
};
int cairn_cache_claim_target(struct cairn_cache *c, const char *key_hex,
                             struct cairn_cache_target *out);

/* Entries of other kinds than a step's layer (the image record,
 * client/remote/imagerec.h) go through the same endpoints: the one that
 * rendezvous hashing picks for the action's hash, skipped when it is
 * down. get reads the action result (CAIRN_E_NOTFOUND: a miss, or the
 * endpoint is down); put uploads the material (whose digest is the
 * action) and the blobs of the store named by blobs ("sha256:..." of
 * st) that the endpoint lacks, then the result; a read-only cache is a
 * no-op (returns 0). Failures other than a miss are warnings on stderr
 * naming what, and return their code. Called from the build thread. */
int cairn_cache_entry_get(struct cairn_cache *c,
                          const struct cairn_remote_digest *action,
                          struct cairn_remote_result *out, const char *what);
/* Reads the entry of action ahead, in the next cairn_cache_lookup's
 * batch (its round trip, not one more later); the next entry_get of
 * that action takes the answer instead of asking, with the same checks
 * (trust) and warnings. One entry at a time: a second call replaces an
 * answer not yet taken. */
void cairn_cache_entry_prefetch(struct cairn_cache *c,
                                const struct cairn_remote_digest *action);
int cairn_cache_entry_put(struct cairn_cache *c, struct cairn_store *st,
                          const struct cairn_remote_digest *action,
                          const void *material, const char *const *blobs,
                          size_t nblobs, const struct cairn_remote_result *res,
                          const char *what);

/* Waits for every queued upload and offer; failures were warnings. */
void cairn_cache_finish(struct cairn_cache *c);

struct cairn_cache_stats {
    unsigned remote_hits;    /* lookups that found a valid result */
    unsigned fetches;        /* layer blobs fetched (or found) and verified */
    unsigned uploads;        /* action results written */
    unsigned upload_failures;
    unsigned offers;          /* local hits offered */
    unsigned offers_uploaded; /* ... that the cache lacked, uploaded */
    uint64_t bytes_down, bytes_up;
};
void cairn_cache_stats_get(struct cairn_cache *c, struct cairn_cache_stats *out);

#endif
