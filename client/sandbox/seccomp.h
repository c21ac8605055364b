/* The seccomp filter of every RUN step: Docker's default profile (moby's
 * profiles/seccomp/default.json) as it applies to a container that holds
 * Docker's default capability set, which is the set the sandbox keeps.
 * System calls the profile does not list fail with EPERM: clone with a
 * namespace flag, unshare, setns, mount and the new mount API, the
 * keyrings (keyctl, add_key, request_key), bpf, perf_event_open, module
 * and kexec loading, and the like. clone3 fails with ENOSYS, so that libc
 * falls back to clone, whose flags a filter can see, and so does every
 * call newer than the newest the profile names (runc's rule, so libc's
 * fallbacks work as under Docker). The filter is for the native
 * architecture only: a system call made through another ABI (i386's
 * int 0x80 or x32 on x86_64) kills the process. docs/security.md compares
 * it with Docker's.
 *
 * The filter is built once per process with libseccomp and kept as a
 * classic BPF program, so that a child forked from a multi-threaded
 * process can install it with one system call and no allocation.
 */
#ifndef CAIRN_CLIENT_SECCOMP_H
#define CAIRN_CLIENT_SECCOMP_H

#include "common/error.h"

struct sock_fprog;

/* Builds the filter on the first call and returns it. *prog is owned by
 * this module, never changes once returned, and stays valid until the
 * process exits; it is written only on success. Returns 0, or a negative
 * errno / CAIRN_E_NOMEM with err saying which libseccomp step failed (the
 * next call tries again). Thread-safe. */
int cairn_seccomp_filter_get(const struct sock_fprog **prog,
                             struct cairn_err *err);

/* Installs prog (from cairn_seccomp_filter_get) on the calling thread; it
 * is inherited by every child and kept across execve. One system call, no
 * allocation and no locks: async-signal-safe, meant for a child between
 * fork and exec. The caller must hold CAP_SYS_ADMIN in its effective set
 * (the kernel's condition for a filter without no_new_privs), so it runs
 * before capabilities are dropped. Returns 0 or a negative errno. */
int cairn_seccomp_filter_install(const struct sock_fprog *prog);

#endif
