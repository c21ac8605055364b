/* cairnd's log budget (server/telemetry/log.c): a client-driven line is
 * written at most CD_LOG_BURST times a second, and the next line written
 * names how many were dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/telemetry/log.h"

static void test_budget_burst_then_dropped(void **state)
{
    (void)state;
    struct cd_log_budget b = {0};
    unsigned dropped = 99;
    for (int i = 0; i < CD_LOG_BURST; i++) {
        assert_true(cd_log_budget_take(&b, &dropped));
        assert_int_equal(dropped, 0);
    }
    /* The flood goes on within the same second: nothing more is written. */
    for (int i = 0; i < 1000; i++)
        assert_false(cd_log_budget_take(&b, &dropped));
    /* A second later (moved back by hand rather than slept): one line
     * again, naming the thousand it dropped. */
    b.window_ms -= 1000;
    assert_true(cd_log_budget_take(&b, &dropped));
    assert_int_equal(dropped, 1000);
    assert_true(cd_log_budget_take(&b, &dropped));
    assert_int_equal(dropped, 0);
}

/* A budget with its own burst (the relay's refusals: one line a second)
 * writes that many lines a second, then counts the rest for the next. */
static void test_budget_own_burst(void **state)
{
    (void)state;
    struct cd_log_budget b = {.burst = 1};
    unsigned dropped = 99;
    assert_true(cd_log_budget_take(&b, &dropped));
    assert_int_equal(dropped, 0);
    for (int i = 0; i < 50; i++)
        assert_false(cd_log_budget_take(&b, &dropped));
    b.window_ms -= 1000;
    assert_true(cd_log_budget_take(&b, &dropped));
    assert_int_equal(dropped, 50);
    assert_false(cd_log_budget_take(&b, &dropped));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_burst_then_dropped),
        cmocka_unit_test(test_budget_own_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
