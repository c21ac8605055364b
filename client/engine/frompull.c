/* FROM images from registries: before a build's keys are made, the base
 * images of the stages it needs (and COPY --from images) are pulled when
 * missing from the store (Docker's default), re-resolved with --pull (a
 * tag costs one HEAD when it has not moved), or never with --pull=never.
 * The plan is then made again, so each key holds the manifest digest the
 * store now has for the tag (cachekey/plan.h: ck_image_info.digest), not
 * the tag: a moved tag is a clean miss. */
#include "client/engine/frompull.h"

#include "client/registry/pull.h"
#include "client/registry/ref.h"

#include <stdio.h>
#include <string.h>

/* Whether an earlier step of the needed ones already asked for ref. */
static bool seen_before(const struct ck_plan *p, size_t upto, const char *ref)
{
    for (size_t i = 0; i < upto; i++) {
        const struct ck_step *s = &p->steps[i];
        const struct ck_stage *st = &p->stages[s->stage];
        if (!st->needed)
            continue;
        if (i == st->first_step && st->base_kind == CK_BASE_IMAGE &&
            strcmp(st->base_ref, ref) == 0)
            return true;
        if (s->from_kind == CK_FROM_IMAGE && s->from_ref &&
            strcmp(s->from_ref, ref) == 0)
            return true;
    }
    return false;
}

/* Pulls one image; *changed when the store's image for ref moved. */
static int pull_one(struct build *b, const char *ref, bool missing,
                    const char *platform, int line, bool *changed)
{
    const struct cairn_build_opts *o = b->o;
    struct cairn_reg_ref r;
    struct cairn_reg_platform plat;
    struct cairn_err e;
    cairn_err_clear(&e);
    /* A name that is no registry reference is left to the resolver's
     * message. */
    if (cairn_reg_ref_parse(ref, &r, NULL) != 0)
        return 0;
    int rc = cairn_reg_platform_parse(platform ? platform : "linux/amd64",
                                      &plat, &e);
    struct cairn_reg_opts topts = {.insecure = o->insecure_registries,
                                   .ninsecure = o->ninsecure_registries};
    struct cairn_reg_pull_opts po = {
        .platform = &plat, .transport = &topts, .out = b->out};
    struct cairn_reg_pull_result res;
    if (rc == 0)
        rc = cairn_reg_pull(b->st, &r, &po, &res, &e);
    if (rc)
        return cairn_err_set(b->err, rc, "%s:%d: image \"%s\" %s: %s",
                             b->plan->name, line, ref,
                             missing ? "is not in the store and could not "
                                       "be pulled"
                                     : "could not be pulled (--pull)",
                             e.msg);
    if (!res.up_to_date)
        *changed = true;
    return 0;
}

int build_bases_pull(struct build *b, bool *changed)
{
    const struct ck_plan *p = b->plan;
    *changed = false;
    if (b->o->pull == CAIRN_BUILD_PULL_NEVER)
        return 0;
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct ck_step *s = &p->steps[i];
        const struct ck_stage *st = &p->stages[s->stage];
        if (!st->needed)
            continue;
        const char *ref = NULL;
        bool missing = false;
        if (i == st->first_step && st->base_kind == CK_BASE_IMAGE) {
            ref = st->base_ref;
            missing = st->base_unresolved;
        } else if (s->from_kind == CK_FROM_IMAGE && s->from_ref) {
            ref = s->from_ref;
            missing = s->from_unresolved;
        }
        if (ref == NULL || seen_before(p, i, ref) ||
            (!missing && b->o->pull != CAIRN_BUILD_PULL_ALWAYS))
            continue;
        int rc = pull_one(b, ref, missing, st->platform,
                          s->instr ? s->instr->line : 0, changed);
        if (rc)
            return rc;
    }
    return 0;
}
