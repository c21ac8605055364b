/* What the children's side of the RUN sandbox (client/sandbox/sandbox_child.c)
 * offers the caller's side (client/sandbox/sandbox.c): the helper's entry,
 * the tables the children walk (their indexes come back in the messages),
 * and the few checks both sides make the same way. Private to the
 * sandbox. */
#ifndef CAIRN_CLIENT_SANDBOX_SANDBOX_CHILD_H
#define CAIRN_CLIENT_SANDBOX_SANDBOX_CHILD_H

#include "client/sandbox/sandbox_state.h"

#include <stddef.h>
#include <stdint.h>

/* The mount points, by MP_* (parents first). */
extern const struct sbx_mountpoint sbx_mountpoints[MP_COUNT];

/* The device names under /dev, by SRC_* up to SRC_NDEV. */
extern const char *const sbx_dev_names[SRC_NDEV];

/* Docker's /proc guards (see struct sbx_guard). */
extern const struct sbx_guard sbx_proc_guard[];
extern const size_t sbx_nproc_guard;
#define SBX_NPROC_GUARD sbx_nproc_guard

/* C: namespaces, the init, and its exit status. */
_Noreturn void sbx_helper(struct sbx_prep *p);

/* mkdir -p with 0755 directories owned by root (we are still root), in
 * the new root. Existing symlinks on the way are followed by the kernel;
 * a dangling one gets the directory it names made, as Docker's WORKDIR
 * does (the path goes on from the link's target, up to 40 links). */
int sbx_mkdir_p(const char *path);

/* Parses a decimal id (no sign, no spaces, below 2^32-1). */
int sbx_parse_id(const char *s, size_t n, uint32_t *out);

/* True when the mount target t is cwd or one of its parents: the run
 * creates cwd in the image when it is missing (Docker's WORKDIR rule), so
 * such a target is made for real, not on the stub, and stays. */
int sbx_target_holds_cwd(const char *t, const char *cwd);

#endif
