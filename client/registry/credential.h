/* One registry credential, the value creds.c finds and stores and a
 * credential helper (credhelper.c) gets and stores: a user and a secret,
 * or an identity token. Its own header so that both can use it while
 * creds.c alone uses credhelper.c. */
#ifndef CAIRN_CLIENT_REGISTRY_CREDENTIAL_H
#define CAIRN_CLIENT_REGISTRY_CREDENTIAL_H

#include <stdlib.h>
#include <string.h>

struct cairn_reg_creds {
    char *username;      /* owned; NULL with an identity token */
    char *secret;        /* owned: password, or the identity token */
    int identity_token;  /* 1: secret is an OAuth2 refresh token */
};

/* Wipes the secret and frees what c owns; c is empty afterwards. Accepts
 * NULL. */
static inline void cairn_reg_creds_clear(struct cairn_reg_creds *c)
{
    if (!c)
        return;
    if (c->secret)
        explicit_bzero(c->secret, strlen(c->secret));
    free(c->username);
    free(c->secret);
    c->username = NULL;
    c->secret = NULL;
    c->identity_token = 0;
}

#endif
