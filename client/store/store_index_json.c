/* index.json, the OCI image layout's index: a view of the image records
 * and tags in LMDB (client/store/store_records.c), rewritten after every
 * change to them and never read back. */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "client/store/image.h"
#include "client/store/index.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ANN_REF_NAME "org.opencontainers.image.ref.name"
#define ANN_CAIRN_REF "io.cairn.image.ref"

static json_t *descriptor(const struct imgrec *r, const char *ref)
{
    char d[CAIRN_DIGEST_STR_LEN];
    store_digest_str(r->manifest, d);
    json_t *j = json_pack("{s:s,s:s,s:I}", "mediaType", r->media_type, "digest",
                          d, "size", (json_int_t)r->manifest_size);
    if (j == NULL || ref == NULL)
        return j;
    struct cairn_buf full;
    cairn_buf_init(&full, 0);
    json_t *ann = NULL;
    if (store_ref_full(ref, &full) == 0)
        ann =
            json_pack("{s:s,s:s}", ANN_CAIRN_REF, full.data, ANN_REF_NAME, ref);
    cairn_buf_free(&full);
    if (ann == NULL || json_object_set_new(j, "annotations", ann) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Builds the OCI index of every image: one descriptor per tag (ref.name
 * = the stored ref, which is what `skopeo inspect oci:ROOT:name:tag`
 * matches), one without annotations per dangling image. */
/* store_image_fn: r's descriptors appended to arg (a JSON array). */
static int index_json_add(void *arg, const struct imgrec *r,
                          const struct taglist *tags)
{
    json_t *manifests = arg;
    bool tagged = false;
    for (size_t i = 0; i < tags->n; i++) {
        if (memcmp(tags->v[i].manifest, r->manifest, CK_SHA256_LEN))
            continue;
        tagged = true;
        if (json_array_append_new(manifests, descriptor(r, tags->v[i].ref)))
            return CAIRN_E_NOMEM;
    }
    if (!tagged && json_array_append_new(manifests, descriptor(r, NULL)))
        return CAIRN_E_NOMEM;
    return 0;
}

static int index_json_build(struct cairn_store *st, char **out)
{
    json_t *manifests = json_array();
    int rc = manifests ? store_images_each(st, index_json_add, manifests)
                       : CAIRN_E_NOMEM;
    json_t *idx = NULL;
    if (!rc) {
        idx = json_pack("{s:i,s:s,s:o}", "schemaVersion", 2, "mediaType",
                        CAIRN_MEDIA_INDEX, "manifests", manifests);
        manifests = NULL;
        *out = idx ? json_dumps(idx, JSON_INDENT(2)) : NULL;
        if (*out == NULL)
            rc = CAIRN_E_NOMEM;
    }
    json_decref(manifests);
    json_decref(idx);
    return rc;
}

/* Opens root/index.lock and takes it exclusively. Returns the fd or
 * -errno. */
int store_index_lock(struct cairn_store *st)
{
    char p[STORE_PATH_MAX];
    if (store_path_fmt(p, sizeof p, st->root, "/index.lock", NULL))
        return CAIRN_E_TOOBIG;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = store_flock_mode(fd, LOCK_EXCL);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

static void *index_sync_thread(void *idx)
{
    (void)cairn_index_sync(idx);
    return NULL;
}

static void *release_thread(void *fd)
{
    close((int)(intptr_t)fd);
    return NULL;
}

void store_index_json_release_wait(struct cairn_store *st)
{
    if (st->json_release_live)
        pthread_join(st->json_release, NULL);
    st->json_release_live = false;
}

/* Lets go of old, the replaced index.json, on a thread of its own. Its
 * last reference frees its blocks, and on a file system mounted with
 * `discard` and no journal (ext4 here) that waits for the device to
 * discard them: 0.25 to 3.8 ms measured inside the rename, in the middle of
 * a build's last flushes. Held open across the rename, the old file is
 * freed by this close instead, beside the build's remaining work.
 * Readers that opened it keep reading it either way. */
static void index_json_release(struct cairn_store *st, int old)
{
    store_index_json_release_wait(st);
    if (pthread_create(&st->json_release, NULL, release_thread,
                       (void *)(intptr_t)old) == 0)
        st->json_release_live = true;
    else
        close(old);
}

/* Rewrites index.json from LMDB. The state is read after the lock is
 * taken, so whichever writer renames last wrote the newest state: two
 * processes that change tags at once cannot lose each other's change. */
int store_index_json_write(struct cairn_store *st, struct cairn_err *err)
{
    char tmp[STORE_PATH_MAX], final[STORE_PATH_MAX];
    char *json = NULL;
    /* The commit that changed the records left its meta page unsynced
     * (MDB_NOMETASYNC), for the close to sync. Syncing it now, while
     * this file is written and fsync'd, lets the two disk flushes
     * overlap instead of following each other (the close then finds
     * nothing to do). Only when: the file's rename still waits for its
     * own fsync, and a failed sync is the close's to do again. */
    pthread_t th;
    bool syncing = cairn_index_unsynced(st->idx) &&
                   pthread_create(&th, NULL, index_sync_thread, st->idx) == 0;
    int fd = store_index_lock(st);
    if (fd < 0) {
        if (syncing)
            pthread_join(th, NULL);
        return cairn_err_set(err, fd, "cannot lock index.json: %s",
                             cairn_strerror(fd));
    }
    int rc = index_json_build(st, &json);
    if (!rc)
        rc = store_tmp_write(st, "index.json", json, strlen(json), true, tmp,
                       sizeof tmp);
    if (!rc) {
        store_path_fmt(final, sizeof final, st->root, "/index.json", NULL);
        int old = open(final, O_RDONLY | O_CLOEXEC);
        if (rename(tmp, final) != 0) {
            rc = -errno;
            unlink(tmp);
        }
        if (old >= 0 && rc)
            close(old);
        else if (old >= 0)
            index_json_release(st, old);
    }
    free(json);
    close(fd);
    if (syncing)
        pthread_join(th, NULL);
    if (rc)
        return cairn_err_set(err, rc, "cannot write %s/index.json: %s",
                             st->root, cairn_strerror(rc));
    return 0;
}

