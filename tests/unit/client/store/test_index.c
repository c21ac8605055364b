/* client/store/index.c: which commits are known durable (the close syncs
 * only when the last one is not). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/store/index.h"

static void commit_one(struct cairn_index *idx, const char *key)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(cairn_index_txn_begin(idx, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "t", MDB_CREATE, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v = {1, "v"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(cairn_index_txn_commit(idx, txn), 0);
}

/* Nothing committed: nothing to sync. A commit is unsynced until a sync
 * (an image's, beside its index.json) makes it durable, and the next
 * commit is unsynced again, as is one by another process. */
static void test_unsynced(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-index-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cairn_index *idx = NULL, *other = NULL;
    struct cairn_err err;
    assert_int_equal(cairn_index_open(dir, &idx, &err), 0);
    assert_false(cairn_index_unsynced(idx));
    commit_one(idx, "a");
    assert_true(cairn_index_unsynced(idx));
    assert_int_equal(cairn_index_sync(idx), 0);
    assert_false(cairn_index_unsynced(idx));
    commit_one(idx, "b");
    assert_true(cairn_index_unsynced(idx));
    assert_int_equal(cairn_index_sync(idx), 0);

    assert_int_equal(cairn_index_open(dir, &other, &err), 0);
    assert_false(cairn_index_unsynced(other));
    commit_one(other, "c");
    assert_true(cairn_index_unsynced(idx));
    cairn_index_close(other);
    cairn_index_close(idx);

    char p[64];
    snprintf(p, sizeof p, "%s/index/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/index/lock.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/index", dir);
    rmdir(p);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsynced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
