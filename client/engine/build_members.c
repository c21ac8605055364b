/* Member reuse for a build's layers (client/engine/build_members.h). One
 * reuse state per build: steps run one at a time, and each writer fills
 * it at its finish for the driver to record. */
#include "client/engine/build_members.h"

#include "client/store/store_members.h"

void build_members_opts(struct build *b, struct cairn_layer_opts *lo)
{
    cairn_layer_reuse_clear(&b->members);
    if (lo->compression != CAIRN_COMPRESS_GZIP)
        return;
    b->members.find = cairn_store_members_find;
    b->members.arg = b->st;
    lo->reuse = &b->members;
}

void build_members_record(struct build *b, const struct cairn_layer_desc *layer,
                          struct cairn_build_step *rep)
{
    struct cairn_err scratch;
    cairn_err_clear(&scratch);
    rep->members = b->members.nmembers;
    rep->members_reused = b->members.reused;
    (void)cairn_store_members_put(b->st, layer->digest, b->members.members,
                                  b->members.nmembers, &scratch);
    cairn_layer_reuse_clear(&b->members);
}

void build_members_free(struct build *b)
{
    cairn_layer_reuse_clear(&b->members);
}
