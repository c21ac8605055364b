/* The RUN sandbox: a command in new mount, PID, UTS and IPC namespaces (and
 * a network namespace unless it runs on the host's: enum
 * cairn_run_network), on an
 * overlayfs root made of read-only lower directories and a fresh upper
 * directory, with /proc (tunables read-only, host leaks masked, as
 * Docker's default), a minimal /dev (null zero full random urandom tty,
 * pts, shm), /etc/resolv.conf and /etc/hosts from the host (bind mounts;
 * the mount points the sandbox had to create are reported so the layer can
 * leave them out), the environment, working directory (created if
 * missing) and user given. Device nodes on the root and in /dev other
 * than those cannot be opened (nodev). The command runs in a session of
 * its own with no controlling terminal, and none of its descriptors is
 * the caller's (stdin /dev/null or a pipe, stdout and stderr a pipe).
 *
 * Needs root (or CAP_SYS_ADMIN). Thread-safety: runs are independent.
 */
#ifndef CAIRN_CLIENT_SANDBOX_H
#define CAIRN_CLIENT_SANDBOX_H

#include "client/sandbox/sandbox_spec.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The network of a RUN. */
enum cairn_run_network {
    /* A private network namespace whose only way out is pasta, without
     * the host's loopback (client/sandbox/netns.h); generated /etc/hosts, and
     * /etc/resolv.conf from the host's without loopback resolvers. The
     * command gets no CAP_NET_RAW (this pasta would relay frames it
     * writes to the host's loopback). Fails when pasta is missing. */
    CAIRN_RUN_NET_DEFAULT = 0,
    /* The host's network namespace and /etc/hosts, /etc/resolv.conf. */
    CAIRN_RUN_NET_HOST,
    /* A private network namespace with only loopback, up. */
    CAIRN_RUN_NET_NONE,
};

struct cairn_run_spec {
    const char *const *lowerdirs; /* top-most first; may be empty */
    size_t nlowerdirs;
    const char *upperdir; /* empty directory: receives the changes */
    const char *workdir;  /* empty directory on the same fs as upperdir
                             (overlayfs work dir) */
    const char *const *argv; /* argv[0] resolved through PATH in env */
    size_t argc;
    const char *const *env; /* "K=V" */
    size_t nenv;
    const char *cwd;  /* absolute; created (0755, root) when missing */
    const char *user; /* "", "name", "uid", "name:group", "uid:gid";
                         resolved through the root's /etc/passwd and
                         /etc/group; "" is root */
    enum cairn_run_network network;
    const char *hostname; /* NULL: "cairn" */
    const void *stdin_data; /* fed to the command's stdin (heredoc), or
                               NULL for /dev/null */
    size_t stdin_len;
    int out_fd; /* the command's stdout and stderr are copied here (through
                   a pipe: the command never holds out_fd itself) */
    const struct cairn_run_mount *mounts; /* at most CAIRN_RUN_MAX_MOUNTS */
    size_t nmounts;
};

/* Paths (relative to the root, no leading "/", parents before children:
 * "proc", "dev", "etc", "etc/hosts", "etc/resolv.conf") of the mount points
 * the image did not have and the sandbox provided only for the run. None
 * of them is left in upperdir after the run (a directory such as "etc"
 * that the command wrote into is a real change: it stays in upperdir and
 * is not listed). NULL-terminated, owned by the result; the layer writer
 * may pass it as its skip list. */
struct cairn_run_result {
    int exit_code;   /* the command's status; 128+N when killed by N */
    char **created;  /* free with cairn_run_result_clear */
};

/* Runs the command and waits for it. Returns 0 when the command ran (any
 * exit code, see result->exit_code), or an error when the sandbox could
 * not be set up (err says which step: mount, user lookup, exec ...);
 * CAIRN_E_NOTFOUND when the user, group or command does not exist,
 * CAIRN_E_TOOBIG past 499 lower directories or CAIRN_RUN_MAX_MOUNTS mounts,
 * CAIRN_E_INVAL for a relative cwd (NULL is "/") or a mount target that
 * is not absolute and clean. The environment is exactly spec->env (no HOME is
 * added); without PATH in it, argv[0] is looked up in BuildKit's default
 * PATH. result is written only on success. The calling thread must not
 * exit during the call (the sandbox is killed when it does:
 * PR_SET_PDEATHSIG). stdin_data is borrowed for the call; SIGPIPE is
 * blocked in the calling thread while it is fed. Thread-safe. */
int cairn_sandbox_run(const struct cairn_run_spec *spec,
                      struct cairn_run_result *result, struct cairn_err *err);

void cairn_run_result_clear(struct cairn_run_result *result);

/* Kills (SIGKILL) every sandbox this process is running; each pending
 * cairn_sandbox_run then returns with exit_code 137. Async-signal-safe:
 * meant for the build's SIGINT/SIGTERM handler. (A terminal's Ctrl-C also
 * reaches each sandbox's helper process through the foreground process
 * group; the command, in a session of its own, dies with the helper.) */
void cairn_sandbox_kill_all(void);

/* Mounts a read-only overlay of lowerdirs (top-most first) at target (one
 * lower: a read-only bind mount; none: an empty read-only tmpfs), in the
 * caller's mount namespace, for reading a stage's files (COPY --from).
 * target is an existing directory. Undo with cairn_sandbox_unmount, which
 * detaches (MNT_DETACH). Needs root. Thread-safe. */
int cairn_sandbox_mount_ro(const char *const *lowerdirs, size_t n,
                           const char *target, struct cairn_err *err);
int cairn_sandbox_unmount(const char *target, struct cairn_err *err);

#endif
