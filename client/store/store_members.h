/* The member table of the local store (client/store/store_members.c):
 * where gzip members this process deflated can be found again, so a
 * layer whose tar is mostly unchanged reuses them instead of deflating
 * (docs/build.md "Compression", docs/store.md "members").
 *
 * Keys are the member keys of client/store/layer_pgzip.h (SHA-256 of the
 * codec tag and the member's uncompressed bytes); each names a blob in
 * blobs/sha256, an offset and a size. Only layers this process wrote are
 * recorded, never blobs fetched from a shared cache or loaded
 * (docs/security.md), and only once the blob is in the store. An entry
 * may outlive its blob's bytes being what it says (a blob deleted by hand):
 * the layer writer checks every candidate before use, so a stale entry
 * costs a deflate, never a wrong byte. Thread-safe like the store. */
#ifndef CAIRN_CLIENT_STORE_STORE_MEMBERS_H
#define CAIRN_CLIENT_STORE_STORE_MEMBERS_H

#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

/* Records the n members of the blob digest (already in the store), in
 * one write transaction; a key already there now names this blob.
 * Returns 0 or the store's error (err says which). */
int cairn_store_members_put(struct cairn_store *st, const char *digest,
                            const struct cairn_layer_member *m, size_t n,
                            struct cairn_err *err);

/* The lookup of struct cairn_layer_reuse with arg = the store: on a hit
 * writes the blob's path (cap bytes at most), the member's offset and
 * size and returns 0; CAIRN_E_NOTFOUND for no entry, another code for a
 * record that cannot be read or a path that does not fit. Safe from
 * several threads at once (a read transaction each). */
int cairn_store_members_find(void *st, const uint8_t key[32], char *path,
                             size_t cap, uint64_t *offset, uint32_t *size);

#endif
