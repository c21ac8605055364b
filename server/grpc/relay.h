/* cairnd's own listener: accepts TCP connections, caps how many, and
 * makes sure no client byte reaches gRPC's header parser unchecked by the
 * HTTP/2 frame gate (server/grpc/gate.h; docs/security.md, "cairnd:
 * connections, headers and instance names"). A plaintext connection is
 * handed to gRPC as the client's socket itself, gated on gRPC's own reads
 * (server/grpc/gatefd.h); the relay keeps it counted until gRPC closes it
 * and closes it (shutdown) when the handshake is not done in time. The
 * rest of this comment is about the relayed connections: TLS ones, and a
 * plaintext one gatefd cannot take.
 *
 * One thread runs an epoll loop over every connection: both sockets are
 * non-blocking, each direction has one bounded buffer, and a side is not
 * read while its peer's buffer is full (backpressure). Client bytes are
 * fed to the gate before they are forwarded; a refused connection is
 * closed and logged with the client's address. gRPC's bytes go back
 * unchanged. Connections past max_conns in total or max_per_ip from one
 * address are closed at once (logged at most once a second), and one that
 * has not sent the HTTP/2 preface and SETTINGS within handshake_s is
 * closed (gRPC runs no handshake timer on connections it did not accept).
 *
 * With a TLS context, the relay terminates TLS (server/grpc/tls.h) and gRPC
 * sees plaintext; the gate reads the decrypted bytes.
 * cd_relay_start/stop_accepting/free are called from one thread (main). */
#ifndef CAIRN_SERVER_RELAY_H
#define CAIRN_SERVER_RELAY_H

#include "common/error.h"
#include "server/grpc/gate.h"

#include <openssl/ssl.h>

struct cd_relay_opts {
    const char *listen;        /* "host:port", "[v6]:port"; port 0 picks one */
    unsigned max_conns;        /* open connections in total, >= 1 */
    unsigned max_per_ip;       /* ... from one client address, >= 1 */
    unsigned handshake_s;      /* 0: no handshake deadline */
    struct cd_gate_limits gate;
    SSL_CTX *tls;              /* borrowed until cd_relay_free; NULL: plaintext */
    /* Takes ownership of fd, a connected, non-blocking stream socket:
     * the client's own (plaintext, gated on gRPC's reads) or the server
     * end of a socketpair (gRPC's grpc_server_add_channel_from_fd).
     * Called on the relay thread, never after cd_relay_stop_accepting
     * returned. */
    void (*hand_over)(void *ctx, int fd);
    void *ctx;
    const char *opt;           /* the option errors name, e.g. "--listen" */
};

struct cd_relay;

/* Binds "host:port" or "[v6]:port" (an empty host or "*": every address,
 * one dual-stack socket when IPv6 is there) and listens, non-blocking;
 * *port is the bound port. Returns the socket, or a negative code with
 * err naming opt (the option that gave addr) and what failed. Also used
 * by the metrics listener (server/grpc/metrics_http.h). */
int cd_relay_listen_open(const char *opt, const char *addr, int *port, struct cairn_err *err);

/* Binds and listens; connections wait in the kernel's backlog until
 * cd_relay_run. *port is the bound port. Returns 0, CAIRN_E_INVAL (bad or
 * unusable address, err says which), CAIRN_E_NOMEM or a negative errno. */
int cd_relay_open(const struct cd_relay_opts *opts, struct cd_relay **out, int *port,
                  struct cairn_err *err);

/* Starts the relay thread. Returns 0 or CAIRN_E_NOMEM. */
int cd_relay_run(struct cd_relay *r, struct cairn_err *err);

/* The client address ("ipv4:A:P", "ipv6:[A]:P") of the relayed
 * connection gRPC names grpc_peer ("fd:N", what grpc_call_get_peer says
 * of it), into out; grpc_peer itself when it is not one (any more).
 * Thread-safe. */
void cd_relay_peer_name(struct cd_relay *r, const char *grpc_peer, char *out, size_t n);
/* The same without waiting: while the relay thread holds its lock (an
 * accept storm hands connections to gRPC under it) out gets grpc_peer
 * itself. For the per-call log line, which a worker thread writes and
 * which must not make calls wait on the relay. */
void cd_relay_peer_name_try(struct cd_relay *r, const char *grpc_peer, char *out, size_t n);

/* Closes the listening socket: new connections are refused by the
 * kernel; open ones keep being relayed until either side ends them.
 * After it returns, hand_over is not called again. */
void cd_relay_stop_accepting(struct cd_relay *r);

/* Stops the thread, closes every connection and frees. Accepts NULL. */
void cd_relay_free(struct cd_relay *r);

#endif
