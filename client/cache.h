/* The shared cache loop (DESIGN.md, "Protocol"): layer steps of a build
 * looked up in REAPI action caches, hits fetched and verified into the
 * local store, new layers uploaded in the background.
 *
 * A step's action digest is {sha256(key material) = the step key,
 * len(material)}; its ActionResult has the output files `layer` (the OCI
 * layer blob, absent for an empty step) and `layer.json` (media type,
 * digest, diff_id, size, empty flag, history entry); the material itself
 * is stored in the CAS. Keys and blobs of a step live on the endpoint
 * rendezvous hashing picks for the key, so a server's completeness check
 * sees every blob its action result references.
 *
 * Nothing the cache says is trusted: a hit is used only after the layer
 * blob's digest and diff_id are recomputed here and match. Every failure
 * (server down, slow, refusing, lying) is a warning on stderr, and the
 * step runs locally. An endpoint with a transport failure is marked down
 * for the rest of the build, so its share of steps costs one timeout.
 *
 * Thread-safety: lookup and finish are called by the build thread; upload
 * may be called from it while the background uploader runs.
 */
#ifndef CAIRN_CLIENT_CACHE_H
#define CAIRN_CLIENT_CACHE_H

#include "client/config.h"
#include "client/store.h"
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

/* One layer step to look up. key_hex and material are borrowed for the
 * call; hit is set when the layer is now in st and st's key index. */
struct cairn_cache_step {
    const char *key_hex;
    const void *material;
    size_t material_len;
    bool hit;
};
/* Probes the endpoints, then looks all steps up in parallel and fetches
 * and verifies the hits' blobs into st. Never fails the build: misses and
 * failures leave hit false. */
void cairn_cache_lookup(struct cairn_cache *c, struct cairn_store *st,
                        struct cairn_cache_step *steps, size_t n);

/* Queues a new layer (already in st under rec->layer.digest unless
 * rec->empty), its key material and its action result for upload in the
 * background. Copies what it needs. A no-op for read-only caches. */
void cairn_cache_upload(struct cairn_cache *c, struct cairn_store *st,
                        const char *key_hex, const void *material,
                        size_t material_len, const struct cairn_layer_rec *rec,
                        const char *created_by);

/* Waits for every queued upload; failures were warnings. */
void cairn_cache_finish(struct cairn_cache *c);

struct cairn_cache_stats {
    unsigned remote_hits;
    unsigned uploads;        /* action results written */
    unsigned upload_failures;
    uint64_t bytes_down, bytes_up;
};
void cairn_cache_stats_get(struct cairn_cache *c, struct cairn_cache_stats *out);

#endif
