/* cairnd's /metrics listener: a small HTTP/1.1 server (libmicrohttpd, one
 * thread of its own) beside the gRPC listener that answers
 * GET /metrics with whatever render writes (the Prometheus text format,
 * server/telemetry/expo.h). It shares no lock with the gRPC path: render
 * reads atomics and the store's lock-free statistics.
 *
 * With a token, a request must carry "Authorization: Bearer <token>"
 * (compared in constant time); otherwise 401. Connections are capped
 * (CD_METRICS_HTTP_CONNS, 10 s idle) and requests are GET or HEAD of
 * /metrics only. open/free are called from one thread (main). */
#ifndef CAIRN_SERVER_METRICS_HTTP_H
#define CAIRN_SERVER_METRICS_HTTP_H

#include "common/buf.h"
#include "common/error.h"

#define CD_METRICS_HTTP_CONNS 32
/* A scrape larger than this is refused (500): it cannot happen with a
 * fixed set of methods, but the buffer has a cap like any other. */
#define CD_METRICS_HTTP_MAX (4u << 20)

/* Appends the page to out. Returns 0 or a CAIRN_E_* code. Called on the
 * listener's thread, one scrape at a time. */
typedef int cd_metrics_render_fn(void *ctx, struct cairn_buf *out);

struct cd_metrics_http_opts {
    const char *listen;  /* "host:port", "[v6]:port", "*:port"; port 0 picks one */
    const char *token;   /* NULL: open; borrowed until cd_metrics_http_free */
    cd_metrics_render_fn *render;
    void *ctx;           /* borrowed until cd_metrics_http_free */
};

struct cd_metrics_http;

/* Binds and starts serving. *port is the bound port. Returns 0, or
 * CAIRN_E_INVAL (bad address, port in use: err says which) or
 * CAIRN_E_NOMEM. */
int cd_metrics_http_open(const struct cd_metrics_http_opts *opts, struct cd_metrics_http **out,
                         int *port, struct cairn_err *err);

/* Stops: closes the listening socket and every connection (a scrape
 * being answered finishes first), joins the thread, frees. After it
 * returns render is not called again. Accepts NULL. */
void cd_metrics_http_free(struct cd_metrics_http *h);

#endif
