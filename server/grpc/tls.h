/* TLS for cairnd's own listener (server/grpc/relay.c): the server context,
 * built once from the PEM files of --tls-cert, --tls-key and
 * --tls-client-ca. The relay terminates TLS with it and hands gRPC only
 * plaintext, so TLS connections pass the HTTP/2 gate too.
 *
 * TLS 1.2 or newer, ALPN "h2" (gRPC clients require it), renegotiation
 * off; with a client CA, a client certificate that chains to it is
 * required. The context is immutable after cd_tls_ctx_new and may be
 * used from any thread. */
#ifndef CAIRN_SERVER_TLS_H
#define CAIRN_SERVER_TLS_H

#include "common/error.h"

#include <openssl/ssl.h>

/* Builds the context. client_ca may be NULL (no client certificates).
 * Returns 0 with *out (free with cd_tls_ctx_free) or CAIRN_E_INVAL with
 * err naming the file and OpenSSL's reason. */
int cd_tls_ctx_new(const char *cert, const char *key, const char *client_ca, SSL_CTX **out,
                   struct cairn_err *err);

/* Accepts NULL. */
void cd_tls_ctx_free(SSL_CTX *ctx);

/* OpenSSL's reason for the last failure on this thread (static or in
 * buf), and clears the queue. */
const char *cd_tls_reason(char *buf, size_t n);

#endif
