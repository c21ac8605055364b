/* Resumable ByteStream uploads: the server's table of uploads that are not
 * finished, keyed by the full resource name.
 *
 * A Write stream takes its upload out of the table (or begins a new one),
 * feeds it, and when the stream ends without finishing - the client half-
 * closed early or disconnected - puts it back ("parks" it) so a later
 * Write with the same resource name continues at the committed size.
 * Parked uploads that nobody resumes within the TTL are aborted by
 * cd_uploads_expire (the store's own cd_store_maintain then removes
 * whatever they staged). All functions are thread-safe (one mutex). */
#ifndef CAIRN_SERVER_UPLOADS_H
#define CAIRN_SERVER_UPLOADS_H

#include "server/store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct cd_uploads;

/* Returns 0 or CAIRN_E_NOMEM. */
int cd_uploads_new(unsigned ttl_s, struct cd_uploads **out);
/* Aborts every parked upload and frees the table. Accepts NULL. */
void cd_uploads_free(struct cd_uploads *t);

/* Takes the parked upload for name. Returns 0 (*out is now the caller's),
 * CAIRN_E_NOTFOUND (nothing parked), -EBUSY (a stream is using it now;
 * the caller must not begin another). On CAIRN_E_NOTFOUND the name is
 * marked busy all the same until cd_uploads_park or cd_uploads_release,
 * so two streams never start the same upload twice. */
int cd_uploads_take(struct cd_uploads *t, const char *name, struct cd_upload **out);
/* Puts u back under name (taken earlier with cd_uploads_take); the table
 * owns u, whose idle clock restarts (cd_upload_touch): a parked upload
 * lives a full TTL. u NULL just clears the busy mark (same as release). */
void cd_uploads_park(struct cd_uploads *t, const char *name, struct cd_upload *u);
/* Records that the stream holding name has received offset bytes, so
 * QueryWriteStatus during the stream reports the live committed size. */
void cd_uploads_progress(struct cd_uploads *t, const char *name, uint64_t offset);
/* Clears the busy mark of name after its upload was committed or aborted
 * by the caller. */
void cd_uploads_release(struct cd_uploads *t, const char *name);
/* Bytes committed for name: true and *size when an upload is parked or in
 * progress under that name. */
bool cd_uploads_query(struct cd_uploads *t, const char *name, uint64_t *size);
/* Aborts parked uploads idle for longer than the TTL; returns how many. */
unsigned cd_uploads_expire(struct cd_uploads *t);

#endif
