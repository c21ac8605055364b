/* HTTP to one registry (libcurl): a session per registry host, used by
 * pull (and push) for every request of the distribution API.
 *
 * Scheme: HTTPS, verified against the system CAs plus every *.crt in
 * $CAIRN_CERTS_D/HOST:PORT/ (default /etc/docker/certs.d/HOST[:PORT]/ and
 * /etc/containers/certs.d/HOST[:PORT]/), with a client certificate from a
 * *.cert and the *.key of the same name there. A loopback registry
 * (127.0.0.0/8, [::1], localhost) or one named in opts->insecure is
 * reached over plain HTTP when it does not speak TLS (the first request
 * finds out and the session keeps the answer); a registry named insecure
 * also skips certificate verification, as Docker's --insecure-registry
 * does. Every other registry is HTTPS only.
 *
 * Each request: the Authorization from the session's cairn_reg_auth (on a
 * 401 the challenge is answered and the request sent once more);
 * redirects followed (at most 5, http/https only) by libcurl, which sends
 * our Authorization header only to the host, port and scheme it was set
 * for (libcurl >= 7.83), so a blob redirected to object storage does not
 * leak the registry token; a connect timeout and a low-speed limit, so a
 * registry that stops answering fails the request instead of hanging it;
 * 429 and 5xx answers (and transfers that broke before any body byte was
 * delivered) retried with a bounded exponential backoff that honours
 * Retry-After; an error answer turned into a message from the registry's
 * {"errors":[...]} body (client/registry/errors.h).
 *
 * Thread-safe: several threads may run requests on one session at once;
 * each uses an easy handle of its own from the session's pool (kept
 * between requests so connections are reused; HTTP/2 is negotiated over
 * TLS), and calls into the auth state are serialised by the session.
 */
#ifndef CAIRN_CLIENT_REGISTRY_TRANSPORT_H
#define CAIRN_CLIENT_REGISTRY_TRANSPORT_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_REG_CONNECT_TIMEOUT_S 15
/* A transfer that moves under 1 byte a second for this long is
 * abandoned; CAIRN_REGISTRY_TIMEOUT (seconds) overrides both. */
#define CAIRN_REG_STALL_S 30
#define CAIRN_REG_RETRIES 4      /* attempts after the first */
#define CAIRN_REG_RETRY_MAX_S 30 /* cap on one wait (Retry-After too) */
#define CAIRN_REG_ERRBODY_MAX (64u << 10)

struct cairn_reg_opts {
    /* Registries ("host[:port]") reached like a loopback one and without
     * certificate checks; borrowed for the session's life. */
    const char *const *insecure;
    size_t ninsecure;
};

struct cairn_reg_session;

/* host: host[:port] of the registry API (cairn_reg_ref_api_host). */
int cairn_reg_session_open(const char *host, const struct cairn_reg_opts *o,
                           struct cairn_reg_session **out,
                           struct cairn_err *err);
/* Accepts NULL. */
void cairn_reg_session_close(struct cairn_reg_session *s);
const char *cairn_reg_session_host(const struct cairn_reg_session *s);
/* Requests made so far (each attempt, retries and auth rounds counted). */
unsigned cairn_reg_session_requests(const struct cairn_reg_session *s);

/* Receives the body of a 2xx answer, in order, as it arrives. Nonzero
 * stops the transfer and that value is returned by cairn_reg_request. */
typedef int (*cairn_reg_sink_fn)(void *ctx, const void *data, size_t n);

struct cairn_reg_req {
    const char *method; /* "GET", "HEAD", "PUT", "POST", "PATCH", ... */
    /* "/v2/..." on the session's registry, or an absolute http(s) URL (an
     * upload Location, a foreign layer's URL). */
    const char *path;
    /* The token scope the request needs ("repository:NAME:pull"); NULL:
     * no Authorization at all (a URL outside the registry). */
    const char *scope;
    const char *const *headers; /* extra "Name: value", NULL-terminated */
    /* Request body: from memory, or from fd at body_off (body_len bytes). */
    const void *body;
    int body_fd; /* used when >= 0 and body is NULL */
    int64_t body_off, body_len;
    /* Response body of a 2xx answer: to sink when set, else kept in
     * resp->body up to max_body bytes (a longer one is CAIRN_E_TOOBIG). */
    cairn_reg_sink_fn sink;
    void *sink_ctx;
    size_t max_body;
    /* > 0: ask for the body from this offset (Range: bytes=N-). A
     * registry that answers 200 with the whole body instead fails the
     * request with CAIRN_E_UNSUPPORTED before the sink sees a byte. */
    int64_t range_from;
    /* The answers that are not errors (besides 2xx). E.g. 404 for a
     * blob HEAD that asks whether a blob exists. */
    long ok_status;
    /* What the request is about, for messages: "manifest busybox:latest". */
    const char *what;
};

struct cairn_reg_resp {
    long status;
    char *body; /* owned (malloc'd, NUL-terminated) when no sink */
    size_t body_len;
    char content_type[128];
    char digest[80];        /* Docker-Content-Digest, "" when absent */
    char *location;         /* owned, may be NULL: Location of a 201/202 */
    int64_t content_length; /* -1 when unknown */
    int64_t delivered;      /* body bytes given to the sink */
    bool ranges;            /* Accept-Ranges: bytes, or a 206 */
};

/* Frees what resp owns. Accepts NULL. */
void cairn_reg_resp_clear(struct cairn_reg_resp *resp);

/* Runs req. 0 when the answer is 2xx or req->ok_status (resp filled,
 * the caller clears it). Errors: CAIRN_E_AUTH (401/403, naming the
 * registry and `cairn login`), CAIRN_E_NOTFOUND (404, the registry's
 * code: name, manifest or blob unknown), CAIRN_E_RPC (other statuses,
 * with the registry's message), CAIRN_E_TIMEOUT, CAIRN_E_IO (could not
 * connect, a broken transfer: resp->delivered says how much the sink
 * got, so the caller may resume with range_from), or the sink's code. On
 * an error resp is cleared, except resp->delivered and resp->ranges. */
int cairn_reg_request(struct cairn_reg_session *s,
                      const struct cairn_reg_req *req,
                      struct cairn_reg_resp *resp, struct cairn_err *err);

#endif
