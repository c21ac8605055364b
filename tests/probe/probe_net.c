/* The network part of sandbox_probe: see probe_net.h. */
#include "probe_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROBE_NET_WAIT_MS 3000

socklen_t probe_net_abstract(const char *name, struct sockaddr_un *sun)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof sun->sun_path - 1)
        return 0;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path + 1, name, n); /* sun_path[0] == 0: abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

int probe_net_connect(int s, const struct sockaddr *sa, socklen_t len)
{
    int fl = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, fl | O_NONBLOCK);
    if (connect(s, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    struct pollfd pf = {s, POLLOUT, 0};
    if (poll(&pf, 1, PROBE_NET_WAIT_MS) != 1)
        return ETIMEDOUT;
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
    return e;
}

/* ADDR (IPv4 or IPv6) and PORT into *ss; returns its length or 0. */
static socklen_t net_addr(const char *host, const char *port,
                          struct sockaddr_storage *ss)
{
    char *end;
    long p = strtol(port, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return 0;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((unsigned short)p);
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)p);
        return sizeof *a6;
    }
    return 0;
}

static int net_listen(const struct sockaddr *sa, socklen_t len,
                      const char *reply)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(s, sa, len) != 0 || listen(s, 16) != 0) {
        perror("sandbox_probe: listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        ssize_t w = write(c, reply, strlen(reply));
        (void)w;
        close(c);
    }
}

static int net_connect(const struct sockaddr *sa, socklen_t len)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        printf("refused: socket: %s\n", strerror(errno));
        return 0;
    }
    int e = probe_net_connect(s, sa, len);
    if (e != 0) {
        printf("refused: %s\n", strerror(e));
        close(s);
        return 0;
    }
    char buf[128];
    struct pollfd pf = {s, POLLIN, 0};
    ssize_t n = poll(&pf, 1, PROBE_NET_WAIT_MS) == 1
                    ? read(s, buf, sizeof buf - 1)
                    : -1;
    close(s);
    if (n <= 0) {
        printf("refused: no answer\n");
        return 0;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    printf("reached: %s\n", buf);
    return 0;
}

/* Answers DNS queries for one A record; anything else gets no answer
 * records (NXDOMAIN for other names). */
static int net_dns(const char *addr, const char *name, const char *ip)
{
    struct sockaddr_storage ss;
    socklen_t len = net_addr(addr, "53", &ss);
    struct in_addr a;
    if (len == 0 || inet_pton(AF_INET, ip, &a) != 1)
        return 2;
    int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&ss, len) != 0) {
        perror("sandbox_probe: dns");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        unsigned char q[512], r[600];
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n =
            recvfrom(s, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
        if (n < 17)
            continue;
        /* The question's name, dotted. */
        char qname[256];
        size_t i = 12, o = 0;
        while (i < (size_t)n && q[i] != 0 && q[i] < 64 &&
               i + 1 + q[i] < (size_t)n && o + q[i] + 1 < sizeof qname) {
            if (o > 0)
                qname[o++] = '.';
            memcpy(qname + o, q + i + 1, q[i]);
            o += q[i];
            i += 1 + q[i];
        }
        if (i + 5 > (size_t)n || q[i] != 0)
            continue;
        qname[o] = '\0';
        size_t qend = i + 5; /* the 0, QTYPE, QCLASS */
        int qtype = q[i + 1] << 8 | q[i + 2];
        int known = strcasecmp(qname, name) == 0;
        int answer = known && qtype == 1;
        memcpy(r, q, qend);
        r[2] = 0x81;                /* response, recursion desired */
        r[3] = known ? 0x80 : 0x83; /* recursion available; NXDOMAIN */
        r[4] = 0, r[5] = 1;         /* one question */
        r[6] = 0, r[7] = answer ? 1 : 0;
        memset(r + 8, 0, 4);
        size_t rl = qend;
        if (answer) {
            static const unsigned char rr[] = {0xc0, 12, 0, 1,  0, 1,
                                               0,    0,  0, 60, 0, 4};
            memcpy(r + rl, rr, sizeof rr);
            memcpy(r + rl + sizeof rr, &a, 4);
            rl += sizeof rr + 4;
        }
        sendto(s, r, rl, 0, (struct sockaddr *)&from, flen);
    }
}

int probe_net_tool(int argc, char **argv)
{
    struct sockaddr_storage ss;
    struct sockaddr_un un;
    socklen_t len;
    const char *cmd = argc > 1 ? argv[1] : "";
    if (strcmp(cmd, "listen-tcp") == 0)
        return argc == 4 && (len = net_addr(argv[2], argv[3], &ss)) != 0
                   ? net_listen((struct sockaddr *)&ss, len, "secret-tcp\n")
                   : 2;
    if (strcmp(cmd, "connect-tcp") == 0)
        return argc == 4 && (len = net_addr(argv[2], argv[3], &ss)) != 0
                   ? net_connect((struct sockaddr *)&ss, len)
                   : 2;
    if (strcmp(cmd, "listen-abstract") == 0)
        return argc == 3 && (len = probe_net_abstract(argv[2], &un)) != 0
                   ? net_listen((struct sockaddr *)&un, len,
                                "secret-abstract\n")
                   : 2;
    if (strcmp(cmd, "connect-abstract") == 0)
        return argc == 3 && (len = probe_net_abstract(argv[2], &un)) != 0
                   ? net_connect((struct sockaddr *)&un, len)
                   : 2;
    if (strcmp(cmd, "listen-dns") == 0)
        return argc == 5 ? net_dns(argv[2], argv[3], argv[4]) : 2;
    if (strcmp(cmd, "packet") == 0) {
        if (argc != 2)
            return 2;
        int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
        printf("packet: %s\n", s >= 0 ? "open" : strerror(errno));
        if (s >= 0)
            close(s);
        return 0;
    }
    return -1;
}
