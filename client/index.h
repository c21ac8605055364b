/* The client's LMDB index under $CAIRN_ROOT/index: the LMDB part of the
 * local store (client/store.c), one environment holding the context stat
 * cache ("statcache", opened by cachekey/statcache.c) and the store's
 * "keys", "tags" and "images" databases (DESIGN.md, "Storage", client
 * part). `cairn keys` opens only this, for the stat cache; everything
 * else goes through cairn_store_open. A process must open one store root
 * at most once at a time (an LMDB rule).
 *
 * Thread-safety: the environment is opened with MDB_NOTLS, so read
 * transactions may be used from any thread; see each user's module.
 */
#ifndef CAIRN_CLIENT_INDEX_H
#define CAIRN_CLIENT_INDEX_H

#include "common/error.h"

#include <lmdb.h>
#include <stddef.h>

struct cairn_index;

/* Writes the store root into buf: $CAIRN_ROOT if set; else /var/lib/cairn
 * for root; else $XDG_DATA_HOME/cairn (default ~/.local/share/cairn).
 * Returns 0 or CAIRN_E_TOOBIG. */
int cairn_root_path(char *buf, size_t len);

/* Opens (creating directories as needed) the index of the store at root.
 * Returns 0, negative errno or CAIRN_E_DB; err says what. */
int cairn_index_open(const char *root, struct cairn_index **out,
                     struct cairn_err *err);

/* Flushes every committed transaction to disk. Commits flush their data
 * but not the meta page that makes them current (MDB_NOMETASYNC), so a
 * power loss may undo the newest ones: call this before acting on a
 * commit in a way a power loss must not reorder (prune deletes files
 * after its commit). cairn_index_close does it too when anything was
 * committed. Returns 0, negative errno or CAIRN_E_DB. */
int cairn_index_sync(struct cairn_index *idx);

/* The LMDB environment, borrowed until cairn_index_close. */
MDB_env *cairn_index_env(struct cairn_index *idx);

/* Syncs (see cairn_index_sync) if any transaction was committed since
 * open, then closes the index. Accepts NULL. */
void cairn_index_close(struct cairn_index *idx);

#endif
