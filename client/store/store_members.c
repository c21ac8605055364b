/* The member table (client/store/store_members.h) in the store's LMDB
 * environment: key = a member key (32 bytes), value (48 bytes) = version,
 * three zero bytes, the member's size (uint32 little endian), its offset
 * in the blob (uint64 little endian), the blob's sha256 (32 bytes). Prune
 * drops the entries of the blobs it deletes (store_members_prune). */
#include "client/store/store_members.h"
#include "client/store/store_impl.h"

#include <lmdb.h>
#include <stdio.h>
#include <string.h>

#define MEMBER_VERSION 1
#define MEMBER_VAL_LEN 48

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

struct members_put {
    const uint8_t *blob;
    const struct cairn_layer_member *m;
    size_t n;
};

static int members_put_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                          struct cairn_err *err)
{
    struct members_put *p = arg;
    for (size_t i = 0; i < p->n; i++) {
        uint8_t val[MEMBER_VAL_LEN] = {MEMBER_VERSION};
        le_put(val + 4, p->m[i].size, 4);
        le_put(val + 8, p->m[i].offset, 8);
        memcpy(val + 16, p->blob, CK_SHA256_LEN);
        MDB_val k = {32, (void *)p->m[i].key}, v = {sizeof val, val};
        int mrc = mdb_put(txn, st->db_members, &k, &v, 0);
        if (mrc)
            return store_mdb_fail(err, mrc, "put layer members");
    }
    return 0;
}

int cairn_store_members_put(struct cairn_store *st, const char *digest,
                            const struct cairn_layer_member *m, size_t n,
                            struct cairn_err *err)
{
    uint8_t blob[CK_SHA256_LEN];
    if (st == NULL || (m == NULL && n > 0) || store_digest_bin(digest, blob))
        return cairn_err_set(err, CAIRN_E_INVAL, "members: bad arguments");
    if (n == 0)
        return 0;
    struct members_put p = {blob, m, n};
    return store_txn_write(st, members_put_fn, &p, "put layer members", err);
}

int cairn_store_members_find(void *arg, const uint8_t key[32], char *path,
                             size_t cap, uint64_t *offset, uint32_t *size)
{
    struct cairn_store *st = arg;
    uint8_t val[MEMBER_VAL_LEN];
    size_t len = 0;
    MDB_val k = {32, (void *)key};
    int rc = store_get_copy(st, st->db_members, &k, val, sizeof val, &len);
    if (rc)
        return rc;
    if (len != MEMBER_VAL_LEN || val[0] != MEMBER_VERSION)
        return CAIRN_E_CORRUPT;
    char hex[CK_SHA256_HEX_LEN + 1], digest[CAIRN_DIGEST_STR_LEN];
    ck_hex_encode(val + 16, hex);
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    if (cairn_store_blob_path(st, digest, path, cap) != 0)
        return CAIRN_E_TOOBIG;
    *offset = le_get(val + 8, 8);
    *size = (uint32_t)le_get(val + 4, 4);
    return 0;
}

int store_members_prune(struct cairn_store *st, MDB_txn *txn,
                        bool (*keep)(void *arg, const uint8_t blob[32]),
                        void *arg)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, st->db_members, &cur);
    if (mrc)
        return store_mdb_err(mrc);
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        /* An entry we cannot read could only miss: it goes too. */
        bool ok = v.mv_size == MEMBER_VAL_LEN &&
                  ((const uint8_t *)v.mv_data)[0] == MEMBER_VERSION;
        if (ok && keep(arg, (const uint8_t *)v.mv_data + 16))
            continue;
        if ((mrc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? 0 : store_mdb_err(mrc);
}
