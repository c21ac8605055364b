/* The types the two sides of the RUN sandbox share and nobody else sees:
 * the caps, the mount points and host files, the setup steps, the message
 * records and the prepared state (struct sbx_prep). Types only: the
 * tables and functions are client/sandbox/sandbox_child.h's.
 * client/sandbox/sandbox.c is the caller's side (P: prepare, fork, relay,
 * report); client/sandbox/sandbox_child.c runs in the children (C, the
 * helper, and G, the init; no allocation, no locks). Private to those
 * two files. */
#ifndef CAIRN_CLIENT_SANDBOX_SANDBOX_STATE_H
#define CAIRN_CLIENT_SANDBOX_SANDBOX_STATE_H

#include "client/sandbox/sandbox_spec.h"

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SBX_MAX_LOWERS 499
#define SBX_MAX_GROUPS 256
/* /etc/passwd and /etc/group bigger than this are refused (EFBIG). */
#define SBX_MAX_DBFILE (64u << 20)
#define SBX_DEFAULT_PATH                                                       \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* The stub entries' mtime: no layer carries this (tar times are whole
 * seconds unless PAX says otherwise, and 1970 is unlikely). */
#define SBX_MARK_SEC 1
#define SBX_MARK_NSEC 424242424L
/* Exit status of C or G when setup failed (the message says why). */
#define SBX_EXIT_SETUP 125

/* Mount points, parents first. */
enum { MP_PROC, MP_DEV, MP_ETC, MP_HOSTS, MP_RESOLV, MP_COUNT };
struct sbx_mountpoint {
    const char *path; /* relative to the root */
    int dir;
};

/* Host files cloned into the sandbox: the devices, then /etc files. */
enum {
    SRC_NULL,
    SRC_ZERO,
    SRC_FULL,
    SRC_RANDOM,
    SRC_URANDOM,
    SRC_TTY,
    SRC_NDEV,
    SRC_HOSTS = SRC_NDEV,
    SRC_RESOLV,
    SRC_COUNT
};

/* /proc entries a RUN must not write or read, Docker's default list:
 * the kernel's tunables (core_pattern, whose "|program" the host kernel
 * runs as root on a crash) and triggers become read-only; files and
 * directories that leak host state (kernel memory, keys, timers) are
 * masked, a file by /dev/null bound over it, a directory by an empty
 * read-only tmpfs. Entries this kernel lacks are skipped. /sys is not
 * mounted at all (the image's /sys stays as it is, usually empty). */
struct sbx_guard {
    const char *path;
    int mask; /* 1: masked, 0: read-only */
};

/* Setup steps, for the messages. */
#define SBX_STEPS(X)                                                           \
    X(SBX_STEP_FDS, "prepare file descriptors")                                \
    X(SBX_STEP_PDEATHSIG, "set the parent-death signal")                       \
    X(SBX_STEP_SETSID, "start a new session")                                  \
    X(SBX_STEP_NETNS, "join the RUN network namespace")                        \
    X(SBX_STEP_UNSHARE, "create namespaces (unshare)")                         \
    X(SBX_STEP_FORK, "fork the sandbox init")                                  \
    X(SBX_STEP_PRIVATE, "make the mount tree private")                         \
    X(SBX_STEP_HOSTNAME, "set the hostname")                                   \
    X(SBX_STEP_LOOPBACK, "bring up the loopback interface")                    \
    X(SBX_STEP_RUNDIR, "enter the run directory")                              \
    X(SBX_STEP_OVERLAY, "mount the overlay root")                              \
    X(SBX_STEP_CLONE, "clone host file")                                       \
    X(SBX_STEP_PIVOT, "pivot_root into the overlay")                           \
    X(SBX_STEP_MOUNTPOINT, "create mount point")                               \
    X(SBX_STEP_PROC, "mount /proc")                                            \
    X(SBX_STEP_DEV, "mount a tmpfs on /dev")                                   \
    X(SBX_STEP_DEVNODE, "bind-mount device")                                   \
    X(SBX_STEP_DEVPTS, "mount /dev/pts")                                       \
    X(SBX_STEP_SHM, "mount /dev/shm")                                          \
    X(SBX_STEP_DEVLINK, "create the /dev symlinks")                            \
    X(SBX_STEP_PROCMASK, "protect")                                            \
    X(SBX_STEP_BIND, "bind-mount")                                             \
    X(SBX_STEP_RUNMOUNT, "RUN --mount at")                                     \
    X(SBX_STEP_STDIO, "set up stdin, stdout and stderr")                       \
    X(SBX_STEP_PASSWD, "read /etc/passwd")                                     \
    X(SBX_STEP_GROUP, "read /etc/group")                                       \
    X(SBX_STEP_USER_NOTFOUND, "look up the user")                              \
    X(SBX_STEP_GROUP_NOTFOUND, "look up the group")                            \
    X(SBX_STEP_CWD, "create the working directory")                            \
    X(SBX_STEP_CHDIR, "enter the working directory")                           \
    X(SBX_STEP_SECCOMP, "install the seccomp filter")                          \
    X(SBX_STEP_CAPS, "drop capabilities")                                      \
    X(SBX_STEP_SETGROUPS, "set the supplementary groups")                      \
    X(SBX_STEP_SETGID, "set the group id")                                     \
    X(SBX_STEP_SETUID, "set the user id")                                      \
    X(SBX_STEP_EXEC_NOTFOUND, "look up the command")                           \
    X(SBX_STEP_EXEC, "exec the command")

enum sbx_step {
#define SBX_STEP_ENUM(name, text) name,
    SBX_STEPS(SBX_STEP_ENUM)
#undef SBX_STEP_ENUM
        SBX_STEP_COUNT
};

/* Records on the message pipe (each well under PIPE_BUF, so atomic). */
enum { SBX_MSG_ERROR = 1, SBX_MSG_MOUNTPOINTS = 2 };
struct sbx_msg {
    int32_t kind;
    int32_t step; /* ERROR: enum sbx_step */
    int32_t err;  /* ERROR: errno (0 for the *_NOTFOUND steps) */
    int32_t arg;  /* ERROR: index into the step's table, or -1;
                     MOUNTPOINTS: bits of the mount points created */
    int32_t arg2; /* MOUNTPOINTS: bits of those made in the merged tree */
    int32_t made; /* MOUNTPOINTS: bits of the spec's mounts whose target
                     was made in the merged tree */
};

/* Everything C and G need, prepared by the caller before forking. */
struct sbx_prep {
    char *rundir;
    char *opts;                 /* overlay mount options */
    const char *src[SRC_COUNT]; /* host files to clone */
    char *own_hosts;            /* rundir files when generated */
    char *own_resolv;
    const char **argv; /* NULL-terminated; strings borrowed */
    const char **envp;
    const char *path; /* PATH for the command lookup */
    const char *cwd;
    const char *hostname;
    char *user_copy;         /* spec->user, split at ':' */
    const char *user;        /* NULL: "" (root by uid 0) */
    const char *group;       /* NULL: none given */
    int user_num, group_num; /* the part is numeric */
    uint32_t uid, gid;
    int network_none;
    int netns_fd;     /* the default network's namespace, or -1 */
    bool dns_forward; /* the default network: pasta relays DNS */
    pid_t parent_pid;
    int msg_fd, stdin_fd, out_fd;
    const struct sock_fprog *seccomp;     /* the RUN filter, process-wide */
    const struct cairn_run_mount *mounts; /* spec->mounts */
    size_t nmounts;
    char *mnt_path[CAIRN_RUN_MAX_MOUNTS]; /* DATA: "sec/N" in rundir */
    char *mnt_opts[CAIRN_RUN_MAX_MOUNTS]; /* TMPFS: mount options */
};

#endif
