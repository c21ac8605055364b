#include "server/grpc/relay.h"

#include "server/telemetry/log.h"
#include "server/grpc/gatefd.h"
#include "server/grpc/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

/* Client -> gRPC bytes buffered per connection (and gRPC -> client ones
 * with TLS). 64 KiB is four full HTTP/2 frames; the kernel's socket
 * buffers hold more on either side, and 256 KiB measured no faster. */
#define RELAY_BUF (64u << 10)
/* The gRPC -> client pipe (plaintext). 256 KiB against the default
 * 64 KiB: fewer wake-ups per Read; 1 MiB measured no faster. */
#define RELAY_PIPE (256 << 10)
/* After gRPC closed its end and the last bytes went out, how long the
 * client's remaining bytes are read and dropped, so that closing does not
 * reset the connection before the client has read gRPC's GOAWAY. */
#define RELAY_LINGER_MS 2000
/* Connections accepted per wake-up of the listening socket, so a burst
 * of new connections cannot starve the open ones. */
#define RELAY_ACCEPT_BATCH 64
#define RELAY_EVENTS 64
/* "ipv6:[addr]:port" */
#define PEER_NAME (INET6_ADDRSTRLEN + 16)

struct buf {
    size_t off, len; /* bytes [off, len) are waiting */
    uint8_t d[RELAY_BUF];
};

/* The gRPC -> client direction moves through a pipe with splice(2):
 * the bytes never enter our address space (it doubled the Read rate
 * against copying them through a buffer, docs/security.md). */
struct spliced {
    int r, w;        /* the pipe's ends */
    size_t len, cap; /* bytes in it, and its size */
};

struct conn {
    struct conn *prev, *next;
    bool dead;                 /* closed; freed after this batch of events */
    /* Plaintext: gRPC has the client's socket itself and the gate runs
     * on its reads (server/grpc/gatefd.h); none of the relaying fields
     * below are used (c and g are -1, up is never touched).
     * direct_closed: gRPC closed the socket (reap_closed). */
    struct cd_gatefd *direct;
    bool direct_closed;
    struct conn *closed_next;  /* in r->closed */
    struct cd_relay *r;
    int c, g;                  /* client socket, our end of the socketpair */
    int gfd;                   /* gRPC's end, while gRPC has it (under mu) */
    uint32_t c_mask, g_mask;   /* epoll interest registered */
    bool c_eof, g_eof;         /* read 0 from that side */
    bool g_shut, c_shut;       /* sent EOF (SHUT_WR) to that side */
    int64_t deadline_ms;       /* handshake or linger deadline; 0: none */
    struct sockaddr_storage peer;
    char name[PEER_NAME];
    struct cd_gate gate;
    SSL *ssl;                  /* the client's TLS session, or NULL */
    struct buf *tls_down;      /* with TLS: gRPC -> client, to encrypt */
    struct spliced down;       /* plaintext: gRPC -> client */
    struct buf up;             /* client -> gRPC (last: the big part) */
};

struct cd_relay {
    struct cd_relay_opts o;
    int ep, lfd, wake;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* accepting, lfd and the list (head, gfd), against
                         * stop_accepting and peer_name; only the relay
                         * thread changes the list */
    bool accepting;
    struct conn *head;
    struct conn *dead;        /* closed in this batch of events */
    unsigned n_conns;
    int64_t accept_resume_ms; /* after EMFILE: when to accept again */
    struct cd_log_budget refused_log; /* one line a second (refuse_log) */
    /* Direct connections gRPC closed (on its threads), for the relay
     * thread to forget; reap is the eventfd that says so. */
    pthread_mutex_t closed_mu;
    struct conn *closed;
    int reap;
};

/* epoll tags for the descriptors that are not connections. */
static char tag_listen, tag_wake, tag_reap;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- addresses --- */

static void peer_format(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, n, "ipv4:%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, n, "ipv6:[%s]:%u", ip, port);
    }
}

/* Same client address (the port is not part of it). */
static bool peer_same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

int cd_relay_listen_open(const char *opt, const char *addr, int *port, struct cairn_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    unsigned long pn = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon[1] < '0' || colon[1] > '9' || *end != '\0' || pn > 65535)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s %s: expected HOST:PORT (port 0-65535)",
                             opt, addr);
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s %s: host name too long", opt, addr);
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    bool any = host[0] == '\0' || strcmp(host, "*") == 0;
    int gai = getaddrinfo(any ? NULL : host, colon + 1, &hints, &ai);
    if (gai != 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s %s: %s", opt, addr, gai_strerror(gai));
    int fd = -1, e = 0;
    /* The wildcard prefers one dual-stack IPv6 socket, as gRPC did. */
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (struct addrinfo *a = ai; a != NULL && fd < 0; a = a->ai_next) {
            if (any && pass == 0 && a->ai_family != AF_INET6)
                continue;
            fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                e = errno;
                continue;
            }
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (a->ai_family == AF_INET6 && any)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
                e = errno;
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s: cannot listen on %s: %s", opt, addr,
                             strerror(e ? e : EADDRNOTAVAIL));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

/* --- connections --- */

/* Closes both sockets and unlinks c. It is freed by dead_free, after the
 * batch of events that may still point at it. */
static void conn_close(struct cd_relay *r, struct conn *c, const char *why)
{
    if (why != NULL)
        cd_log(CD_LOG_DEBUG, "connection from %s closed: %s", c->name, why);
    if (c->c >= 0)
        close(c->c);
    if (c->g >= 0)
        close(c->g);
    if (c->down.r >= 0) {
        close(c->down.r);
        close(c->down.w);
    }
    /* Not closed yet (cd_relay_free): detached, close() frees it. */
    if (c->direct != NULL && c->direct_closed)
        cd_gatefd_free(c->direct);
    SSL_free(c->ssl);
    free(c->tls_down);
    pthread_mutex_lock(&r->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        r->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&r->mu);
    r->n_conns--;
    c->dead = true;
    c->next = r->dead;
    r->dead = c;
}

static void dead_free(struct cd_relay *r)
{
    while (r->dead != NULL) {
        struct conn *c = r->dead;
        r->dead = c->next;
        free(c);
    }
}

static void interest_set(struct cd_relay *r, struct conn *c, int fd, uint32_t *have, uint32_t want)
{
    if (fd < 0 || *have == want)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, fd, &ev);
    *have = want;
}

/* How a TLS call went, as buf_fill and buf_drain report it. */
static ssize_t tls_result(SSL *ssl, int k)
{
    if (k > 0)
        return k;
    switch (SSL_get_error(ssl, k)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -2;
    }
}

/* Appends what fd (through ssl when not NULL) has to b. Returns bytes
 * read, 0 at EOF, -1 when nothing is there now, -2 on an error. */
static ssize_t buf_fill(struct buf *b, int fd, SSL *ssl)
{
    if (b->off == b->len)
        b->off = b->len = 0;
    ssize_t n;
    if (ssl != NULL) {
        ERR_clear_error();
        n = tls_result(ssl, SSL_read(ssl, b->d + b->len, (int)(sizeof b->d - b->len)));
    } else {
        n = read(fd, b->d + b->len, sizeof b->d - b->len);
        if (n < 0)
            n = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    }
    if (n > 0)
        b->len += (size_t)n;
    return n;
}

/* Writes b's waiting bytes to fd (through ssl when not NULL). Returns
 * bytes written, -1 when fd takes nothing now, -2 on an error. */
static ssize_t buf_drain(struct buf *b, int fd, SSL *ssl)
{
    ssize_t n;
    if (ssl != NULL) {
        ERR_clear_error();
        n = tls_result(ssl, SSL_write(ssl, b->d + b->off, (int)(b->len - b->off)));
        if (n == 0)
            n = -2;
    } else {
        n = send(fd, b->d + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n <= 0)
            n = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
    }
    if (n > 0) {
        b->off += (size_t)n;
        if (b->off == b->len)
            b->off = b->len = 0;
    }
    return n;
}

/* Refusals are logged at most once a second (with how many there were),
 * so a flood of bad connections cannot flood the log. */
static void refuse_log(struct cd_relay *r, const char *name, const char *what, const char *why)
{
    unsigned dropped;
    if (!cd_log_budget_take(&r->refused_log, &dropped))
        return;
    cd_log(CD_LOG_WARN, "connection from %s %s: %s (%u refused since the last such line)", name,
           what, why, dropped + 1);
}

/* splice(2) between a socket and the pipe; the result as buf_fill's. */
static ssize_t splice_fill(struct spliced *p, int fd)
{
    ssize_t n = splice(fd, NULL, p->w, NULL, p->cap - p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0)
        p->len += (size_t)n;
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
}

static ssize_t splice_drain(struct spliced *p, int fd)
{
    ssize_t n = splice(p->r, NULL, fd, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        p->len -= (size_t)n;
        return n;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
}

/* The client's socket or TLS session failed: close, saying why (a TLS
 * handshake failure, e.g. a missing client certificate, is a refusal and
 * logged as one). */
static void client_error(struct cd_relay *r, struct conn *c, const char *op)
{
    if (c->ssl != NULL) {
        char buf[256];
        const char *why = cd_tls_reason(buf, sizeof buf);
        if (!SSL_is_init_finished(c->ssl)) {
            refuse_log(r, c->name, "closed: TLS handshake failed", why);
            conn_close(r, c, NULL);
            return;
        }
        cd_log(CD_LOG_DEBUG, "connection from %s closed: TLS %s: %s", c->name, op, why);
        conn_close(r, c, NULL);
        return;
    }
    cd_log(CD_LOG_DEBUG, "connection from %s closed: %s: %s", c->name, op, strerror(errno));
    conn_close(r, c, NULL);
}

/* client -> gRPC, through the gate: reads what the client sent, feeds it
 * to the gate, writes it to gRPC, and passes on the client's EOF. Sets
 * *moved when bytes or an EOF moved. Returns false when it closed the
 * connection. */
static bool pump_up(struct cd_relay *r, struct conn *c, bool *moved)
{
    ssize_t n;
    if (!c->c_eof && c->up.len < sizeof c->up.d) {
        size_t at = c->up.len == c->up.off ? 0 : c->up.len;
        n = buf_fill(&c->up, c->c, c->ssl);
        if (n == -2) {
            client_error(r, c, "read");
            return false;
        }
        if (n == 0)
            c->c_eof = true;
        if (n >= 0)
            *moved = true;
        if (n > 0 && c->g_eof) {
            c->up.off = c->up.len = 0; /* gRPC is gone: drop */
        } else if (n > 0) {
            if (cd_gate_feed(&c->gate, c->up.d + at, (size_t)n) != 0) {
                refuse_log(r, c->name, "closed by the HTTP/2 gate", c->gate.reason);
                conn_close(r, c, NULL);
                return false;
            }
            if (c->deadline_ms != 0 && cd_gate_ready(&c->gate) && !c->c_shut)
                c->deadline_ms = 0;
        }
    }
    if (c->g >= 0 && c->up.len > c->up.off) {
        n = buf_drain(&c->up, c->g, NULL);
        if (n == -2) {
            conn_close(r, c, "gRPC side write error");
            return false;
        }
        *moved |= n > 0;
    }
    if (c->c_eof && c->up.len == c->up.off && c->g >= 0 && !c->g_shut) {
        shutdown(c->g, SHUT_WR);
        c->g_shut = true;
    }
    return true;
}

/* gRPC closed its end of the connection: nothing more to read or write
 * there, and its descriptor number may be reused. */
static void grpc_gone(struct cd_relay *r, struct conn *c)
{
    c->g_eof = true;
    pthread_mutex_lock(&r->mu);
    c->gfd = -1;
    pthread_mutex_unlock(&r->mu);
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->g, NULL);
    close(c->g);
    c->g = -1;
    c->up.off = c->up.len = 0;
}

/* gRPC -> client, unchanged (encrypted with TLS): reads from gRPC, writes
 * to the client, and once gRPC is gone and all is sent, ends the client's
 * side and lingers. Sets *moved as pump_up. Returns false when it closed
 * the connection. */
static bool pump_down(struct cd_relay *r, struct conn *c, bool *moved)
{
    ssize_t n;
    size_t down_len = c->ssl ? c->tls_down->len - c->tls_down->off : c->down.len;
    size_t down_room = c->ssl ? sizeof c->tls_down->d - c->tls_down->len : c->down.cap - c->down.len;
    if (c->g >= 0 && down_room > 0) {
        n = c->ssl ? buf_fill(c->tls_down, c->g, NULL) : splice_fill(&c->down, c->g);
        if (n == -2 || n == 0) {
            grpc_gone(r, c);
            *moved = true;
        } else if (n > 0) {
            down_len += (size_t)n;
            *moved = true;
        }
    }
    if (down_len > 0) {
        n = c->ssl ? buf_drain(c->tls_down, c->c, c->ssl) : splice_drain(&c->down, c->c);
        if (n == -2) {
            client_error(r, c, "write");
            return false;
        }
        if (n > 0)
            down_len -= (size_t)n;
        *moved |= n > 0;
    }
    if (c->g_eof && down_len == 0 && !c->c_shut) {
        if (c->ssl != NULL)
            SSL_shutdown(c->ssl); /* close_notify, best effort */
        shutdown(c->c, SHUT_WR);
        c->c_shut = true;
        c->deadline_ms = now_ms() + RELAY_LINGER_MS;
    }
    return true;
}

/* Registers what the connection waits for on either socket. */
static void conn_watch(struct cd_relay *r, struct conn *c)
{
    bool down_waiting = c->ssl ? c->tls_down->len > c->tls_down->off : c->down.len > 0;
    bool down_room = c->ssl ? c->tls_down->len < sizeof c->tls_down->d : c->down.len < c->down.cap;
    uint32_t cw = 0, gw = 0;
    if (!c->c_eof && c->up.len < sizeof c->up.d)
        cw |= EPOLLIN;
    /* TLS may need to write while reading (the handshake). */
    if (down_waiting || (c->ssl != NULL && SSL_want_write(c->ssl)))
        cw |= EPOLLOUT;
    if (down_room)
        gw |= EPOLLIN;
    if (c->up.len > c->up.off)
        gw |= EPOLLOUT;
    interest_set(r, c, c->c, &c->c_mask, cw);
    interest_set(r, c, c->g, &c->g_mask, gw);
}

/* Moves whatever can move in both directions, then registers what the
 * connection waits for. Returns false when it closed the connection. */
static bool conn_pump(struct cd_relay *r, struct conn *c)
{
    for (bool moved = true; moved;) {
        moved = false;
        if (!pump_up(r, c, &moved) || !pump_down(r, c, &moved))
            return false;
    }
    if (c->c_eof && c->c_shut) {
        conn_close(r, c, NULL);
        return false;
    }
    conn_watch(r, c);
    return true;
}

/* cd_gatefd_closed_fn: gRPC closed a direct connection's socket (on its
 * thread, under the gatefd's lock): queue it for the relay thread. */
static void direct_closed(void *ctx, struct cd_gatefd *g)
{
    (void)g;
    struct conn *c = ctx;
    struct cd_relay *r = c->r;
    pthread_mutex_lock(&r->closed_mu);
    c->closed_next = r->closed;
    r->closed = c;
    pthread_mutex_unlock(&r->closed_mu);
    uint64_t one = 1;
    if (write(r->reap, &one, sizeof one) != (ssize_t)sizeof one)
        cd_log(CD_LOG_ERROR, "relay: cannot wake the thread: %s", strerror(errno));
}

/* The direct connections gRPC closed: log a gate refusal, forget them. */
static void reap_closed(struct cd_relay *r)
{
    uint64_t n;
    if (read(r->reap, &n, sizeof n) < 0 && errno != EAGAIN)
        cd_log(CD_LOG_ERROR, "relay: eventfd: %s", strerror(errno));
    pthread_mutex_lock(&r->closed_mu);
    struct conn *c = r->closed;
    r->closed = NULL;
    pthread_mutex_unlock(&r->closed_mu);
    while (c != NULL) {
        struct conn *next = c->closed_next;
        const char *why = cd_gatefd_refusal(c->direct);
        if (why != NULL)
            refuse_log(r, c->name, "closed by the HTTP/2 gate", why);
        c->direct_closed = true;
        conn_close(r, c, why == NULL ? "closed by gRPC" : NULL);
        c = next;
    }
}

/* A plaintext connection: gRPC gets the client's socket itself, gated on
 * its own reads (server/grpc/gatefd.h), so no byte crosses the relay.
 * Returns false when that cannot be (the descriptor is past the gate's
 * table, or no memory): the caller relays it. Called as conn_accept. */
static bool conn_direct(struct cd_relay *r, int fd, const struct sockaddr_storage *peer,
                        const char *name)
{
    /* up stays untouched (no page of it is used). */
    struct conn *c = malloc(sizeof *c);
    if (c == NULL)
        return false;
    memset(c, 0, offsetof(struct conn, up));
    c->direct = cd_gatefd_add(fd, &r->o.gate, direct_closed, c);
    if (c->direct == NULL) {
        free(c);
        return false;
    }
    c->r = r;
    c->c = c->g = -1;
    c->gfd = fd;
    c->down = (struct spliced){-1, -1, 0, 0};
    c->peer = *peer;
    snprintf(c->name, sizeof c->name, "%s", name);
    if (r->o.handshake_s != 0)
        c->deadline_ms = now_ms() + (int64_t)r->o.handshake_s * 1000;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->next = r->head;
    if (r->head)
        r->head->prev = c;
    r->head = c;
    r->n_conns++;
    cd_log(CD_LOG_DEBUG, "connection from %s", name);
    r->o.hand_over(r->o.ctx, fd);
    return true;
}

/* One accepted client socket: check the caps, then hand it to gRPC
 * (conn_direct), or with TLS make the socketpair and hand gRPC its end.
 * Called with r->mu held and r->accepting. */
static void conn_accept(struct cd_relay *r, int fd, const struct sockaddr_storage *peer)
{
    char name[PEER_NAME];
    peer_format(peer, name, sizeof name);
    unsigned same = 0;
    for (struct conn *o = r->head; o != NULL; o = o->next)
        same += peer_same_ip(&o->peer, peer);
    if (r->n_conns >= r->o.max_conns) {
        refuse_log(r, name, "refused", "--max-connections reached");
        close(fd);
        return;
    }
    if (same >= r->o.max_per_ip) {
        refuse_log(r, name, "refused", "--max-connections-per-ip reached");
        close(fd);
        return;
    }
    if (r->o.tls == NULL && conn_direct(r, fd, peer, name))
        return;
    int sp[2] = {-1, -1}, pp[2] = {-1, -1};
    const char *why = "out of memory";
    struct conn *c = malloc(sizeof *c);
    if (c == NULL)
        goto fail;
    memset(c, 0, offsetof(struct conn, up));
    c->up.off = c->up.len = 0;
    why = "socketpair";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0)
        goto fail;
    c->down = (struct spliced){-1, -1, 0, 0};
    if (r->o.tls != NULL) {
        /* TLS: gRPC's bytes are encrypted from a buffer; the session
         * starts with the client's hello (SSL_read accepts). */
        why = "TLS session";
        if ((c->tls_down = malloc(sizeof *c->tls_down)) == NULL ||
            (c->ssl = SSL_new(r->o.tls)) == NULL || SSL_set_fd(c->ssl, fd) != 1)
            goto fail;
        c->tls_down->off = c->tls_down->len = 0;
        SSL_set_accept_state(c->ssl);
    } else {
        why = "pipe";
        if (pipe2(pp, O_NONBLOCK | O_CLOEXEC) != 0)
            goto fail;
        /* A bigger pipe means fewer wake-ups per Read; the default
         * (64 KiB) is kept when the system refuses (pipe-user-pages). */
        int cap = fcntl(pp[1], F_SETPIPE_SZ, RELAY_PIPE);
        if (cap < 0)
            cap = fcntl(pp[1], F_GETPIPE_SZ);
        c->down = (struct spliced){pp[0], pp[1], 0, cap > 0 ? (size_t)cap : 4096};
    }
    c->c = fd;
    c->g = sp[0];
    c->gfd = sp[1];
    c->peer = *peer;
    memcpy(c->name, name, sizeof name);
    cd_gate_init(&c->gate, &r->o.gate);
    if (r->o.handshake_s != 0)
        c->deadline_ms = now_ms() + (int64_t)r->o.handshake_s * 1000;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->c_mask = EPOLLIN;
    c->g_mask = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    struct epoll_event ev2 = ev;
    why = "epoll";
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) != 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, sp[0], &ev2) != 0)
        goto fail;
    c->next = r->head;
    if (r->head)
        r->head->prev = c;
    r->head = c;
    r->n_conns++;
    cd_log(CD_LOG_DEBUG, "connection from %s", name);
    r->o.hand_over(r->o.ctx, sp[1]);
    return;
fail:
    cd_log(CD_LOG_WARN, "connection from %s dropped: %s: %s", name, why,
           c == NULL ? "out of memory" : strerror(errno));
    for (int i = 0; i < 2; i++) {
        if (sp[i] >= 0)
            close(sp[i]);
        if (pp[i] >= 0)
            close(pp[i]);
    }
    if (c != NULL) {
        SSL_free(c->ssl);
        free(c->tls_down);
    }
    free(c);
    close(fd);
}

static void accept_some(struct cd_relay *r)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < RELAY_ACCEPT_BATCH && r->accepting; i++) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        int fd = accept4(r->lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: the listening socket stays
                 * readable, so stop watching it for a moment instead of
                 * spinning. */
                cd_log(CD_LOG_WARN, "accept: %s: pausing new connections for 1s", strerror(errno));
                epoll_ctl(r->ep, EPOLL_CTL_DEL, r->lfd, NULL);
                r->accept_resume_ms = now_ms() + 1000;
            }
            break;
        }
        conn_accept(r, fd, &peer);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Deadlines: handshakes not done in time, lingering closes; and the
 * accept pause. */
static void sweep(struct cd_relay *r, int64_t now)
{
    struct conn *next;
    for (struct conn *c = r->head; c != NULL; c = next) {
        next = c->next;
        if (c->deadline_ms == 0 || now < c->deadline_ms)
            continue;
        if (c->direct != NULL) {
            /* gRPC reads EOF and closes it: reap_closed forgets it. */
            if (!cd_gatefd_ready(c->direct)) {
                cd_log(CD_LOG_INFO, "connection from %s closed: no HTTP/2 preface and SETTINGS "
                       "within %us (--handshake-timeout)", c->name, r->o.handshake_s);
                cd_gatefd_shutdown(c->direct);
            }
            c->deadline_ms = 0;
            continue;
        }
        if (!c->c_shut)
            cd_log(CD_LOG_INFO, "connection from %s closed: no HTTP/2 preface and SETTINGS "
                   "within %us (--handshake-timeout)", c->name, r->o.handshake_s);
        conn_close(r, c, NULL);
    }
    dead_free(r);
    if (r->accept_resume_ms != 0 && now >= r->accept_resume_ms) {
        r->accept_resume_ms = 0;
        pthread_mutex_lock(&r->mu);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
        if (r->accepting)
            epoll_ctl(r->ep, EPOLL_CTL_ADD, r->lfd, &ev);
        pthread_mutex_unlock(&r->mu);
    }
}

static void *relay_main(void *arg)
{
    struct cd_relay *r = arg;
    struct epoll_event evs[RELAY_EVENTS];
    int64_t last_sweep = now_ms();
    for (;;) {
        int n = epoll_wait(r->ep, evs, RELAY_EVENTS, 250);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_wake)
                return NULL;
            if (p == &tag_reap) {
                reap_closed(r);
                continue;
            }
            if (p == &tag_listen) {
                accept_some(r);
                continue;
            }
            struct conn *c = p;
            if (c->dead)
                continue;
            if (evs[i].events & EPOLLERR) {
                conn_close(r, c, "socket error");
                continue;
            }
            /* A hang-up on a side already at EOF would be reported
             * again on every wait: the connection is over. */
            if (conn_pump(r, c) && (evs[i].events & EPOLLHUP) && c->c_eof)
                conn_close(r, c, "hang-up");
        }
        dead_free(r);
        int64_t now = now_ms();
        if (now - last_sweep >= 250) {
            last_sweep = now;
            sweep(r, now);
        }
    }
}

int cd_relay_open(const struct cd_relay_opts *opts, struct cd_relay **out, int *port,
                  struct cairn_err *err)
{
    struct cd_relay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    r->o = *opts;
    r->ep = r->wake = r->reap = -1;
    /* One refusal line a second: a header flood refuses hundreds of
     * connections a second, and one line with their count says as much. */
    r->refused_log.burst = 1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->closed_mu, NULL);
    int rc;
    r->lfd = cd_relay_listen_open(opts->opt, opts->listen, port, err);
    if (r->lfd < 0) {
        rc = r->lfd;
        goto fail;
    }
    r->accepting = true;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->reap = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &tag_listen};
    struct epoll_event we = {.events = EPOLLIN, .data.ptr = &tag_wake};
    struct epoll_event re = {.events = EPOLLIN, .data.ptr = &tag_reap};
    if (r->ep < 0 || r->wake < 0 || r->reap < 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, r->lfd, &le) != 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, r->wake, &we) != 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, r->reap, &re) != 0) {
        rc = cairn_err_set(err, -errno, "relay: %s", strerror(errno));
        goto fail;
    }
    if (opts->tls == NULL && !cd_gatefd_available())
        cd_log(CD_LOG_WARN, "%s: plaintext connections are relayed: gRPC's reads do not "
               "reach cairnd's gate in this build (docs/security.md)", opts->opt);
    *out = r;
    return 0;
fail:
    cd_relay_free(r);
    return rc;
}

int cd_relay_run(struct cd_relay *r, struct cairn_err *err)
{
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0)
        return cairn_err_set(err, CAIRN_E_NOMEM, "cannot start the relay thread");
    r->started = true;
    return 0;
}

/* cd_relay_peer_name's lookup; wait false: give up when r->mu is busy. */
static void peer_lookup(struct cd_relay *r, const char *grpc_peer, char *out, size_t n, bool wait)
{
    char *end = NULL;
    long fd = -1;
    if (strncmp(grpc_peer, "fd:", 3) == 0 && grpc_peer[3] >= '0' && grpc_peer[3] <= '9')
        fd = strtol(grpc_peer + 3, &end, 10);
    const char *name = grpc_peer;
    if (wait) {
        pthread_mutex_lock(&r->mu);
    } else if (pthread_mutex_trylock(&r->mu) != 0) {
        snprintf(out, n, "%s", grpc_peer);
        return;
    }
    /* Newest first: should two entries share a number, the older one's
     * gRPC end is the closed one. */
    for (struct conn *c = r->head; c != NULL && fd >= 0 && end != NULL && *end == '\0';
         c = c->next) {
        if (c->gfd == fd) {
            name = c->name;
            break;
        }
    }
    snprintf(out, n, "%s", name);
    pthread_mutex_unlock(&r->mu);
}

void cd_relay_peer_name(struct cd_relay *r, const char *grpc_peer, char *out, size_t n)
{
    peer_lookup(r, grpc_peer, out, n, true);
}

void cd_relay_peer_name_try(struct cd_relay *r, const char *grpc_peer, char *out, size_t n)
{
    peer_lookup(r, grpc_peer, out, n, false);
}

void cd_relay_stop_accepting(struct cd_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    if (r->accepting) {
        r->accepting = false;
        epoll_ctl(r->ep, EPOLL_CTL_DEL, r->lfd, NULL);
        close(r->lfd);
        r->lfd = -1;
    }
    pthread_mutex_unlock(&r->mu);
}

void cd_relay_free(struct cd_relay *r)
{
    if (r == NULL)
        return;
    cd_relay_stop_accepting(r);
    if (r->lfd >= 0)
        close(r->lfd);
    if (r->started) {
        uint64_t one = 1;
        if (write(r->wake, &one, sizeof one) != (ssize_t)sizeof one)
            cd_log(CD_LOG_ERROR, "relay: cannot wake the thread: %s", strerror(errno));
        pthread_join(r->thread, NULL);
    }
    /* Direct connections gRPC still has are cut and let go of (close()
     * frees their gate); those it closed meanwhile are in r->closed. */
    for (struct conn *c = r->head; c != NULL; c = c->next) {
        if (c->direct != NULL && !c->direct_closed) {
            cd_gatefd_shutdown(c->direct);
            cd_gatefd_detach(c->direct);
        }
    }
    if (r->reap >= 0)
        reap_closed(r);
    while (r->head != NULL)
        conn_close(r, r->head, NULL);
    dead_free(r);
    if (r->reap >= 0)
        close(r->reap);
    if (r->wake >= 0)
        close(r->wake);
    if (r->ep >= 0)
        close(r->ep);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->closed_mu);
    free(r);
}
