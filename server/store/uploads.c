#include "server/store/uploads.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A linked list: the table holds only uploads that are in flight or
 * parked, which is a handful even on a busy server, and a list keeps the
 * locking trivially correct. */
struct entry {
    struct entry *next;
    char *name;
    struct cd_upload *upload; /* NULL while busy (a stream holds it) */
    bool busy;
    uint64_t offset;          /* committed bytes, kept for queries while busy */
    time_t idle_since;
};

struct cd_uploads {
    pthread_mutex_t mu;
    unsigned ttl_s;
    struct entry *head;
};

static time_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int cd_uploads_new(unsigned ttl_s, struct cd_uploads **out)
{
    struct cd_uploads *t = calloc(1, sizeof *t);
    if (t == NULL)
        return CAIRN_E_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->ttl_s = ttl_s;
    *out = t;
    return 0;
}

static void entry_free(struct entry *e)
{
    cd_upload_abort(e->upload);
    free(e->name);
    free(e);
}

void cd_uploads_free(struct cd_uploads *t)
{
    if (t == NULL)
        return;
    struct entry *e = t->head;
    while (e != NULL) {
        struct entry *next = e->next;
        entry_free(e);
        e = next;
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static struct entry **find(struct cd_uploads *t, const char *name)
{
    struct entry **pp = &t->head;
    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

int cd_uploads_take(struct cd_uploads *t, const char *name, struct cd_upload **out)
{
    pthread_mutex_lock(&t->mu);
    int rc;
    struct entry **pp = find(t, name);
    struct entry *e = *pp;
    if (e != NULL && e->busy) {
        rc = -EBUSY;
    } else if (e != NULL) {
        e->busy = true;
        *out = e->upload;
        e->upload = NULL;
        rc = 0;
    } else {
        e = calloc(1, sizeof *e);
        if (e == NULL || (e->name = strdup(name)) == NULL) {
            free(e);
            rc = CAIRN_E_NOMEM;
        } else {
            e->busy = true;
            e->next = t->head;
            t->head = e;
            rc = CAIRN_E_NOTFOUND;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void cd_uploads_park(struct cd_uploads *t, const char *name, struct cd_upload *u)
{
    if (u == NULL) {
        cd_uploads_release(t, name);
        return;
    }
    cd_upload_touch(u);
    pthread_mutex_lock(&t->mu);
    struct entry *e = *find(t, name);
    if (e != NULL) {
        e->upload = u;
        e->offset = cd_upload_offset(u);
        e->busy = false;
        e->idle_since = now_s();
        u = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    /* Not taken first (a caller bug): do not leak what it staged. */
    cd_upload_abort(u);
}

void cd_uploads_progress(struct cd_uploads *t, const char *name, uint64_t offset)
{
    pthread_mutex_lock(&t->mu);
    struct entry *e = *find(t, name);
    if (e != NULL && e->busy)
        e->offset = offset;
    pthread_mutex_unlock(&t->mu);
}

void cd_uploads_release(struct cd_uploads *t, const char *name)
{
    pthread_mutex_lock(&t->mu);
    struct entry **pp = find(t, name);
    struct entry *e = *pp;
    if (e != NULL) {
        *pp = e->next;
        entry_free(e);
    }
    pthread_mutex_unlock(&t->mu);
}

bool cd_uploads_query(struct cd_uploads *t, const char *name, uint64_t *size)
{
    pthread_mutex_lock(&t->mu);
    struct entry *e = *find(t, name);
    bool found = e != NULL && (e->upload != NULL || e->busy);
    if (found)
        *size = e->upload ? cd_upload_offset(e->upload) : e->offset;
    pthread_mutex_unlock(&t->mu);
    return found;
}

unsigned cd_uploads_expire(struct cd_uploads *t)
{
    unsigned n = 0;
    time_t now = now_s();
    pthread_mutex_lock(&t->mu);
    struct entry **pp = &t->head;
    while (*pp != NULL) {
        struct entry *e = *pp;
        if (!e->busy && now - e->idle_since >= (time_t)t->ttl_s) {
            *pp = e->next;
            entry_free(e);
            n++;
        } else {
            pp = &e->next;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}
