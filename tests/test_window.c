/* Window stores: what each aggregate sees at the exact edges of its window,
 * eviction, late samples, and that memory stays bounded by the longest
 * window. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

/* The micro-unit sum of 9.3 million values of 999,999 is 9.3e18 micro-units,
 * past int64: it wrapped to a negative sum (signed overflow, UB). Beyond the
 * exact range the compensated sum answers; the exact one again once the
 * window is back within it. The engine's max_window_samples keeps a window
 * far below this by default; with no cap, this is what holds. */
static void sum_beyond_the_exact_range_does_not_wrap(void **state) {
        fh_store s = make(10 * HOUR, FH_WIN_SUM);   /* one sample per ms: all inside */
        const int64_t n = 9300000;

        for (int64_t i = 0; i < n; i++)
                add(&s, i, 999999);
        double got = fh_store_query(&s, FH_OP_SUM, 0, n - 1);
        assert_true(fabs(got - 9.3e12 * 0.999999) < 1.0);
        /* All but one leave the window: exact again. */
        add(&s, n - 1 + 10 * HOUR, 0.1);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, n - 1 + 10 * HOUR) == 0.1);
        fh_store_done(&s);
}

static void store_len_with_tells_what_a_sample_would_make_it_hold(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM);

        assert_int_equal(fh_store_len_with(&s, 0), 1);
        add(&s, 0, 1);
        add(&s, MIN_, 1);
        assert_int_equal(fh_store_len_with(&s, 2 * MIN_), 3);          /* in order */
        assert_int_equal(fh_store_len_with(&s, 30000), 3);             /* late */
        assert_int_equal(fh_store_len_with(&s, HOUR + MIN_ - 1), 2);   /* 0 leaves */
        assert_int_equal(fh_store_len_with(&s, 5 * HOUR), 2);          /* the newest stays */
        fh_store_done(&s);
}

static void memory_is_bounded_by_the_longest_window(void **state) {
        int64_t ms[2] = { HOUR, 3 * HOUR };
        uint8_t needs[2] = { FH_WIN_SUM, FH_WIN_MAX };
        fh_store s;

        fh_store_init(&s, 0, ms, needs, 2);
        for (int i = 0; i < 100000; i++)
                add(&s, i * MIN_, i % 13);
        assert_true(s.r.len <= 3 * 60 + 1);
        assert_true(s.r.cap <= 512);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, 99999 * MIN_) == 60);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 1, 99999 * MIN_) == 180);
        fh_store_done(&s);
}

/* 5-s data fills a 1 h window with 720 samples; when the gauge drops to
 * one a minute the store gives the memory back, and still counts right. */
static void memory_follows_the_samples_a_window_holds(void **state) {
        fh_store s = make(HOUR, FH_WIN_SUM);
        int64_t t = 0;

        for (int i = 0; i < 2000; i++, t += 5000)
                add(&s, t, 1);
        assert_true(s.r.len == 720);
        assert_true(s.r.cap <= 720 + 720 / 8 + 8);
        size_t full = fh_store_memory(&s);
        for (int i = 0; i < 180; i++, t += MIN_)
                add(&s, t, 2);
        assert_true(s.r.len == 60);
        assert_true(s.r.cap <= 128);
        assert_true(fh_store_memory(&s) < full / 4);
        assert_true(fh_store_query(&s, FH_OP_SUM, 0, t - MIN_) == 120);
        assert_true(fh_store_query(&s, FH_OP_COUNT, 0, t - MIN_) == 60);
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

/* ---- against a naive model ---- */

typedef struct model {
        fh_sample *v;      /* every sample given, sorted */
        size_t n;
} model;

static void model_add(model *m, int64_t ts, double v) {
        size_t i = m->n++;
        m->v = realloc(m->v, m->n * sizeof(*m->v));
        while (i > 0 && m->v[i - 1].ts > ts) {
                m->v[i] = m->v[i - 1];
                i--;
        }
        m->v[i] = (fh_sample) { ts, v };
}

/* SPEC §3.1 read literally: the readings with t - d < ts <= t. */
static double model_query(const model *m, fh_opcode op, int64_t d, int64_t t) {
        size_t a = 0, b = m->n;
        while (a < m->n && m->v[a].ts <= t - d)
                a++;
        while (b > 0 && m->v[b - 1].ts > t)
                b--;
        if (op == FH_OP_LAST) {
                size_t i = m->n;
                while (i > 0 && m->v[i - 1].ts > t)
                        i--;
                return i ? m->v[i - 1].v : NAN;
        }
        size_t n = b > a ? b - a : 0;
        /* Values with at most six decimals are exact in micro-units (the
         * stream's values all are, or none is). */
        long double sum = 0;
        int64_t micro = 0;
        bool exact = true;
        double mn = INFINITY, mx = -INFINITY;
        for (size_t i = a; i < b; i++) {
                sum += m->v[i].v;
                micro += llround(m->v[i].v * 1e6);
                exact = exact && (double) llround(m->v[i].v * 1e6) / 1e6 == m->v[i].v;
                mn = fmin(mn, m->v[i].v);
                mx = fmax(mx, m->v[i].v);
        }
        double total = exact ? (double) micro / 1e6 : (double) sum;
        double diff = n == 0 ? NAN
                      : exact ? (double) (llround(m->v[b - 1].v * 1e6) - llround(m->v[a].v * 1e6)) / 1e6
                              : m->v[b - 1].v - m->v[a].v;
        switch (op) {
        case FH_OP_COUNT: return (double) n;
        case FH_OP_SUM: return total;
        case FH_OP_AVG: return n ? total / (double) n : NAN;
        case FH_OP_MIN: return n ? mn : NAN;
        case FH_OP_MAX: return n ? mx : NAN;
        case FH_OP_DELTA: return diff;
        case FH_OP_RATE:
                if (n < 2)
                        return NAN;
                return diff * ((double) d / (double) (m->v[b - 1].ts - m->v[a].ts));
        default: return NAN;
        }
}

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
        rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t) (rng_state >> 33) % n;
}

static void assert_same(double got, double want, bool exact, const char *what, int step) {
        if (isnan(want) && isnan(got))
                return;
        if (exact ? got == want : fabs(got - want) <= 1e-9 * fmax(1, fabs(want)))
                return;
        fail_msg("%s at step %d: got %.17g, want %.17g", what, step, got, want);
}

/* Samples arriving in random order (runs newest first, shuffled bursts,
 * some older than every window): after every one, each op over each window
 * at now and at a later tick equals the model's answer. Values with at
 * most six decimals must match exactly. */
static void against_the_model(const int64_t ms[3], int64_t step) {
        static const fh_opcode ops[] = { FH_OP_SUM, FH_OP_COUNT, FH_OP_AVG, FH_OP_MIN,
                                         FH_OP_MAX, FH_OP_LAST, FH_OP_DELTA, FH_OP_RATE };
        static const char *const names[] = { "sum", "count", "avg", "min", "max", "last", "delta", "rate" };
        uint8_t needs[3] = { FH_WIN_SUM | FH_WIN_MIN | FH_WIN_MAX, FH_WIN_SUM | FH_WIN_MIN | FH_WIN_MAX,
                             FH_WIN_SUM | FH_WIN_MIN | FH_WIN_MAX };

        for (int round = 0; round < 8; round++) {
                bool exact = round < 6;
                enum { N = 2000 };
                int64_t ts[N];
                fh_store s;
                model m = { 0 };

                rng_state = 0x9e3779b97f4a7c15ULL * (uint64_t) (round + 1);
                fh_store_init(&s, 0, ms, needs, 3);
                /* distinct times (in even rounds on whole seconds, so samples sit
                 * exactly on window edges), then disorder: reversed runs and swaps */
                for (int i = 0; i < N; i++)
                        ts[i] = (int64_t) i * step + (round % 2 ? rnd((uint32_t) step) : rnd(2) * step / 2);
                for (int i = 0; i < N;) {
                        int len = 1 + (int) rnd(round == 5 ? N : 200);
                        if (i + len > N)
                                len = N - i;
                        if (rnd(3) == 0)
                                for (int a = i, b = i + len - 1; a < b; a++, b--) {
                                        int64_t x = ts[a];
                                        ts[a] = ts[b];
                                        ts[b] = x;
                                }
                        i += len;
                }
                /* mostly near swaps, which stay inside the windows; a few
                 * far ones, older than every window or jumping ahead */
                for (int k = 0; k < N / 4; k++) {
                        int a = (int) rnd(N), b = k % 64 ? a + (int) rnd(200) - 100 : (int) rnd(N);
                        if (b < 0 || b >= N)
                                continue;
                        int64_t x = ts[a];
                        ts[a] = ts[b];
                        ts[b] = x;
                }
                for (int i = 0; i < N; i++) {
                        /* small values repeat (ties in min/max) */
                        double v = exact ? (double) ((int) rnd(41) - 20) / 10 : ((double) rnd(1000000007) / 1e9 + 1e-10) * (rnd(2) ? 1 : -1);
                        if (i == 0 || ts[i] > s.now) {
                                fh_store_advance(&s, ts[i]);
                                fh_store_push(&s, ts[i], v);
                        } else {
                                fh_store_insert_late(&s, ts[i], v);
                        }
                        model_add(&m, ts[i], v);
                        int64_t later = s.now + rnd(3) * (int64_t) rnd(120) * step;
                        for (unsigned w = 0; w < 3; w++)
                                for (size_t o = 0; o < 8; o++) {
                                        double want = model_query(&m, ops[o], ms[w], s.now);
                                        assert_same(fh_store_query(&s, ops[o], w, s.now), want, exact, names[o], i);
                                        want = model_query(&m, ops[o], ms[w], later);
                                        assert_same(fh_store_query(&s, ops[o], w, later), want, exact, names[o], i);
                                }
                }
                fh_store_done(&s);
                free(m.v);
        }
}

static void late_and_out_of_order_samples_match_a_naive_model(void **state) {
        static const int64_t short_ms[3] = { MIN_, 7 * MIN_, HOUR };
        static const int64_t long_ms[3] = { HOUR, 7 * HOUR, 24 * HOUR };
        static const int64_t wide_ms[3] = { 24 * HOUR, 30 * 24 * HOUR, 60 * 24 * HOUR };

        against_the_model(short_ms, 2000);
        /* 2,000 hours: the store's 32-bit times move their base (past 2^32 ms) */
        against_the_model(long_ms, HOUR);
        /* windows over 2^31 ms keep 64-bit times */
        against_the_model(wide_ms, 12 * HOUR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sum_beyond_the_exact_range_does_not_wrap),
                cmocka_unit_test(store_len_with_tells_what_a_sample_would_make_it_hold),
                cmocka_unit_test(window_is_open_at_the_start_and_closed_at_the_end),
                cmocka_unit_test(empty_window_sums_to_zero_and_other_aggregates_are_missing),
                cmocka_unit_test(min_and_max_follow_values_entering_and_leaving),
                cmocka_unit_test(delta_and_rate_use_first_and_last_in_window),
                cmocka_unit_test(decimal_sums_are_exact),
                cmocka_unit_test(memory_is_bounded_by_the_longest_window),
                cmocka_unit_test(memory_follows_the_samples_a_window_holds),
                cmocka_unit_test(late_sample_joins_its_windows),
                cmocka_unit_test(query_after_now_excludes_what_has_expired_since),
                cmocka_unit_test(reload_of_samples_rebuilds_the_windows),
                cmocka_unit_test(late_and_out_of_order_samples_match_a_naive_model),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
