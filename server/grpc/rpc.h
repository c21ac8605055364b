/* cairnd's gRPC server loop on the gRPC C core.
 *
 * Each worker thread owns one completion queue and serves the calls that
 * arrive on it from start to end, so a call's state is only ever touched
 * by one thread and needs no lock. Every method of the table in
 * server/reapi/service.h is registered; other paths get UNIMPLEMENTED. A
 * call is a small state machine (server/grpc/rpc.c) for the three shapes
 * REAPI uses: unary, server streaming (ByteStream Read) and client
 * streaming (ByteStream Write); a client that cancels or disconnects mid-stream
 * ends the call and the handler's state is freed (its upload parked).
 *
 * Not thread-safe: start, drain and free are called from one thread (main);
 * cd_rpc_reap_idle may be called from any thread between start and free.
 */
#ifndef CAIRN_SERVER_RPC_H
#define CAIRN_SERVER_RPC_H

#include "common/error.h"
#include "server/reapi/service.h"

struct cd_rpc_opts {
    const char *listen;        /* "host:port"; port 0 picks a free one */
    unsigned threads;          /* worker threads (completion queues), >= 1 */
    const char *tls_cert_pem;  /* server certificate chain (NULL: plaintext) */
    const char *tls_key_pem;   /* its private key */
    const char *tls_client_ca_pem; /* non-NULL: require and verify client certs */
    unsigned stream_idle_s;    /* a client stream (Write) that sends nothing
                                * for this long is cancelled by
                                * cd_rpc_reap_idle; 0: never */
    /* Connection limits handed to gRPC (docs/security.md says what each
     * bounds and what gRPC 1.51 leaves open). limits false keeps gRPC's
     * defaults for all of them: only for tests that show the difference. */
    bool limits;
    unsigned max_header_size;     /* bytes of metadata per call */
    unsigned max_streams;         /* concurrent calls per connection */
    unsigned handshake_timeout_s; /* TLS + HTTP/2 settings of a new connection */
    unsigned conn_idle_s;         /* no calls for this long: GOAWAY; 0: never */
    unsigned conn_age_s;          /* GOAWAY after this long; 0: never */
    unsigned conn_grace_s;        /* calls still running then are cut */
    /* true: bind nothing; connections arrive through cd_rpc_channel_add
     * (server/grpc/relay.c, the HTTP/2 gate). Plaintext only. */
    bool external_listener;
    /* true: register only grpc.health.v1.Health; every other path is
     * UNIMPLEMENTED (the --health-listen server: no token, no store). */
    bool health_only;
};

struct cd_rpc;

/* Binds (unless external_listener), registers the methods and starts the
 * workers. *port is the bound port (0 with external_listener). svc is
 * borrowed until cd_rpc_free. Call grpc_init() first.
 * Returns 0, CAIRN_E_INVAL (bad address or TLS material), CAIRN_E_NOMEM. */
int cd_rpc_start(const struct cd_rpc_opts *opts, struct cd_svc *svc,
                 struct cd_rpc **out, int *port, struct cairn_err *err);

/* Serves one more plaintext HTTP/2 connection: fd is a connected,
 * non-blocking stream socket, owned by gRPC from here on. Thread-safe;
 * not after cd_rpc_drain has started. */
void cd_rpc_channel_add(struct cd_rpc *rpc, int fd);

/* How logs name a call's peer when connections are relayed (gRPC then
 * sees "fd:N"): fn writes the client's address for gRPC's peer string.
 * Call before the first cd_rpc_channel_add; ctx is borrowed until
 * cd_rpc_free. */
/* wait false: the caller is a call's log line, which must not wait on a
 * lock; fn may then give grpc_peer itself. */
typedef void cd_rpc_peer_name_fn(void *ctx, const char *grpc_peer, char *out, size_t n,
                                 bool wait);
void cd_rpc_peer_names_set(struct cd_rpc *rpc, cd_rpc_peer_name_fn *fn, void *ctx);

/* Cancels client-streaming calls (ByteStream Write) that have received
 * no message for stream_idle_s seconds, with DEADLINE_EXCEEDED; their
 * handler state is closed as for any cancelled call (a Write parks its
 * upload for a resume). A silent client must not hold a call, its
 * upload and its memory forever. Thread-safe; main calls it about once
 * a second. Returns how many calls it cancelled. */
unsigned cd_rpc_reap_idle(struct cd_rpc *rpc);

/* Stops accepting calls (new ones are refused) and waits up to timeout_s
 * seconds for in-flight calls to finish, then cancels the rest. Returns
 * the number of calls that had to be cancelled. */
unsigned cd_rpc_drain(struct cd_rpc *rpc, unsigned timeout_s);

/* Drains (if not done) and frees everything. Accepts NULL. */
void cd_rpc_free(struct cd_rpc *rpc);

#endif
