#include "server/grpc/metrics_http.h"

#include "server/grpc/relay.h"
#include "server/telemetry/expo.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct cd_metrics_http {
    struct MHD_Daemon *d;
    char *token; /* owned copy; NULL: open */
    cd_metrics_render_fn *render;
    void *ctx;
};

/* Equal, in time that depends only on the lengths. */
static bool same_secret(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char diff = an != bn;
    for (size_t i = 0; i < an && i < bn; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static bool authorized(struct cd_metrics_http *h, struct MHD_Connection *conn)
{
    if (h->token == NULL)
        return true;
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    static const char bearer[] = "Bearer ";
    if (v == NULL || strncasecmp(v, bearer, sizeof bearer - 1) != 0)
        return false;
    v += sizeof bearer - 1;
    return same_secret(v, strlen(v), h->token, strlen(h->token));
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                  bool challenge)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (challenge)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"cairnd\"");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct cd_metrics_http *h = cls;
    /* MHD calls twice for a request: once with the headers (answering
     * then would be allowed, but a request body must not be), once more
     * per body part. A scrape has no body; one with a body is refused. */
    if (*con_cls == NULL) {
        *con_cls = h;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0;
        return reply_text(conn, MHD_HTTP_BAD_REQUEST, "no request body expected\n", false);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics\n", false);
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: cairnd serves /metrics\n", false);
    if (!authorized(h, conn))
        return reply_text(conn, MHD_HTTP_UNAUTHORIZED, "bearer token required\n", true);
    struct cairn_buf b;
    cairn_buf_init(&b, CD_METRICS_HTTP_MAX);
    int rc = h->render(h->ctx, &b);
    size_t len = b.len;
    char *page = rc == 0 ? cairn_buf_take(&b) : NULL;
    cairn_buf_free(&b);
    if (page == NULL)
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n", false);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, page, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(page);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CD_EXPO_CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int cd_metrics_http_open(const struct cd_metrics_http_opts *opts, struct cd_metrics_http **out,
                         int *port, struct cairn_err *err)
{
    struct cd_metrics_http *h = calloc(1, sizeof *h);
    if (h == NULL || (opts->token != NULL && (h->token = strdup(opts->token)) == NULL)) {
        free(h);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    h->render = opts->render;
    h->ctx = opts->ctx;
    /* Bound here, not by MHD: the same address forms and error messages
     * as --listen, and the port known before anything is served. */
    int fd = cd_relay_listen_open("--metrics-listen", opts->listen, port, err);
    if (fd < 0) {
        free(h->token);
        free(h);
        return CAIRN_E_INVAL;
    }
    h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC, 0, NULL, NULL, on_request,
                            h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)CD_METRICS_HTTP_CONNS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (h->d == NULL) {
        close(fd);
        free(h->token);
        free(h);
        return cairn_err_set(err, CAIRN_E_NOMEM, "--metrics-listen %s: cannot start the HTTP server",
                             opts->listen);
    }
    *out = h;
    return 0;
}

void cd_metrics_http_free(struct cd_metrics_http *h)
{
    if (h == NULL)
        return;
    /* Closes the listening socket and every connection, and joins the
     * thread: a scrape in progress is answered first (render holds no
     * lock, so it cannot wait on the drain). */
    MHD_stop_daemon(h->d);
    if (h->token != NULL) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
    }
    free(h);
}
