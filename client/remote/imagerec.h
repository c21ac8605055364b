/* The image record (docs/remote.md, "The image record"): the config and
 * manifest a build made for its final key, kept in the shared cache as
 * an entry of its own so that another machine whose steps all hit makes
 * the very same image (same config and manifest digests) instead of one
 * with its own creation time.
 *
 * Its action digest is {sha256(material), len(material)} with material
 * "cairn image record v1" NUL final-key NUL target NUL platform NUL:
 * what decides the image. Tags and the build's time are not in it. The
 * ActionResult has two output files, `config` and `manifest`, the blobs
 * themselves (in the CAS), with node properties: `cairn.media_type` on
 * both and `cairn.created` (decimal seconds) on the config.
 *
 * Nothing in a record is trusted: the reader remakes config and manifest
 * from its own steps at the record's `cairn.created` and takes the record
 * only when both digests are the record's (client/engine/imagerec.c), so
 * a record can choose nothing but the time of an image the build would
 * make anyway.
 *
 * Thread-safety: called from the build thread.
 */
#ifndef CAIRN_CLIENT_IMAGEREC_H
#define CAIRN_CLIENT_IMAGEREC_H

#include "client/remote/cache.h"
#include "client/remote/remote.h"
#include "client/store/layer.h"
#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

/* Creation times beyond the year 9999 are refused. */
#define CAIRN_IMAGEREC_MAX_CREATED 253402300799LL

struct cairn_imagerec {
    char config_digest[CAIRN_DIGEST_STR_LEN];
    int64_t config_size;
    char manifest_digest[CAIRN_DIGEST_STR_LEN];
    int64_t manifest_size;
    int64_t created; /* the config's "created", seconds since the epoch */
};

/* What a record is stored under. All strings borrowed; target is the
 * stage's name, or its index in decimal when it has none. */
struct cairn_imagerec_key {
    const char *final_key; /* hex step key of the target's last step */
    const char *target;
    const char *platform;
};

/* Fills *material (initialized by the caller, freed by the caller) and
 * *action. CAIRN_E_NOMEM. */
int cairn_imagerec_action(const struct cairn_imagerec_key *k,
                          struct cairn_buf *material,
                          struct cairn_remote_digest *action);

/* The record in an action result. parse: CAIRN_E_NOTFOUND for a result
 * that is not an image record, CAIRN_E_CORRUPT (err says why) for one
 * that does not add up (media types, sizes of 0 or over
 * CAIRN_IMAGE_MAX_JSON, a bad digest or time); *out written on success
 * only. make fills res (nothing borrowed). */
int cairn_imagerec_result_parse(const struct cairn_remote_result *res,
                                struct cairn_imagerec *out,
                                struct cairn_err *err);
void cairn_imagerec_result_make(const struct cairn_imagerec *rec,
                                struct cairn_remote_result *res);

/* One GetActionResult. 0 with *out; CAIRN_E_NOTFOUND for a miss or a
 * cache that cannot answer (warned); CAIRN_E_CORRUPT for a malformed
 * record (err says why, not warned). */
int cairn_imagerec_lookup(struct cairn_cache *c,
                          const struct cairn_imagerec_key *k,
                          struct cairn_imagerec *out, struct cairn_err *err);

/* The GetActionResult of a later cairn_imagerec_lookup of k, sent with
 * the build's step lookups (cairn_cache_entry_prefetch). */
void cairn_imagerec_prefetch(struct cairn_cache *c,
                             const struct cairn_imagerec_key *k);

/* Uploads rec, whose two blobs are in st, under k (a no-op for a
 * read-only cache). With check, first looks: a cache that holds this
 * very record is left alone. Failures are warnings. */
void cairn_imagerec_offer(struct cairn_cache *c, struct cairn_store *st,
                          const struct cairn_imagerec_key *k,
                          const struct cairn_imagerec *rec, bool check);

#endif
