/* Pulling an image from a registry into the store, as `docker pull`
 * does.
 *
 * A tag is resolved with one HEAD of its manifest; when the store holds
 * an image with that repo digest (for the wanted platform), the pull is
 * up to date and makes no other request. Otherwise the manifest (and
 * for an index the platform's manifest, chosen as containerd chooses)
 * is fetched and verified against the digest asked for or announced,
 * layers already stored are skipped ("Already exists"), the others are
 * downloaded in parallel, each streamed into a file in the store's tmp/
 * while its sha256 is computed, resumed with a Range request when a
 * transfer breaks and the registry offers ranges, and renamed into
 * blobs/ only once its digest and size match. The manifest and config
 * are stored last, with the image record, its tag and its repo digest
 * (one transaction): a failed pull records no image, and the layers it
 * did verify are unreferenced blobs the next prune removes.
 *
 * Layers are verified by their compressed digest here; their diff_ids
 * are checked when the store first unpacks them (cairn_store_snapshot).
 *
 * Not thread-safe per call; runs its own download threads.
 */
#ifndef CAIRN_CLIENT_REGISTRY_PULL_H
#define CAIRN_CLIENT_REGISTRY_PULL_H

#include "client/registry/manifest.h"
#include "client/registry/ref.h"
#include "client/registry/transport.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdio.h>

#define CAIRN_REG_PULL_JOBS 3 /* parallel layer downloads (Docker's) */

struct cairn_reg_pull_opts {
    const struct cairn_reg_platform *platform; /* required */
    const struct cairn_reg_opts *transport;    /* may be NULL */
    FILE *out; /* docker pull's lines; NULL: quiet */
    int jobs;  /* 0: CAIRN_REG_PULL_JOBS */
};

struct cairn_reg_pull_result {
    char manifest[CAIRN_DIGEST_STR_LEN];    /* the image manifest stored */
    char repo_digest[CAIRN_DIGEST_STR_LEN]; /* what the registry named */
    bool up_to_date;   /* the store had it; nothing was downloaded */
    unsigned requests; /* HTTP requests made */
};

/* Pulls ref into st. 0 and *out filled; errors as cairn_reg_request's,
 * CAIRN_E_DIGEST when bytes do not match their digest (the message names
 * the layer or manifest), CAIRN_E_NOTFOUND for a platform the index
 * lacks (the message lists what it has). */
int cairn_reg_pull(struct cairn_store *st, const struct cairn_reg_ref *ref,
                   const struct cairn_reg_pull_opts *o,
                   struct cairn_reg_pull_result *out, struct cairn_err *err);

#endif
