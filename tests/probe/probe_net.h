/* The network part of sandbox_probe (tests/probe/sandbox_probe.c):
 * socket addresses, a bounded connect, and the network tools that
 * tests/integration/test_build_network.sh runs on the host and inside a
 * RUN step. One static binary serves both tests. */
#ifndef CAIRN_TESTS_PROBE_NET_H
#define CAIRN_TESTS_PROBE_NET_H

#include <sys/socket.h>
#include <sys/un.h>

/* The abstract unix address @name in *sun; returns its length, or 0 when
 * name is empty or does not fit. */
socklen_t probe_net_abstract(const char *name, struct sockaddr_un *sun);

/* Connects s to sa, waiting at most 3 seconds (a filtered address would
 * hang); s is left non-blocking. Returns 0 or the errno of the failure
 * (ETIMEDOUT when the wait ran out). */
int probe_net_connect(int s, const struct sockaddr *sa, socklen_t len);

/* Runs the network tool argv[1] with its arguments:
 *
 *   listen-tcp ADDR PORT     answer every connection with "secret-tcp\n"
 *                            (forever)
 *   listen-abstract NAME     the same on the abstract unix socket @NAME
 *                            ("secret-abstract\n")
 *   connect-tcp ADDR PORT    print "reached: <first line>" or
 *                            "refused: <reason>"
 *   connect-abstract NAME    the same for @NAME
 *   listen-dns ADDR NAME IP  a DNS server on UDP ADDR:53 that knows one
 *                            name: NAME has the IPv4 address IP (forever)
 *   packet                   print "packet: open" when an AF_PACKET raw
 *                            socket opens, else "packet: <reason>"
 *
 * The listeners print "listening" once they accept connections. Returns
 * the exit status (0, 1 when a listener cannot start, 2 for bad
 * arguments), or -1 when argv[1] names no tool of these. */
int probe_net_tool(int argc, char **argv);

#endif
