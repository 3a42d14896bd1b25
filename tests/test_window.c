/* Window stores: what each aggregate sees at the exact edges of its window,
 * eviction, late samples, and that memory stays bounded by the longest
 * window. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../src/core/window.h"

#define MIN_ (60 * 1000LL)
#define HOUR (60 * MIN_)

static fh_store make(int64_t ms, uint8_t needs) {
        fh_store s;
        fh_store_init(&s, 0, &ms, &needs, 1);
        return s;
}

static void add(fh_store *s, int64_t ts, double v) {
        fh_store_advance(s, ts);
        fh_store_push(s, ts, v);
}

static void window_is_open_at_the_start_and_closed_at_the_end(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM);

        add(&s, 0, 1);
        add(&s, 30 * MIN_, 2);
        add(&s, HOUR, 4);    /* the reading at exactly t - d has left: (t-d, t] */
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, HOUR) == 6);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, HOUR) == 2);
        add(&s, HOUR + 1, 8);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, HOUR + 1) == 14);
        fh_store_done(&s);
}

static void empty_window_sums_to_zero_and_other_aggregates_are_missing(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM | FH_WIN_MIN | FH_WIN_MAX);

        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 0) == 0);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, 0) == 0);
        assert_true(isnan(fh_store_query(&s, FH_OP_AVG, 0, 0)));
        assert_true(isnan(fh_store_query(&s, FH_OP_MIN, 0, 0)));
        assert_true(isnan(fh_store_query(&s, FH_OP_MAX, 0, 0)));
        assert_true(isnan(fh_store_query(&s, FH_OP_DELTA, 0, 0)));
        assert_true(isnan(fh_store_query(&s, FH_OP_RATE, 0, 0)));
        assert_true(isnan(fh_store_query(&s, FH_OP_LAST, 0, 0)));
        add(&s, 0, 5);
        add(&s, 2 * HOUR, 7);  /* the first has left the window */
        fh_store_advance(&s, 4 * HOUR);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 4 * HOUR) == 0);
        assert_true(isnan(fh_store_query(&s, FH_OP_AVG, 0, 4 * HOUR)));
        /* last() is the latest value whatever the windows hold */
        assert_true(fh_store_query(&s, FH_OP_LAST, 0, 4 * HOUR) == 7);
        fh_store_done(&s);
}

static void min_and_max_follow_values_entering_and_leaving(void **state) {
        fh_store s = make(3 * MIN_, FH_WIN_MIN | FH_WIN_MAX);
        double v[] = { 5, 1, 4, 2, 8, 3, 3, 0 };
        double want_min[] = { 5, 1, 1, 1, 2, 2, 3, 0 };
        double want_max[] = { 5, 5, 5, 4, 8, 8, 8, 3 };

        for (int i = 0; i < 8; i++) {
                add(&s, i * MIN_, v[i]);
                assert_true(fh_store_query(&s, FH_OP_MIN, 0, i * MIN_) == want_min[i]);
                assert_true(fh_store_query(&s, FH_OP_MAX, 0, i * MIN_) == want_max[i]);
        }
        fh_store_done(&s);
}

static void delta_and_rate_use_first_and_last_in_window(void **state) {
        fh_store s = make(HOUR, 0);

        add(&s, 0, 10.0);
        assert_true(fh_store_query(&s, FH_OP_DELTA, 0, 0) == 0);
        assert_true(isnan(fh_store_query(&s, FH_OP_RATE, 0, 0)));  /* needs two readings */
        add(&s, 30 * MIN_, 10.3);
        /* 0.3 in 30 min is 0.6 per hour; exact, not 0.59999999 */
        assert_true(fh_store_query(&s, FH_OP_DELTA, 0, 30 * MIN_) == 0.3);
        assert_true(fh_store_query(&s, FH_OP_RATE, 0, 30 * MIN_) == 0.6);
        fh_store_done(&s);
}

static void decimal_sums_are_exact(void **state) {
        fh_store s = make(3 * HOUR, FH_WIN_SUM);

        add(&s, 0, 16.6);
        add(&s, HOUR, 16.7);
        add(&s, 2 * HOUR, 16.7);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 2 * HOUR) == 50.0);
        /* and stay exact after months of values coming and going */
        for (int i = 3; i < 5000; i++)
                add(&s, i * HOUR, 0.1 * (i % 7));
        double want = 0.1 * (4997 % 7) + 0.1 * (4998 % 7) + 0.1 * (4999 % 7);
        double got = fh_store_query(&s, FH_OP_SUM, 0, 4999 * HOUR);
        assert_true(fabs(got - want) < 1e-12);
        fh_store_done(&s);
}

static void memory_is_bounded_by_the_longest_window(void **state) {
        int64_t ms[2] = { HOUR, 3 * HOUR };
        uint8_t needs[2] = { FH_WIN_SUM, FH_WIN_MAX };
        fh_store s;

        fh_store_init(&s, 0, ms, needs, 2);
        for (int i = 0; i < 100000; i++)
                add(&s, i * MIN_, i % 13);
        assert_true(s.len <= 3 * 60 + 1);
        assert_true(s.cap <= 512);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, 99999 * MIN_) == 60);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 1, 99999 * MIN_) == 180);
        fh_store_done(&s);
}

static void late_sample_joins_its_windows(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM | FH_WIN_MIN | FH_WIN_MAX);

        add(&s, 0, 1);
        add(&s, 20 * MIN_, 2);
        add(&s, 40 * MIN_, 3);
        fh_store_insert_late(&s, 10 * MIN_, -5);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 40 * MIN_) == 1);
        assert_true(fh_store_query(&s, FH_OP_MIN, 0, 40 * MIN_) == -5);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, 40 * MIN_) == 4);
        /* last() stays the newest, not the one that arrived last */
        assert_true(fh_store_query(&s, FH_OP_LAST, 0, 40 * MIN_) == 3);
        add(&s, 75 * MIN_, 10);  /* 0 and 10 min leave */
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 75 * MIN_) == 15);
        assert_true(fh_store_query(&s, FH_OP_MIN, 0, 75 * MIN_) == 2);
        fh_store_done(&s);
}

static void query_after_now_excludes_what_has_expired_since(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM | FH_WIN_MAX);

        add(&s, 0, 9);
        add(&s, 30 * MIN_, 1);
        /* a tick at 70 min, before any new reading: only the 30-min one is left */
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 70 * MIN_) == 1);
        assert_true(fh_store_query(&s, FH_OP_MAX, 0, 70 * MIN_) == 1);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, 200 * MIN_) == 0);
        /* and the running aggregates at now are untouched */
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 30 * MIN_) == 10);
        fh_store_done(&s);
}

static void reload_of_samples_rebuilds_the_windows(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM | FH_WIN_MAX);
        fh_sample v[] = { { 0, 100 }, { 10 * MIN_, 1 }, { 50 * MIN_, 2 }, { 65 * MIN_, 3 } };

        fh_store_load(&s, v, 4, 65 * MIN_);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 65 * MIN_) == 6);  /* (5 min, 65 min] */
        assert_true(fh_store_query(&s, FH_OP_MAX, 0, 65 * MIN_) == 3);
        add(&s, 70 * MIN_, 4);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, 70 * MIN_) == 9);
        fh_store_done(&s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(window_is_open_at_the_start_and_closed_at_the_end),
                cmocka_unit_test(empty_window_sums_to_zero_and_other_aggregates_are_missing),
                cmocka_unit_test(min_and_max_follow_values_entering_and_leaving),
                cmocka_unit_test(delta_and_rate_use_first_and_last_in_window),
                cmocka_unit_test(decimal_sums_are_exact),
                cmocka_unit_test(memory_is_bounded_by_the_longest_window),
                cmocka_unit_test(late_sample_joins_its_windows),
                cmocka_unit_test(query_after_now_excludes_what_has_expired_since),
                cmocka_unit_test(reload_of_samples_rebuilds_the_windows),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
