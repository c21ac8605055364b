/* h2flood: oversized HTTP/2 header blocks against cairnd, and how fast
 * Health/Check and Capabilities answer meanwhile (issue 9, item 14;
 * tests/integration/test_server_header_flood.sh).
 *
 *   bench_h2flood [--addr A] [--conns N] [--bytes SIZE] [--header SIZE]
 *                 [--chunk BYTES] [--gap-ms MS] [--warmup-ms MS]
 *                 [--probes K] [--bound-ms MS] [--timeout-ms MS]
 *   bench_h2flood --addr A --settings 1
 *   bench_h2flood --addr A --idle 0|1 [--timeout-ms MS]
 *
 * --settings 1 prints the server's SETTINGS as `setting ID=VALUE` lines.
 * --idle opens a connection that sends nothing (0) or only the preface
 * and an empty SETTINGS (1), and prints `closed after MS ms` (exit 0)
 * when the server closes it or sends GOAWAY, or `still open` (exit 1)
 * after --timeout-ms.
 *
 * N raw TCP connections (no gRPC library on the attacking side) each send
 * the HTTP/2 preface, an empty SETTINGS, and a HEADERS frame for stream 1
 * without END_HEADERS followed by CONTINUATION frames (16 KiB each) that
 * carry --bytes of header block: the request's pseudo-headers, then
 * literal-without-indexing fields `x-flood-N: aaaa...` of --header bytes
 * each (hpack-encoded here, no Huffman). The block is never finished: the
 * connection is held open once --bytes are sent. Written --chunk bytes
 * at a time with --gap-ms between writes (a trickle); a connection the
 * server closes is opened again, so the pressure lasts the whole run.
 *
 * After --warmup-ms, K Health/Check and K GetCapabilities calls are made
 * one after the other on a gRPC channel connected before the flood, with
 * --timeout-ms each. Prints every latency, the medians and maxima, and
 * what the flooding connections achieved. Exit 0 when every call
 * succeeded and both medians are at most --bound-ms, 1 otherwise, 100 on
 * a usage or local error. */
#include "reapi_client.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_LOCAL 100
#define FRAME_MAX 16384 /* SETTINGS_MAX_FRAME_SIZE a server must accept */
#define MAX_PROBES 1000

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct opts {
    char host[256];
    char port[16];
    unsigned conns;
    uint64_t bytes;  /* header block bytes per connection */
    uint64_t header; /* value bytes per flood field */
    size_t chunk;    /* bytes per write */
    unsigned gap_ms; /* pause between writes */
};

struct flooder {
    const struct opts *o;
    pthread_t thread;
    atomic_bool *stop;
    uint64_t sent;         /* header block bytes, all connections */
    uint64_t max_accepted; /* most block bytes one connection got in */
    unsigned opened;       /* connections opened */
    unsigned closed;       /* ... that the server closed */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* HPACK integer with an N-bit prefix (RFC 7541 5.1); returns bytes used. */
static size_t hpack_int(uint8_t *out, uint8_t first, unsigned prefix_bits, uint64_t v)
{
    uint64_t max = (1u << prefix_bits) - 1;
    if (v < max) {
        out[0] = (uint8_t)(first | v);
        return 1;
    }
    size_t n = 0;
    out[n++] = (uint8_t)(first | max);
    v -= max;
    while (v >= 128) {
        out[n++] = (uint8_t)(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* A literal string without Huffman coding. */
static size_t hpack_str(uint8_t *out, const char *s)
{
    size_t len = strlen(s), n = hpack_int(out, 0, 7, len);
    memcpy(out + n, s, len);
    return n + len;
}

/* Pseudo-headers of a gRPC request to Health/Check. */
static size_t block_prefix(uint8_t *out, const char *authority)
{
    size_t n = 0;
    out[n++] = 0x83; /* :method POST (static index 3) */
    out[n++] = 0x86; /* :scheme http (6) */
    n += hpack_int(out + n, 0x00, 4, 4); /* :path, literal value, not indexed */
    n += hpack_str(out + n, "/grpc.health.v1.Health/Check");
    n += hpack_int(out + n, 0x00, 4, 1); /* :authority */
    n += hpack_str(out + n, authority);
    n += hpack_int(out + n, 0x00, 4, 31); /* content-type */
    n += hpack_str(out + n, "application/grpc");
    out[n++] = 0x00; /* te: trailers, new name */
    n += hpack_str(out + n, "te");
    n += hpack_str(out + n, "trailers");
    return n;
}

/* Produces the header block byte by byte: the prefix, then flood fields
 * of o->header value bytes, whose own 0x00/name/length head is built
 * when a field starts. */
struct block {
    uint8_t head[512]; /* the prefix: ~70 bytes and the host (< 256) */
    size_t head_len, pos; /* position in head, then in the value */
    uint64_t value_len;
    unsigned field;
    bool in_prefix;
};

static void block_next_field(struct block *b, uint64_t value_len)
{
    char name[32];
    snprintf(name, sizeof name, "x-flood-%u", b->field++);
    size_t n = 0;
    b->head[n++] = 0x00;
    n += hpack_str(b->head + n, name);
    n += hpack_int(b->head + n, 0, 7, value_len);
    b->head_len = n;
    b->value_len = value_len;
    b->pos = 0;
    b->in_prefix = false;
}

static size_t block_fill(struct block *b, const struct opts *o, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        if (b->pos < b->head_len) {
            size_t k = b->head_len - b->pos < cap - n ? b->head_len - b->pos : cap - n;
            memcpy(out + n, b->head + b->pos, k);
            b->pos += k;
            n += k;
            continue;
        }
        if (b->in_prefix) {
            block_next_field(b, o->header);
            continue;
        }
        uint64_t left = b->head_len + b->value_len - b->pos;
        if (left == 0) {
            block_next_field(b, o->header);
            continue;
        }
        size_t k = left < cap - n ? (size_t)left : cap - n;
        memset(out + n, 'a', k);
        b->pos += k;
        n += k;
    }
    return n;
}

static void frame_head(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t stream)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(stream >> 24);
    p[6] = (uint8_t)(stream >> 16);
    p[7] = (uint8_t)(stream >> 8);
    p[8] = (uint8_t)stream;
}

static int dial(const struct opts *o)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(o->host, o->port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Writes all of p, reading (and dropping) whatever the server sends so
 * its writes never block. Returns 0, or -1 when the server closed. */
static int send_all(int fd, const uint8_t *p, size_t len, atomic_bool *stop)
{
    while (len > 0 && !atomic_load(stop)) {
        struct pollfd pfd = {fd, POLLIN | POLLOUT, 0};
        if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
            return -1;
        if (pfd.revents & POLLIN) {
            uint8_t sink[16384];
            ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
        }
        if (pfd.revents & (POLLERR | POLLHUP))
            return -1;
        if (pfd.revents & POLLOUT) {
            ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            if (w > 0) {
                p += w;
                len -= (size_t)w;
            }
        }
    }
    return 0;
}

/* One connection: returns when the server closed it or stop was set. */
static void flood_once(struct flooder *f, int fd)
{
    const struct opts *o = f->o;
    uint8_t buf[9 + FRAME_MAX];
    frame_head(buf, 0, 0x4, 0, 0); /* SETTINGS, empty */
    if (send_all(fd, (const uint8_t *)preface, sizeof preface - 1, f->stop) != 0 ||
        send_all(fd, buf, 9, f->stop) != 0) {
        f->closed++;
        return;
    }
    struct block b = {0};
    b.head_len = block_prefix(b.head, o->host);
    b.in_prefix = true;
    uint64_t done = 0;
    bool first = true;
    while (!atomic_load(f->stop) && done < o->bytes) {
        size_t want = o->bytes - done < FRAME_MAX ? (size_t)(o->bytes - done) : FRAME_MAX;
        size_t len = block_fill(&b, o, buf + 9, want);
        /* HEADERS (0x1) then CONTINUATION (0x9), never END_HEADERS. */
        frame_head(buf, len, first ? 0x1 : 0x9, 0, 1);
        first = false;
        for (size_t off = 0; off < 9 + len && !atomic_load(f->stop);) {
            size_t k = 9 + len - off < o->chunk ? 9 + len - off : o->chunk;
            if (send_all(fd, buf + off, k, f->stop) != 0) {
                f->closed++;
                return;
            }
            off += k;
            if (o->gap_ms)
                sleep_ms(o->gap_ms);
        }
        done += len;
        f->sent += len;
        if (done > f->max_accepted)
            f->max_accepted = done;
    }
    /* Everything sent: hold the block open, draining the server. */
    while (!atomic_load(f->stop)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) > 0) {
            uint8_t sink[4096];
            ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                f->closed++;
                return;
            }
        }
    }
}

static void *flood_main(void *arg)
{
    struct flooder *f = arg;
    while (!atomic_load(f->stop)) {
        int fd = dial(f->o);
        if (fd < 0) {
            sleep_ms(10);
            continue;
        }
        f->opened++;
        flood_once(f, fd);
        close(fd);
    }
    return NULL;
}

/* Reads one frame (payload up to cap bytes kept) within ms. Returns 0,
 * or -1 when the connection closed or timed out (*closed says which). */
static int read_frame(int fd, uint8_t *type, uint8_t *payload, size_t cap, size_t *len,
                      int ms, bool *closed)
{
    uint8_t head[9];
    size_t got = 0, want = 9, plen = 0;
    double until = now_ms() + ms;
    *closed = false;
    while (got < want) {
        int left = (int)(until - now_ms());
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -1;
        uint8_t tmp[16384];
        size_t room = want - got < sizeof tmp ? want - got : sizeof tmp;
        ssize_t r = recv(fd, tmp, room, 0);
        if (r <= 0) {
            *closed = true;
            return -1;
        }
        for (ssize_t i = 0; i < r; i++, got++) {
            if (got < 9)
                head[got] = tmp[i];
            else if (got - 9 < cap)
                payload[got - 9] = tmp[i];
        }
        if (got == 9 && want == 9) {
            plen = (size_t)head[0] << 16 | (size_t)head[1] << 8 | head[2];
            want = 9 + plen;
        }
    }
    *type = head[3];
    *len = plen < cap ? plen : cap;
    return 0;
}

static int settings_main(const struct opts *o)
{
    int fd = dial(o);
    uint8_t empty[9], p[1024], type;
    frame_head(empty, 0, 0x4, 0, 0);
    if (fd < 0 || write(fd, preface, sizeof preface - 1) < 0 || write(fd, empty, 9) < 0)
        return EXIT_LOCAL;
    size_t len;
    bool closed;
    while (read_frame(fd, &type, p, sizeof p, &len, 2000, &closed) == 0) {
        if (type != 0x4)
            continue;
        for (size_t i = 0; i + 6 <= len; i += 6)
            printf("setting %u=%u\n", (unsigned)(p[i] << 8 | p[i + 1]),
                   (unsigned)p[i + 2] << 24 | (unsigned)p[i + 3] << 16 |
                       (unsigned)p[i + 4] << 8 | p[i + 5]);
        close(fd);
        return 0;
    }
    close(fd);
    fprintf(stderr, "no SETTINGS from the server\n");
    return 1;
}

static int idle_main(const struct opts *o, bool with_preface, uint64_t timeout)
{
    int fd = dial(o);
    if (fd < 0)
        return EXIT_LOCAL;
    double t0 = now_ms();
    uint8_t empty[9], p[64], type;
    frame_head(empty, 0, 0x4, 0, 0);
    if (with_preface &&
        (write(fd, preface, sizeof preface - 1) < 0 || write(fd, empty, 9) < 0))
        return EXIT_LOCAL;
    for (;;) {
        int left = (int)(t0 + (double)timeout - now_ms());
        size_t len;
        bool closed;
        if (left <= 0)
            break;
        if (read_frame(fd, &type, p, sizeof p, &len, left, &closed) != 0 && !closed)
            break;
        if (closed || type == 0x7) {
            printf("closed after %.0f ms (%s)\n", now_ms() - t0, closed ? "EOF" : "GOAWAY");
            close(fd);
            return 0;
        }
    }
    printf("still open after %llu ms\n", (unsigned long long)timeout);
    close(fd);
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times k calls of method; returns the number that failed. */
static unsigned probe(struct rc_conn *c, const char *method, const ProtobufCMessage *m,
                      unsigned k, double *ms)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *req = malloc(len + 1);
    protobuf_c_message_pack(m, req);
    unsigned failed = 0;
    for (unsigned i = 0; i < k; i++) {
        struct rc_status st;
        uint8_t *resp = NULL;
        size_t rlen = 0;
        double t0 = now_ms();
        rc_unary(c, method, req, len, &resp, &rlen, &st);
        ms[i] = now_ms() - t0;
        if (st.code != GRPC_STATUS_OK) {
            failed++;
            fprintf(stderr, "%s: status %d: %s (after %.1f ms)\n", method, (int)st.code, st.msg,
                    ms[i]);
        }
        free(resp);
        sleep_ms(20);
    }
    free(req);
    return failed;
}

static void summary(const char *name, double *ms, unsigned k, double *median)
{
    printf("%s ms:", name);
    for (unsigned i = 0; i < k; i++)
        printf(" %.1f", ms[i]);
    qsort(ms, k, sizeof *ms, cmp_double);
    *median = ms[k / 2];
    printf("  median=%.1f max=%.1f\n", *median, ms[k - 1]);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    switch (*end) {
    case 'K': v <<= 10; end++; break;
    case 'M': v <<= 20; end++; break;
    default: break;
    }
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {"127.0.0.1", "8980", 4, 64u << 20, 64u << 20, 1u << 20, 0};
    const char *addr = "127.0.0.1:8980";
    uint64_t warmup = 1000, probes = 5, bound = 100, timeout = 5000, settings = 0, idle = 2;
    for (int i = 1; i < argc; i += 2) {
        uint64_t v = 0;
        if (i + 1 >= argc || (strcmp(argv[i], "--addr") != 0 && parse_u64(argv[i + 1], &v) != 0))
            goto usage;
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--conns")) o.conns = (unsigned)v;
        else if (!strcmp(argv[i], "--bytes")) o.bytes = v;
        else if (!strcmp(argv[i], "--header")) o.header = v;
        else if (!strcmp(argv[i], "--chunk")) o.chunk = (size_t)v;
        else if (!strcmp(argv[i], "--gap-ms")) o.gap_ms = (unsigned)v;
        else if (!strcmp(argv[i], "--warmup-ms")) warmup = v;
        else if (!strcmp(argv[i], "--probes")) probes = v;
        else if (!strcmp(argv[i], "--bound-ms")) bound = v;
        else if (!strcmp(argv[i], "--timeout-ms")) timeout = v;
        else if (!strcmp(argv[i], "--settings")) settings = v;
        else if (!strcmp(argv[i], "--idle")) idle = v;
        else goto usage;
    }
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof o.host || strlen(colon + 1) >= sizeof o.port ||
        o.conns == 0 || o.conns > 256 || o.chunk == 0 || o.header == 0 || probes == 0 ||
        probes > MAX_PROBES)
        goto usage;
    memcpy(o.host, addr, (size_t)(colon - addr));
    o.host[colon - addr] = '\0';
    snprintf(o.port, sizeof o.port, "%s", colon + 1);
    if (settings)
        return settings_main(&o);
    if (idle < 2)
        return idle_main(&o, idle == 1, timeout);

    grpc_init();
    struct rc_conn c;
    rc_connect(&c, addr, NULL, NULL, NULL, NULL, NULL);
    c.timeout_s = (double)timeout / 1000;
    Grpc__Health__V1__HealthCheckRequest hq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest cq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_CAPABILITIES_REQUEST__INIT;
    double first = 0;
    /* Connect the probe channel before the flood: the test measures
     * calls, not a connection set-up racing the flooders. */
    if (probe(&c, "/grpc.health.v1.Health/Check", &hq.base, 1, &first) != 0) {
        fprintf(stderr, "Health/Check fails before any flood\n");
        rc_close(&c);
        grpc_shutdown();
        return EXIT_LOCAL;
    }

    atomic_bool stop = false;
    struct flooder *fl = calloc(o.conns, sizeof *fl);
    for (unsigned i = 0; i < o.conns; i++) {
        fl[i].o = &o;
        fl[i].stop = &stop;
        pthread_create(&fl[i].thread, NULL, flood_main, &fl[i]);
    }
    sleep_ms((unsigned)warmup);
    double *hms = calloc(probes, sizeof *hms), *cms = calloc(probes, sizeof *cms);
    unsigned failed = probe(&c, "/grpc.health.v1.Health/Check", &hq.base, (unsigned)probes, hms);
    failed += probe(&c, "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
                    &cq.base, (unsigned)probes, cms);
    atomic_store(&stop, true);
    uint64_t sent = 0, most = 0;
    unsigned opened = 0, closed = 0;
    for (unsigned i = 0; i < o.conns; i++) {
        pthread_join(fl[i].thread, NULL);
        sent += fl[i].sent;
        most = fl[i].max_accepted > most ? fl[i].max_accepted : most;
        opened += fl[i].opened;
        closed += fl[i].closed;
    }
    double hmed, cmed;
    printf("flood: %u connections opened, %u closed by the server, %llu header bytes sent, "
           "at most %llu on one connection\n",
           opened, closed, (unsigned long long)sent, (unsigned long long)most);
    summary("health", hms, (unsigned)probes, &hmed);
    summary("capabilities", cms, (unsigned)probes, &cmed);
    int rc = failed == 0 && hmed <= (double)bound && cmed <= (double)bound ? 0 : 1;
    printf("%s: %u failed calls, medians %.1f / %.1f ms, bound %llu ms\n", rc ? "FAIL" : "ok",
           failed, hmed, cmed, (unsigned long long)bound);
    free(hms);
    free(cms);
    free(fl);
    rc_close(&c);
    grpc_shutdown();
    return rc;
usage:
    fprintf(stderr, "usage: bench_h2flood [--addr HOST:PORT] [--conns N] [--bytes SIZE] "
                    "[--header SIZE] [--chunk BYTES] [--gap-ms MS] [--warmup-ms MS] "
                    "[--probes K] [--bound-ms MS] [--timeout-ms MS] [--settings 1] "
                    "[--idle 0|1]\n");
    return EXIT_LOCAL;
}
