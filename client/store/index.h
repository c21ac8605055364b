/* The client's LMDB index under $CAIRN_ROOT/index: the LMDB part of the
 * local store (client/store/store_records.c), one environment holding the
 * context stat cache ("statcache", opened by cachekey/statcache.c) and
 * the store's "keys", "tags" and "images" databases (DESIGN.md, "Storage", client
 * part). `cairn keys` opens only this, for the stat cache; everything
 * else goes through cairn_store_open. A process must open one store root
 * at most once at a time (an LMDB rule).
 *
 * Thread-safety: the environment is opened with MDB_NOTLS, so read
 * transactions may be used from any thread; see each user's module.
 *
 * The map: it starts at 64 MiB (or the data's size) and doubles when a
 * write finds it full (cairn_index_grow). LMDB may remap only while no
 * transaction of the process is active, so transactions are begun and
 * ended through cairn_index_txn_* (which hold a shared lock that the
 * remap takes exclusively). The stat cache, which begins its own
 * transactions, holds the same lock around each through its guard hook
 * (cairn_index_guard_enter/_leave); its pooled read transactions stay
 * open but idle (no cursor, no value held) across a remap, which LMDB 0.9
 * tolerates (a read txn keeps page numbers, not addresses).
 */
#ifndef CAIRN_CLIENT_INDEX_H
#define CAIRN_CLIENT_INDEX_H

#include "common/error.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>

struct cairn_index;

/* Writes the store root into buf: $CAIRN_ROOT if set; else /var/lib/cairn
 * for root; else $XDG_DATA_HOME/cairn (default ~/.local/share/cairn).
 * A relative path is taken from the current directory and written
 * absolute. Returns 0 or CAIRN_E_TOOBIG (also when the current directory
 * cannot be read). */
int cairn_root_path(char *buf, size_t len);

/* Opens (creating directories as needed, mode 0700) the index of the
 * store at root. Returns 0, negative errno (-ENOMEM when the map does not
 * fit in the address space) or CAIRN_E_DB; err says what. */
int cairn_index_open(const char *root, struct cairn_index **out,
                     struct cairn_err *err);

/* Flushes every committed transaction to disk. Commits flush their data
 * but not the meta page that makes them current (MDB_NOMETASYNC), so a
 * power loss may undo the newest ones: call this before acting on a
 * commit in a way a power loss must not reorder (prune deletes files
 * after its commit). cairn_index_close does it too when anything was
 * committed. Returns 0, negative errno or CAIRN_E_DB. */
int cairn_index_sync(struct cairn_index *idx);

/* True when a transaction was committed since open (by this process or
 * another) and no cairn_index_sync has made the last one durable since.
 * Thread-safe. */
bool cairn_index_unsynced(struct cairn_index *idx);

/* Begins a transaction (mdb_txn_begin's flags) holding the map's shared
 * lock until cairn_index_txn_commit or _abort ends it; adopts a map grown
 * by another process (MDB_MAP_RESIZED). A thread holding one must not
 * call cairn_index_grow. Returns 0 or an LMDB code (the caller translates
 * it), *txn written only on success. Thread-safe. */
int cairn_index_txn_begin(struct cairn_index *idx, unsigned flags,
                          MDB_txn **txn);

/* mdb_txn_commit, then releases the shared lock. Returns an LMDB code. */
int cairn_index_txn_commit(struct cairn_index *idx, MDB_txn *txn);

/* mdb_txn_abort, then releases the shared lock. */
void cairn_index_txn_abort(struct cairn_index *idx, MDB_txn *txn);

/* Doubles the map, waiting until no transaction begun through
 * cairn_index_txn_begin is active; call it after aborting a write that
 * failed with MDB_MAP_FULL, then run the write again. Checks first that
 * the address space has room, so a refusal leaves the index usable.
 * Returns 0, -ENOMEM (out of address space), CAIRN_E_FULL (at the 1 TiB
 * cap) or CAIRN_E_DB; err (may be NULL) says what. Thread-safe. */
int cairn_index_grow(struct cairn_index *idx, struct cairn_err *err);

/* Take and release the map's shared lock around a transaction begun
 * outside this module (the stat cache's guard hook). May nest in the same
 * thread (the lock prefers readers). Thread-safe. */
void cairn_index_guard_enter(struct cairn_index *idx);
void cairn_index_guard_leave(struct cairn_index *idx);

/* The current map size in bytes (0 if unknown). */
size_t cairn_index_mapsize(struct cairn_index *idx);

/* The LMDB environment, borrowed until cairn_index_close. */
MDB_env *cairn_index_env(struct cairn_index *idx);

/* Syncs (see cairn_index_sync) if cairn_index_unsynced, then closes the
 * index. Accepts NULL. */
void cairn_index_close(struct cairn_index *idx);

#endif
