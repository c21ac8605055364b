/* Placeholder until the config.json reader lands: no stored credentials. */
#include "client/registry/creds.h"

#include <stdlib.h>

void cairn_reg_creds_clear(struct cairn_reg_creds *c)
{
    if (!c)
        return;
    free(c->username);
    free(c->secret);
    c->username = NULL;
    c->secret = NULL;
    c->identity_token = 0;
}

int cairn_reg_creds_lookup(const char *registry, struct cairn_reg_creds *out,
                           struct cairn_err *err)
{
    (void)registry;
    (void)out;
    (void)err;
    return CAIRN_E_NOTFOUND;
}

int cairn_reg_creds_store(const char *registry,
                          const struct cairn_reg_creds *c,
                          struct cairn_err *err)
{
    (void)c;
    return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                         "%s: storing credentials is not implemented",
                         registry);
}

int cairn_reg_creds_erase(const char *registry, struct cairn_err *err)
{
    (void)registry;
    (void)err;
    return CAIRN_E_NOTFOUND;
}
