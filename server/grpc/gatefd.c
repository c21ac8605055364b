#include "server/grpc/gatefd.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* Entries past this many descriptors are not made (8 MiB of table). */
#define GATEFD_MAX (1u << 20)

struct cd_gatefd {
    struct cd_gate gate;   /* fed only by the thread reading fd (gRPC
                            * reads a socket from one thread at a time) */
    atomic_bool ready;     /* cd_gate_ready, for the relay's timer */
    atomic_bool refused;   /* sticky: reads fail from now on */
    pthread_mutex_t mu;    /* open, closed, ctx: close against the owner */
    int fd;
    bool open;
    cd_gatefd_closed_fn *closed;
    void *ctx;
};

typedef _Atomic(struct cd_gatefd *) slot_t;

/* Indexed by descriptor number; made once, never freed. */
static _Atomic(slot_t *) table;
static size_t table_n;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* Whether the process resolves name to fn, ours: not when a build
 * hides the executable's symbols from the dynamic linker (static gRPC,
 * --exclude-libs, a version script), and then gRPC would read past the
 * gate. */
static bool resolves_to(const char *name, void (*fn)(void))
{
    void *sym = dlsym(RTLD_DEFAULT, name);
    void (*got)(void) = NULL;
    if (sym == NULL)
        return false;
    memcpy(&got, &sym, sizeof got);
    return got == fn;
}

static void table_make(void)
{
    if (!resolves_to("recvmsg", (void (*)(void))recvmsg) ||
        !resolves_to("read", (void (*)(void))read) || !resolves_to("close", (void (*)(void))close))
        return;
    struct rlimit rl;
    size_t n = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > n)
        n = (size_t)rl.rlim_cur;
    if (n > GATEFD_MAX)
        n = GATEFD_MAX;
    slot_t *t = calloc(n, sizeof *t);
    if (t == NULL)
        return;
    table_n = n;
    atomic_store_explicit(&table, t, memory_order_release);
}

static slot_t *slot_of(int fd)
{
    slot_t *t = atomic_load_explicit(&table, memory_order_acquire);
    if (t == NULL || fd < 0 || (size_t)fd >= table_n)
        return NULL;
    return &t[fd];
}

static struct cd_gatefd *lookup(int fd)
{
    slot_t *s = slot_of(fd);
    return s == NULL ? NULL : atomic_load_explicit(s, memory_order_acquire);
}

bool cd_gatefd_available(void)
{
    pthread_once(&table_once, table_make);
    return atomic_load_explicit(&table, memory_order_acquire) != NULL;
}

struct cd_gatefd *cd_gatefd_add(int fd, const struct cd_gate_limits *lim,
                                cd_gatefd_closed_fn *closed, void *ctx)
{
    pthread_once(&table_once, table_make);
    slot_t *s = slot_of(fd);
    if (s == NULL)
        return NULL;
    struct cd_gatefd *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    cd_gate_init(&g->gate, lim);
    pthread_mutex_init(&g->mu, NULL);
    g->fd = fd;
    g->open = true;
    g->closed = closed;
    g->ctx = ctx;
    atomic_store_explicit(s, g, memory_order_release);
    return g;
}

bool cd_gatefd_ready(struct cd_gatefd *g)
{
    return atomic_load(&g->ready);
}

const char *cd_gatefd_refusal(const struct cd_gatefd *g)
{
    return g->gate.reason;
}

void cd_gatefd_shutdown(struct cd_gatefd *g)
{
    pthread_mutex_lock(&g->mu);
    if (g->open) {
        atomic_store(&g->refused, true);
        shutdown(g->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&g->mu);
}

bool cd_gatefd_detach(struct cd_gatefd *g)
{
    pthread_mutex_lock(&g->mu);
    bool open = g->open;
    if (open)
        g->closed = NULL;
    pthread_mutex_unlock(&g->mu);
    return open;
}

void cd_gatefd_free(struct cd_gatefd *g)
{
    if (g == NULL)
        return;
    /* close() may still be between calling closed and unlocking. */
    pthread_mutex_lock(&g->mu);
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* A refused connection's reads fail without reading: whatever the client
 * sent after the refusal stays unread. */
static ssize_t refused(void)
{
    errno = ECONNRESET;
    return -1;
}

/* The n bytes a read of fd put in iov go through g's gate; returns n, or
 * refuses (shutting the socket down so the client sees the end). */
static ssize_t check(struct cd_gatefd *g, int fd, const struct iovec *iov, size_t niov,
                     ssize_t n)
{
    size_t left = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < niov && left > 0; i++) {
        size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (cd_gate_feed(&g->gate, iov[i].iov_base, k) != 0) {
            atomic_store(&g->refused, true);
            shutdown(fd, SHUT_RDWR);
            return refused();
        }
        left -= k;
    }
    if (n > 0 && !atomic_load_explicit(&g->ready, memory_order_relaxed) &&
        cd_gate_ready(&g->gate))
        atomic_store(&g->ready, true);
    return n;
}

/* --- the three functions gRPC calls (see the header) --- */

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct cd_gatefd *g = lookup(fd);
    /* MSG_ERRQUEUE reads socket errors and timestamps, not the stream. */
    if (g == NULL || (flags & MSG_ERRQUEUE))
        return syscall(SYS_recvmsg, fd, msg, flags);
    /* A peek would show bytes the gate has not passed, and feeding them
     * twice would break its count; gRPC does not peek. */
    if ((flags & MSG_PEEK) || atomic_load(&g->refused))
        return refused();
    ssize_t n = syscall(SYS_recvmsg, fd, msg, flags);
    return check(g, fd, msg->msg_iov, msg->msg_iovlen, n);
}

ssize_t read(int fd, void *buf, size_t len)
{
    struct cd_gatefd *g = lookup(fd);
    if (g == NULL)
        return syscall(SYS_read, fd, buf, len);
    if (atomic_load(&g->refused))
        return refused();
    ssize_t n = syscall(SYS_read, fd, buf, len);
    struct iovec one = {buf, len};
    return check(g, fd, &one, 1, n);
}

int close(int fd)
{
    slot_t *s = slot_of(fd);
    struct cd_gatefd *g = s == NULL ? NULL : atomic_load_explicit(s, memory_order_acquire);
    if (g == NULL)
        return (int)syscall(SYS_close, fd);
    pthread_mutex_lock(&g->mu);
    /* Cleared before the number is released: whoever gets it next is
     * not gated. */
    atomic_store_explicit(s, NULL, memory_order_release);
    int rc = (int)syscall(SYS_close, fd);
    int e = errno;
    g->open = false;
    cd_gatefd_closed_fn *fn = g->closed;
    if (fn != NULL)
        fn(g->ctx, g);
    pthread_mutex_unlock(&g->mu);
    if (fn == NULL)
        cd_gatefd_free(g);
    errno = e;
    return rc;
}
