/* The context stat cache: (path, dev, inode, size, mtime_ns, ctime_ns) ->
 * content sha256, kept in an LMDB database so that re-hashing an unchanged
 * context reads no file contents. A file is re-read whenever any of those
 * stat fields differ. Directories get the same treatment for their
 * listing (the names in them), so an unchanged directory is not read
 * either; its entries are still stat'ed one by one.
 *
 * The LMDB environment belongs to the caller (the client's store opens one
 * per $CAIRN_ROOT); the cache uses one named database, "statcache", in it.
 * The environment must be opened with MDB_NOTLS and room for the named
 * database (mdb_env_set_maxdbs).
 *
 * Thread-safety: lookups may be called from several threads at once;
 * updates are queued in memory (thread-safe) and written in one write
 * transaction by ck_statcache_flush.
 */
#ifndef CAIRN_CACHEKEY_STATCACHE_H
#define CAIRN_CACHEKEY_STATCACHE_H

#include "cachekey/digest.h"
#include "common/error.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct ck_statcache;

/* Opens the "statcache" database in env, which is borrowed and must
 * outlive the cache. A missing database is not an error: lookups miss
 * until the first flush creates it (so opening writes nothing). Returns 0
 * or CAIRN_E_DB. */
int ck_statcache_open(MDB_env *env, struct ck_statcache **out,
                      struct cairn_err *err);

/* Flushes pending updates, then frees sc. Accepts NULL. */
void ck_statcache_close(struct ck_statcache *sc);

/* Looks up abspath; true and digest filled when an entry exists whose
 * dev, inode, size, mtime_ns and ctime_ns all equal st's. */
bool ck_statcache_lookup(struct ck_statcache *sc, const char *abspath,
                         const struct stat *st, uint8_t digest[CK_SHA256_LEN]);

/* Queues an entry for abspath. Returns 0 or CAIRN_E_NOMEM. */
int ck_statcache_put(struct ck_statcache *sc, const char *abspath,
                     const struct stat *st,
                     const uint8_t digest[CK_SHA256_LEN]);

#define CK_STATCACHE_DIR_MAX (64u << 10) /* largest listing kept, bytes */

/* Looks up the listing of directory abspath: true, with the listing copied
 * to buf[0..*len), when an entry exists whose dev, inode, size, mtime_ns
 * and ctime_ns all equal st's and whose listing fits in cap bytes. The
 * listing's bytes are the caller's own format; the cache does not parse
 * them. buf and *len are written only on a hit. Thread-safe. */
bool ck_statcache_dir_lookup(struct ck_statcache *sc, const char *abspath,
                             const struct stat *st, void *buf, size_t cap,
                             size_t *len);

/* Queues the listing list[0..len) of directory abspath, read after st was
 * taken (so that a change during the read moves the directory's ctime past
 * the recorded one). Listings longer than CK_STATCACHE_DIR_MAX are not
 * kept (returns 0). The bytes are copied. Returns 0 or CAIRN_E_NOMEM. */
int ck_statcache_dir_put(struct ck_statcache *sc, const char *abspath,
                         const struct stat *st, const void *list,
                         size_t len);

/* Sets the hook a flush calls when the map is full (MDB_MAP_FULL):
 * fn must enlarge the map of env (mdb_env_set_mapsize) and return 0, after
 * which the flush runs again; nonzero ends the flush with an error. It is
 * called with no transaction of the cache active and lookups held off, so
 * the owner only has to keep its own transactions out of the way. NULL
 * (the default) never grows. */
void ck_statcache_set_grow(struct ck_statcache *sc, int (*fn)(void *arg),
                           void *arg);

/* Sets the guard the cache holds around each transaction it uses after
 * open: enter before a lookup or a flush begins one, leave once it has
 * ended. The owner makes it a shared lock that its own map growth takes
 * exclusively, so no remap runs while a lookup reads the map (LMDB
 * requires that no transaction of the process be active). enter may be
 * called by a thread that already holds it shared (a lookup inside the
 * owner's own transaction), and from any thread. With a guard, the grow
 * hook is called outside the cache's own lock and must wait for the
 * guard itself. Call right after open, before any lookup; NULL: none. */
void ck_statcache_set_guard(struct ck_statcache *sc, void (*enter)(void *arg),
                            void (*leave)(void *arg), void *arg);

/* Writes queued entries in one transaction. Returns 0 or CAIRN_E_DB (the
 * cache is only an optimisation: callers may ignore a failure). Under
 * ck_statcache_set_defer, leaves them queued (returns 0) unless they
 * pass 16 MiB. */
int ck_statcache_flush(struct ck_statcache *sc, struct cairn_err *err);

/* Deferred flushes (on: true): the owner of env commits the queue in its
 * own next write transaction (ck_statcache_txn_put), so a build pays no
 * disk flush of its own for the cache. Queued entries are seen by
 * lookups all the same. ck_statcache_close still writes what is left.
 * Thread-safe. */
void ck_statcache_set_defer(struct ck_statcache *sc, bool on);

/* Puts every queued entry into txn, a write transaction of sc's env
 * that the caller commits or aborts; *upto (written on success) is the
 * token for ck_statcache_txn_done, which the caller must call once txn
 * committed (not when it aborted: the entries then stay queued).
 * Entries queued meanwhile wait for the next transaction. Returns 0 or
 * an LMDB code (MDB_MAP_FULL: grow the map and run the transaction
 * again). Thread-safe. */
int ck_statcache_txn_put(struct ck_statcache *sc, MDB_txn *txn,
                         uint64_t *upto);
void ck_statcache_txn_done(struct ck_statcache *sc, uint64_t upto);

#endif
