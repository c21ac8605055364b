/* The default RUN network: a private network namespace whose only way out
 * is pasta (Debian's passt package), a user-mode network stack that relays
 * the namespace's TCP, UDP and ICMP through ordinary sockets of the host.
 *
 * pasta is started so that the host's loopback stays out of reach: no
 * mapping of the gateway address to the host's loopback (--no-map-gw), no
 * forwarding of ports from the namespace to the host (-T none -U none) nor
 * from the host into the namespace (-t none -u none). Abstract unix
 * sockets belong to the network namespace, so the host's are out of reach
 * too. The only host loopback service a RUN may reach is the host's first
 * DNS resolver, UDP port 53, and only when the host's resolv.conf names
 * nothing but loopback resolvers (see cairn_netns_resolv_conf).
 *
 * This pasta relays whatever destination a frame names, 127.0.0.1
 * included, so the sandbox must keep the RUN from writing its own frames
 * or routes: no CAP_NET_RAW, no CAP_NET_ADMIN (sandbox.c drops both on
 * this network).
 *
 * Lifetime: cairn_netns_open starts pasta as a child of the calling
 * thread, with PR_SET_PDEATHSIG, so pasta dies with that thread;
 * cairn_netns_close stops and reaps it. Thread-safety: handles are
 * independent; the calling process may be multi-threaded (the children do
 * nothing but system calls before exec).
 */
#ifndef CAIRN_CLIENT_NETNS_H
#define CAIRN_CLIENT_NETNS_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

/* The address a RUN's resolv.conf names when pasta relays DNS to a host
 * loopback resolver: link-local, never a real resolver (podman picks the
 * same one). */
#define CAIRN_NETNS_DNS_FORWARD "169.254.1.1"

/* A host's resolv.conf larger than this is refused (CAIRN_E_TOOBIG). */
#define CAIRN_NETNS_MAX_RESOLV (64u << 10)

struct cairn_netns;

/* Creates a network namespace and starts pasta on it; returns once pasta
 * has configured the namespace (loopback up, the interface, addresses and
 * routes copied from the host's default-route interface), so a command
 * run in it right away has a working network. dns_forward: false, or
 * true to have pasta relay UDP port 53 of CAIRN_NETNS_DNS_FORWARD to the
 * host's first resolver. pasta is looked up in PATH (the default PATH
 * when unset). Returns 0, CAIRN_E_NOTFOUND when pasta is not installed
 * (the message names the package and the --network alternatives), or an
 * error saying what failed (pasta's own message when it exits early,
 * CAIRN_E_TIMEOUT after 30 s). *out is written only on success; the
 * handle is freed with cairn_netns_close. */
int cairn_netns_open(bool dns_forward, struct cairn_netns **out,
                     struct cairn_err *err);

/* The namespace, for setns(fd, CLONE_NEWNET) in a child. Close-on-exec,
 * owned by ns, valid until cairn_netns_close. */
int cairn_netns_fd(const struct cairn_netns *ns);

/* Stops pasta (SIGKILL: it holds no state worth a clean exit), reaps it
 * and closes the namespace (the kernel frees it with its last user).
 * Accepts NULL. */
void cairn_netns_close(struct cairn_netns *ns);

/* The resolv.conf for a RUN on this network, made from the host's
 * (host, len bytes, need not be NUL-terminated): every line is kept but
 * "nameserver" lines naming a loopback address (127.0.0.0/8, ::1), which
 * the namespace cannot reach. When the host names loopback resolvers
 * only, "nameserver CAIRN_NETNS_DNS_FORWARD" is appended and *forward set
 * true (pasta then relays DNS; Docker would use public resolvers
 * instead). Appends to out; *forward is written only on success. Returns
 * 0, CAIRN_E_TOOBIG past CAIRN_NETNS_MAX_RESOLV, CAIRN_E_NOMEM. */
int cairn_netns_resolv_conf(const char *host, size_t len, struct cairn_buf *out,
                            bool *forward);

#endif
