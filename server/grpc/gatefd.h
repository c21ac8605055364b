/* The HTTP/2 frame gate (server/grpc/gate.h) on gRPC's own reads of a
 * client socket, so that a plaintext connection needs no relay hop
 * (docs/security.md, "cairnd: connections, headers and instance names").
 *
 * The relay (server/grpc/relay.c) accepts a connection, checks the caps,
 * registers the socket here and hands the socket itself to gRPC. gRPC
 * 1.51 reads a socket only with recvmsg(2) and read(2) and ends it with
 * close(2) (its posix endpoint and fd code); cairnd defines those three
 * functions (gatefd.c), so gRPC's calls reach them instead of libc's.
 * For a registered socket, every byte a read returns is fed to the
 * connection's gate before the read returns, i.e. before gRPC's parser
 * sees it; a refusal shuts the socket down and the read fails with
 * ECONNRESET, and so does every later read. For any other descriptor the
 * three functions are the system calls, after one table lookup.
 *
 * Why: relaying every byte through a socketpair cost more CPU than
 * everything else a ByteStream Read does (docs/benchmarks.md, "session 7").
 * gRPC's writes go to the client unrelayed; they need no check.
 *
 * A registration lasts until close(fd): the entry is cleared before the
 * descriptor number is released, so a number reused by anyone else is
 * never gated. Thread-safe. */
#ifndef CAIRN_SERVER_GATEFD_H
#define CAIRN_SERVER_GATEFD_H

#include "server/grpc/gate.h"

#include <stdbool.h>

struct cd_gatefd;

/* Called on the thread that closed the socket (gRPC's), once, with g's
 * lock held: must only note g for later (cd_gatefd_free it then). */
typedef void cd_gatefd_closed_fn(void *ctx, struct cd_gatefd *g);

/* Whether gRPC's reads reach gatefd.c's functions in this process (the
 * dynamic linker resolves recvmsg, read and close to them) and the table
 * could be made; when not, cd_gatefd_add always returns NULL. */
bool cd_gatefd_available(void);

/* Gates fd (a connected client socket not yet given to gRPC) with lim
 * until it is closed; then closed(ctx, g) runs. Returns NULL when fd
 * cannot be gated here (a number past the table, sized once from
 * RLIMIT_NOFILE, or no memory, or !cd_gatefd_available()): the caller
 * relays it instead. */
struct cd_gatefd *cd_gatefd_add(int fd, const struct cd_gate_limits *lim,
                                cd_gatefd_closed_fn *closed, void *ctx);

/* The client has sent the HTTP/2 preface and its first SETTINGS frame
 * header (cd_gate_ready), as far as gRPC has read. */
bool cd_gatefd_ready(struct cd_gatefd *g);

/* Why the gate refused the connection (static text), or NULL. Stable
 * once closed has run. */
const char *cd_gatefd_refusal(const struct cd_gatefd *g);

/* Ends the connection while gRPC still has it: shuts the socket down
 * (gRPC reads EOF and closes it) and fails every later read. No-op
 * once closed. */
void cd_gatefd_shutdown(struct cd_gatefd *g);

/* The owner goes away first: closed will not run; close(fd) frees g.
 * Returns false when fd was already closed (closed has run: the owner
 * frees g as usual). */
bool cd_gatefd_detach(struct cd_gatefd *g);

/* Frees g after closed ran. Accepts NULL. */
void cd_gatefd_free(struct cd_gatefd *g);

#endif
