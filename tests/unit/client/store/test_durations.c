/* The step-duration history (client/store/durations.h): ids, records,
 * slots shared by two ids, clamping, and a damaged file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/store/durations.h"
#include "client/store/store.h"
#include "common/error.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char root[80];
    struct cairn_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-durations-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->root, sizeof f->root, "%s/r", f->dir);
    struct cairn_err err;
    if (cairn_store_open(f->root, &f->st, &err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cairn_store_close(f->st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* The id depends on the stage, the number and the text, nothing else. */
static void test_id(void **state)
{
    (void)state;
    uint8_t a[CK_SHA256_LEN], b[CK_SHA256_LEN];
    assert_int_equal(cairn_duration_id(0, 2, "RUN sh /f", a), 0);
    assert_int_equal(cairn_duration_id(0, 2, "RUN sh /f", b), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(cairn_duration_id(1, 2, "RUN sh /f", b), 0);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(cairn_duration_id(0, 3, "RUN sh /f", b), 0);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(cairn_duration_id(0, 2, "RUN sh /g", b), 0);
    assert_memory_not_equal(a, b, sizeof a);
}

static void test_put_get(void **state)
{
    struct fixture *f = *state;
    uint8_t id[CK_SHA256_LEN];
    int64_t ms = -1;
    assert_int_equal(cairn_duration_id(0, 2, "RUN make", id), 0);
    /* No file yet. */
    assert_int_equal(cairn_duration_get(f->st, id, &ms), CAIRN_E_NOTFOUND);
    assert_int_equal(ms, -1);
    assert_int_equal(cairn_duration_put(f->st, id, 1234), 0);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), 0);
    assert_int_equal(ms, 1234);
    /* The latest run counts. */
    assert_int_equal(cairn_duration_put(f->st, id, 99), 0);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), 0);
    assert_int_equal(ms, 99);
    /* Clamped both ways. */
    assert_int_equal(cairn_duration_put(f->st, id, 0), 0);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(cairn_duration_put(f->st, id, CAIRN_DURATION_MAX_MS * 5), 0);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), 0);
    assert_int_equal(ms, CAIRN_DURATION_MAX_MS);
    /* Another id is none. */
    uint8_t other[CK_SHA256_LEN];
    assert_int_equal(cairn_duration_id(0, 3, "RUN make", other), 0);
    assert_int_equal(cairn_duration_get(f->st, other, &ms), CAIRN_E_NOTFOUND);
}

/* Two ids in one slot: the later replaces the earlier, which is then
 * none (never the other's time); the file stays within its cap. */
static void test_slot_and_cap(void **state)
{
    struct fixture *f = *state;
    uint8_t a[CK_SHA256_LEN], b[CK_SHA256_LEN];
    memset(a, 0x11, sizeof a);
    memset(b, 0x22, sizeof b);
    b[CK_SHA256_LEN - 2] = a[CK_SHA256_LEN - 2];
    b[CK_SHA256_LEN - 1] = a[CK_SHA256_LEN - 1];
    int64_t ms = 0;
    assert_int_equal(cairn_duration_put(f->st, a, 500), 0);
    assert_int_equal(cairn_duration_put(f->st, b, 700), 0);
    assert_int_equal(cairn_duration_get(f->st, b, &ms), 0);
    assert_int_equal(ms, 700);
    assert_int_equal(cairn_duration_get(f->st, a, &ms), CAIRN_E_NOTFOUND);
    uint8_t id[CK_SHA256_LEN];
    for (int i = 0; i < 3 * CAIRN_DURATION_SLOTS; i++) {
        assert_int_equal(cairn_duration_id(0, i, "RUN x", id), 0);
        assert_int_equal(cairn_duration_put(f->st, id, i + 1), 0);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/step-durations", f->root);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= (off_t)CAIRN_DURATION_SLOTS * 32);
}

/* A damaged file (zeros, garbage) yields no time, never a wrong one. */
static void test_damaged(void **state)
{
    struct fixture *f = *state;
    uint8_t id[CK_SHA256_LEN];
    int64_t ms = 0;
    assert_int_equal(cairn_duration_id(2, 7, "RUN y", id), 0);
    assert_int_equal(cairn_duration_put(f->st, id, 300), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/step-durations", f->root);
    /* Truncated: the record is gone. */
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), CAIRN_E_NOTFOUND);
    /* The id intact, the time out of range (0xff...): none. */
    assert_int_equal(cairn_duration_put(f->st, id, 300), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t slot = (off_t)(((uint32_t)id[30] << 8 | id[31]) % CAIRN_DURATION_SLOTS) * 32;
    uint8_t bad[4] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(pwrite(fd, bad, sizeof bad, slot + 28), 4);
    close(fd);
    assert_int_equal(cairn_duration_get(f->st, id, &ms), CAIRN_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id),
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
