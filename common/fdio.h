/* Whole-buffer writes on file descriptors. Thread-safe. */
#ifndef CAIRN_COMMON_FDIO_H
#define CAIRN_COMMON_FDIO_H

#include <stddef.h>

/* Writes all n bytes of p to fd, retrying short writes and EINTR.
 * Returns 0 or a negative errno (ENOSPC reaches the caller as -ENOSPC). */
int cairn_write_all(int fd, const void *p, size_t n);

#endif
