/* google.bytestream.ByteStream over the CAS: Read, Write, QueryWriteStatus.
 *
 * Read streams a blob straight from the store in CD_READ_CHUNK messages,
 * framing each ReadResponse by hand around the data so the bytes are
 * copied once (store -> message buffer), not again by protobuf-c.
 *
 * Write feeds the store's streaming upload (hashed as it arrives) and
 * commits only on finish_write with the full size. A stream that ends or
 * dies early parks its upload in the server's upload table (server/
 * uploads.h) under the resource name, so a new Write with the same name
 * resumes at the committed size; parked uploads expire after --upload-idle-timeout. */
#include "server/reapi/reapi.h"
#include "server/reapi/resource.h"
#include "server/reapi/writereq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- Read --- */

struct read_state {
    struct cd_svc *svc;
    struct cd_reader *reader;
    uint64_t pos, end;
    struct cd_resource res; /* for the message about a corrupt blob */
};

static int read_start(struct cd_svc *svc, const struct cd_req *req, void **state,
                      struct cd_reply *r)
{
    PbReadRequest *in = google__bytestream__read_request__unpack(NULL, req->len, req->data);
    if (in == NULL)
        return cd_pb_malformed(r, "ReadRequest");
    struct cd_resource res;
    struct read_state *st = NULL;
    int rc = cd_resource_parse_read(in->resource_name ? in->resource_name : "", &res, &r->err);
    if (rc != 0 || (rc = cd_svc_authorize(svc, req, res.instance, CD_ACCESS_READ, r)) != 0)
        goto out;
    uint64_t size = (uint64_t)res.digest.size;
    if (in->read_offset < 0 || (uint64_t)in->read_offset > size) {
        rc = cd_reply_fail(r, -ERANGE, "read_offset %lld is outside the blob (size %llu)",
                           (long long)in->read_offset, (unsigned long long)size);
        goto out;
    }
    if (in->read_limit < 0) {
        rc = cd_reply_fail(r, -ERANGE, "read_limit %lld is negative", (long long)in->read_limit);
        goto out;
    }
    st = calloc(1, sizeof *st);
    if (st == NULL) {
        rc = cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    rc = cd_store_reader_open(svc->store, res.instance, &res.digest, &st->reader);
    if (rc != 0) {
        cd_reply_fail(r, rc, rc == CAIRN_E_NOTFOUND ? "blob not found" : "store: %s",
                      cairn_strerror(rc));
        goto out;
    }
    st->svc = svc;
    st->res = res;
    st->pos = (uint64_t)in->read_offset;
    st->end = size;
    /* read_limit 0 means "no limit". */
    if (in->read_limit > 0 && size - st->pos > (uint64_t)in->read_limit)
        st->end = st->pos + (uint64_t)in->read_limit;
    /* A read to the end is verified (the last message is sent only after
     * the whole blob hashed to its digest); one that stops earlier cannot
     * be (docs/storage.md "Verification"). */
    if (st->end == size && (rc = cd_reader_verify(st->reader, st->pos)) != 0) {
        char why[256];
        if (rc == CAIRN_E_CORRUPT) {
            cd_metrics_add(&svc->metrics->verify_failures, 1);
            cd_corrupt_report(res.instance, &res.digest, why, sizeof why);
        }
        cd_reply_fail(r, rc, "%s", rc == CAIRN_E_CORRUPT ? why : cairn_strerror(rc));
        cd_reader_close(st->reader);
        goto out;
    }
    *state = st;
    st = NULL;
out:
    free(st);
    google__bytestream__read_request__free_unpacked(in, NULL);
    return rc;
}

static int read_next(void *state, bool *done, struct cd_reply *r)
{
    struct read_state *st = state;
    if (st->pos >= st->end) {
        *done = true;
        return 0;
    }
    uint64_t left = st->end - st->pos;
    size_t n = left < CD_READ_CHUNK ? (size_t)left : CD_READ_CHUNK;
    /* ReadResponse { bytes data = 10; }: key byte 0x52, varint length,
     * then the bytes. */
    uint8_t *msg = malloc(n + 16);
    if (msg == NULL)
        return cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
    size_t h = 0;
    msg[h++] = (10 << 3) | 2;
    for (uint64_t v = n; ; v >>= 7) {
        msg[h++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    size_t have = 0;
    while (have < n) {
        size_t got = 0;
        int rc = cd_reader_read(st->reader, st->pos + have, msg + h + have, n - have, &got);
        if (rc == 0 && got == 0)
            rc = CAIRN_E_NOTFOUND;
        if (rc == CAIRN_E_CORRUPT) {
            free(msg);
            char why[256];
            cd_metrics_add(&st->svc->metrics->verify_failures, 1);
            cd_corrupt_report(st->res.instance, &st->res.digest, why, sizeof why);
            return cd_reply_fail(r, rc, "%s", why);
        }
        if (rc != 0) {
            free(msg);
            return cd_reply_fail(r, rc, "blob vanished while being read (%s)", cairn_strerror(rc));
        }
        have += got;
    }
    st->pos += n;
    cd_metrics_add(&st->svc->metrics->bytes_out, n);
    r->out = msg;
    r->out_len = h + n;
    return 0;
}

static void read_close(void *state, bool cancelled)
{
    (void)cancelled;
    struct read_state *st = state;
    if (st == NULL)
        return;
    cd_reader_close(st->reader);
    free(st);
}

const struct cd_stream_ops cd_bytestream_read_ops = {
    .start = read_start,
    .next = read_next,
    .close = read_close,
};

/* --- Write --- */

struct write_state {
    struct cd_svc *svc;
    char *name;              /* resource name of the first message */
    struct cd_resource res;
    struct cd_upload *upload; /* held while the stream feeds it */
    bool named;              /* name is marked busy in the upload table */
    /* While a commit answers later (struct cd_later): whom to tell and
     * the reply to fill; total: the bytes received at finish_write. */
    struct cd_later *later;
    struct cd_reply *later_reply;
    uint64_t total;
    struct cd_write_req req; /* the message being handled (2 KiB: kept
                              * here rather than on the stack) */
};

static int write_start(struct cd_svc *svc, const struct cd_req *req, void **state,
                       struct cd_reply *r)
{
    (void)req;
    struct write_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
    st->svc = svc;
    *state = st;
    return 0;
}

static int write_reply(int64_t committed, struct cd_reply *r)
{
    PbWriteResponse out = GOOGLE__BYTESTREAM__WRITE_RESPONSE__INIT;
    out.committed_size = committed;
    return cd_pb_pack(&out.base, r);
}

/* Handles the first message: parses and authorises the name, then
 * resumes a parked upload or begins one. Sets *done when the blob already
 * exists (the write ends at once with committed_size = size). */
static int write_open(struct write_state *st, const struct cd_req *req, const char *name,
                      bool *done, struct cd_reply *r)
{
    int rc = cd_resource_parse_write(name, &st->res, &r->err);
    if (rc != 0)
        return rc;
    if ((rc = cd_svc_authorize(st->svc, req, st->res.instance, CD_ACCESS_WRITE, r)) != 0)
        return rc;
    st->name = strdup(name);
    if (st->name == NULL)
        return cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
    rc = cd_uploads_take(st->svc->uploads, name, &st->upload);
    if (rc == -EBUSY)
        return cd_reply_fail(r, rc, "another Write stream is using this resource name");
    if (rc != 0 && rc != CAIRN_E_NOTFOUND)
        return cd_reply_fail(r, rc, "%s", cairn_strerror(rc));
    st->named = true;
    if (rc == 0)
        return 0; /* resuming a parked upload */
    rc = cd_store_upload_begin(st->svc->store, st->res.instance, &st->res.digest, &st->upload);
    if (rc == CAIRN_E_EXISTS) {
        *done = true;
        return write_reply(st->res.digest.size, r);
    }
    if (rc == CAIRN_E_FULL)
        return cd_reply_fail(r, rc, "store is full and eviction cannot make room for %lld bytes",
                             (long long)st->res.digest.size);
    if (rc != 0)
        return cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
    return 0;
}

/* The reply to a finished Write whose commit returned rc. */
static int write_answer(struct write_state *st, int rc, struct cd_reply *r)
{
    if (rc == CAIRN_E_DIGEST) {
        if (st->total != (uint64_t)st->res.digest.size)
            cd_reply_fail(r, rc, "finish_write after %llu bytes, the digest says %lld; nothing stored",
                          (unsigned long long)st->total, (long long)st->res.digest.size);
        else
            cd_reply_fail(r, rc, "uploaded data does not hash to the digest; nothing stored");
        return rc;
    }
    if (rc != 0)
        return cd_reply_fail(r, rc, rc == CAIRN_E_FULL ? "store is full" : "store: %s",
                             cairn_strerror(rc));
    return write_reply(st->res.digest.size, r);
}

/* cd_upload_done_fn of an answer given later (on the store's group-commit
 * thread, or on the worker before write_message returned). */
static void write_committed(void *ctx, int rc)
{
    struct write_state *st = ctx;
    (void)write_answer(st, rc, st->later_reply);
    st->later->done(st->later);
}

static int write_piece(void *ctx, const uint8_t *p, size_t n)
{
    return cd_upload_write(ctx, p, n);
}

static int write_message(void *state, const struct cd_req *req, bool *done, struct cd_reply *r)
{
    struct write_state *st = state;
    struct cd_write_req *in = &st->req;
    /* Client-streaming messages always arrive as pieces (server/grpc/rpc.c). */
    struct cd_iov one = {req->data, req->len};
    int rc = req->iov != NULL ? cd_write_req_parse(req->iov, req->niov, in, &r->err)
                              : cd_write_req_parse(&one, 1, in, &r->err);
    if (rc != 0)
        return rc;
    const char *name = in->name;
    if (st->name == NULL) {
        if (name[0] == '\0')
            return cd_reply_fail(r, CAIRN_E_INVAL, "the first WriteRequest must set resource_name");
        if ((rc = write_open(st, req, name, done, r)) != 0 || *done)
            return rc;
    } else if (name[0] != '\0' && strcmp(name, st->name) != 0) {
        return cd_reply_fail(r, CAIRN_E_INVAL, "resource_name changed within one Write stream");
    }
    uint64_t committed = cd_upload_offset(st->upload);
    if (in->offset < 0 || (uint64_t)in->offset != committed)
        return cd_reply_fail(r, CAIRN_E_INVAL,
                             "write_offset %lld does not match the committed size %llu",
                             (long long)in->offset, (unsigned long long)committed);
    size_t len = in->data.left;
    if (len > 0) {
        if (len > (uint64_t)st->res.digest.size - committed)
            return cd_reply_fail(r, CAIRN_E_INVAL, "data runs past the digest size %lld",
                                 (long long)st->res.digest.size);
        rc = cd_wire_each(in->data, write_piece, st->upload);
        if (rc != 0)
            return cd_reply_fail(r, rc, rc == CAIRN_E_FULL ? "store is full" : "store: %s",
                                 cairn_strerror(rc));
        cd_metrics_add(&st->svc->metrics->bytes_in, len);
        cd_uploads_progress(st->svc->uploads, st->name, cd_upload_offset(st->upload));
    }
    if (!in->finish)
        return 0;
    *done = true;
    st->total = cd_upload_offset(st->upload);
    struct cd_upload *u = st->upload;
    st->upload = NULL;
    if (req->later != NULL) {
        /* The worker thread goes on with other calls while the blob waits
         * for its group commit, so concurrent writes share one sync. */
        st->later = req->later;
        st->later_reply = r;
        cd_upload_commit_async(u, write_committed, st);
        return CD_REPLY_LATER;
    }
    /* commit frees the upload whatever it returns. */
    return write_answer(st, cd_upload_commit(u), r);
}

static void write_end(void *state, struct cd_reply *r)
{
    struct write_state *st = state;
    if (st->upload == NULL) {
        cd_reply_fail(r, CAIRN_E_INVAL, "Write stream ended without any WriteRequest");
        return;
    }
    cd_reply_fail(r, CAIRN_E_INVAL,
                  "Write stream ended at %llu of %lld bytes without finish_write; "
                  "the upload can be resumed at that offset",
                  (unsigned long long)cd_upload_offset(st->upload), (long long)st->res.digest.size);
}

static void write_close(void *state, bool cancelled)
{
    (void)cancelled;
    struct write_state *st = state;
    if (st == NULL)
        return;
    if (st->named) {
        /* An upload still held did not finish: keep it for a resume. */
        if (st->upload != NULL)
            cd_uploads_park(st->svc->uploads, st->name, st->upload);
        else
            cd_uploads_release(st->svc->uploads, st->name);
    } else {
        cd_upload_abort(st->upload);
    }
    free(st->name);
    free(st);
}

const struct cd_stream_ops cd_bytestream_write_ops = {
    .start = write_start,
    .message = write_message,
    .end = write_end,
    .close = write_close,
};

/* --- QueryWriteStatus --- */

void cd_bytestream_query(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbQueryWriteStatusRequest *in =
        google__bytestream__query_write_status_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "QueryWriteStatusRequest");
        return;
    }
    struct cd_resource res;
    const char *name = in->resource_name ? in->resource_name : "";
    if (cd_resource_parse_write(name, &res, &r->err) != 0 ||
        cd_svc_authorize(svc, req, res.instance, CD_ACCESS_WRITE, r) != 0)
        goto out;
    PbQueryWriteStatusResponse out = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
    bool missing = true;
    int rc = cd_store_find_missing(svc->store, res.instance, &res.digest, 1, &missing);
    uint64_t committed = 0;
    if (rc != 0) {
        cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
        goto out;
    }
    if (!missing) {
        out.committed_size = res.digest.size;
        out.complete = 1;
    } else if (cd_uploads_query(svc->uploads, name, &committed)) {
        out.committed_size = (int64_t)committed;
    } else {
        cd_reply_fail(r, CAIRN_E_NOTFOUND, "no upload in progress under this resource name");
        goto out;
    }
    cd_pb_pack(&out.base, r);
out:
    google__bytestream__query_write_status_request__free_unpacked(in, NULL);
}
