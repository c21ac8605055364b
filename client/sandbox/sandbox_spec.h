/* The part of a RUN's spec that both sides of the sandbox read: the
 * RUN --mount records. The caller's side (client/sandbox/sandbox.c) checks
 * and prepares them; the children (client/sandbox/sandbox_child.c) mount
 * them. Public through client/sandbox/sandbox.h, which includes it. */
#ifndef CAIRN_CLIENT_SANDBOX_SANDBOX_SPEC_H
#define CAIRN_CLIENT_SANDBOX_SANDBOX_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RUN --mount as the sandbox sees it: something mounted at target (an
 * absolute, clean path in the root) after the root is set up, parents
 * first (callers sort by target). A target the image lacks is made on the
 * stub lower directory, so it never reaches upperdir; where the image
 * hides it (a whiteout, an opaque directory) it is made in the merged
 * tree and removed from upperdir after the run when still empty. */
enum cairn_run_mount_kind {
    CAIRN_RUN_MOUNT_BIND,  /* source (a host directory or file) */
    CAIRN_RUN_MOUNT_TMPFS, /* an empty tmpfs, size bytes (0: default) */
    CAIRN_RUN_MOUNT_DATA,  /* a read-only file holding data, on a tmpfs
                              private to the run (secrets: never on disk) */
};

#define CAIRN_RUN_MAX_MOUNTS 24

struct cairn_run_mount {
    enum cairn_run_mount_kind kind;
    const char *target;
    const char *source; /* BIND */
    bool readonly;      /* BIND (DATA is always read-only) */
    bool file;          /* the target is a file (BIND of a file, DATA) */
    uint64_t size;      /* TMPFS */
    const void *data;   /* DATA, borrowed for the call */
    size_t len;
    uint32_t mode, uid, gid; /* DATA: the file's mode and owner */
};

#endif
