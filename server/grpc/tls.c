#include "server/grpc/tls.h"

#include <openssl/err.h>
#include <stdbool.h>
#include <string.h>

const char *cd_tls_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0)
        return "connection closed";
    ERR_error_string_n(e, buf, n);
    return buf;
}

/* ALPN: HTTP/2 only. A client that offers no ALPN at all is let through
 * (gRPC's own server did the same); one that offers only other protocols
 * is refused. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char h2[] = "\x02h2";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, h2, sizeof h2 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

int cd_tls_ctx_new(const char *cert, const char *key, const char *client_ca, SSL_CTX **out,
                   struct cairn_err *err)
{
    char why[256];
    const char *file = cert;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A client that closes without close_notify has simply gone: an EOF,
     * not an error (HTTP/2 frames its own data). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* The relay retries a write with the same bytes from a buffer that
     * may have moved, and takes partial writes. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        goto fail;
    file = key;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    if (client_ca != NULL) {
        file = client_ca;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    *out = ctx;
    return 0;
fail:
    cairn_err_set(err, CAIRN_E_INVAL, "TLS: %s: %s", file, cd_tls_reason(why, sizeof why));
    SSL_CTX_free(ctx);
    return CAIRN_E_INVAL;
}

void cd_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}
