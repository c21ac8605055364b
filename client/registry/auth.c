/* Placeholder until the token client lands: anonymous only. */
#include "client/registry/auth.h"

#include <stdlib.h>
#include <string.h>

struct cairn_reg_auth {
    char *registry;
};

int cairn_reg_auth_new(const char *registry, cairn_reg_auth_prepare_fn prepare,
                       void *prepare_ctx, struct cairn_reg_auth **out,
                       struct cairn_err *err)
{
    (void)prepare;
    (void)prepare_ctx;
    struct cairn_reg_auth *a = calloc(1, sizeof *a);
    if (!a || !(a->registry = strdup(registry))) {
        free(a);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    *out = a;
    return 0;
}

void cairn_reg_auth_free(struct cairn_reg_auth *a)
{
    if (!a)
        return;
    free(a->registry);
    free(a);
}

int cairn_reg_auth_header(struct cairn_reg_auth *a, const char *scope,
                          char **out, struct cairn_err *err)
{
    (void)a;
    (void)scope;
    (void)err;
    *out = NULL;
    return 0;
}

int cairn_reg_auth_challenge(struct cairn_reg_auth *a, const char *challenge,
                             const char *scope, struct cairn_err *err)
{
    (void)challenge;
    (void)scope;
    return cairn_err_set(err, CAIRN_E_AUTH,
                         "%s: authentication required; run `cairn login %s`",
                         a->registry, a->registry);
}
