/* Which Kafka offsets may be committed (src/daemon/tracker.c): at-least-once
 * rests on an offset never moving past a message whose alerts are not all
 * acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "tracker.h"

typedef struct seen {
        char topic[32];
        int32_t partition;
        int64_t offset;
        int n;
} seen;

static void record(void *ud, const char *topic, int32_t partition, int64_t next) {
        seen *s = ud;
        snprintf(s->topic, sizeof(s->topic), "%s", topic);
        s->partition = partition;
        s->offset = next;
        s->n++;
}

/* What the daemon stores: each partition's committable offset when it
 * moved since the last look (the daemon remembers what it stored). */
static struct {
        char topic[32];
        int32_t partition;
        int64_t offset;
} stored[8];
static int n_stored;

static void record_moved(void *ud, const char *topic, int32_t partition, int64_t next) {
        int i = 0;
        while (i < n_stored && !(stored[i].partition == partition && !strcmp(stored[i].topic, topic)))
                i++;
        if (i < n_stored && stored[i].offset == next)
                return;
        if (i == n_stored) {
                assert_true(n_stored < 8);
                n_stored++;
                snprintf(stored[i].topic, sizeof(stored[i].topic), "%s", topic);
                stored[i].partition = partition;
        }
        stored[i].offset = next;
        record(ud, topic, partition, next);
}

static void collect(fh_tracker *t, seen *s) {
        fh_tracker_foreach_committable(t, record_moved, s);
}

static void offset_moves_only_when_every_earlier_message_is_released(void **state) {
        fh_tracker *t = fh_tracker_new();
        n_stored = 0;
        fh_track *a = fh_tracker_begin(t, "rain", 0, 10);
        fh_track *b = fh_tracker_begin(t, "rain", 0, 11);
        fh_track *c = fh_tracker_begin(t, "rain", 0, 12);
        seen s = { 0 };

        assert_int_equal(fh_tracker_pending(t), 3);
        fh_tracker_release(t, b);      /* finished first, but 10 is still open */
        collect(t, &s);
        assert_int_equal(s.n, 0);
        fh_tracker_release(t, a);      /* 10 and 11 done: commit 12 */
        collect(t, &s);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.topic, "rain");
        assert_int_equal(s.offset, 12);
        collect(t, &s);   /* nothing new: not reported again */
        assert_int_equal(s.n, 1);
        fh_tracker_release(t, c);
        collect(t, &s);
        assert_int_equal(s.n, 2);
        assert_int_equal(s.offset, 13);
        assert_int_equal(fh_tracker_pending(t), 0);
        assert_null(fh_tracker_free(t));
}

static void a_held_message_waits_for_its_last_alert(void **state) {
        fh_tracker *t = fh_tracker_new();
        n_stored = 0;
        fh_track *a = fh_tracker_begin(t, "rain", 3, 0);
        seen s = { 0 };

        fh_track_hold(a);              /* one alert in flight */
        fh_tracker_release(t, a);      /* the engine is done with it */
        collect(t, &s);
        assert_int_equal(s.n, 0);
        fh_tracker_release(t, a);      /* the alert is acknowledged */
        collect(t, &s);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.partition, 3);
        assert_int_equal(s.offset, 1);
        fh_tracker_free(t);
}

static void partitions_are_independent_and_processed_runs_ahead_of_committable(void **state) {
        fh_tracker *t = fh_tracker_new();
        n_stored = 0;
        fh_track *a = fh_tracker_begin(t, "rain", 0, 5);
        fh_track *b = fh_tracker_begin(t, "rain", 1, 7);
        fh_track *c = fh_tracker_begin(t, "bridge", 0, 2);
        seen s = { 0 };

        assert_int_equal(fh_tracker_processed(t, "rain", 0), 6);
        assert_int_equal(fh_tracker_processed(t, "rain", 1), 8);
        assert_int_equal(fh_tracker_processed(t, "bridge", 0), 3);
        assert_int_equal(fh_tracker_processed(t, "bridge", 1), -1);
        fh_tracker_release(t, b);
        collect(t, &s);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.partition, 1);
        assert_int_equal(s.offset, 8);
        s.n = 0;
        fh_tracker_foreach_processed(t, record, &s);
        assert_int_equal(s.n, 3);
        fh_tracker_release(t, a);
        fh_tracker_release(t, c);
        fh_tracker_free(t);
}

static void forgotten_partition_keeps_its_pending_tracks_valid(void **state) {
        fh_tracker *t = fh_tracker_new();
        n_stored = 0;
        fh_track *a = fh_tracker_begin(t, "rain", 0, 5);
        seen s = { 0 };

        fh_tracker_forget(t, "rain", 0);
        assert_int_equal(fh_tracker_processed(t, "rain", 0), -1);
        assert_int_equal(fh_tracker_pending(t), 1);
        fh_tracker_release(t, a);      /* must not touch freed memory (ASan) */
        collect(t, &s);
        assert_int_equal(s.n, 0);      /* a revoked partition is not committed */
        assert_int_equal(fh_tracker_pending(t), 0);
        fh_tracker_forget(t, "rain", 9);   /* unknown: nothing happens */
        fh_tracker_free(t);
}

static void free_accepts_null_and_tracks_still_held(void **state) {
        fh_tracker *t = fh_tracker_new();
        n_stored = 0;

        assert_null(fh_tracker_free(NULL));
        fh_tracker_begin(t, "rain", 0, 1);
        fh_tracker_begin(t, "rain", 1, 1);
        fh_tracker_forget(t, "rain", 1);
        assert_null(fh_tracker_free(t));   /* nothing leaks (ASan) */
}

static void remember(void *userdata, const char *topic, int32_t partition, int64_t next) {
        int64_t *last = userdata;
        (void) topic;
        (void) partition;
        *last = next;
}

static int64_t last_committable(const fh_tracker *t) {
        int64_t last = -1;
        fh_tracker_foreach_committable(t, remember, &last);
        return last;
}

/* The case behind the flow control's second bound: one alert that is never
 * confirmed keeps every later reading of its partition pending, alert or
 * not, and they all become committable the moment it is confirmed. */
static void one_unconfirmed_alert_holds_every_later_reading_pending(void **state) {
        fh_tracker *t = fh_tracker_new();

        (void) state;
        fh_track *stuck = fh_tracker_begin(t, "in", 0, 0);
        fh_track_hold(stuck);            /* its alert, out to the sinks */
        fh_tracker_release(t, stuck);    /* the message itself is handled */
        for (int64_t off = 1; off <= 100000; off++)
                fh_tracker_release(t, fh_tracker_begin(t, "in", 0, off));
        assert_int_equal(fh_tracker_pending(t), 100001);
        assert_int_equal(last_committable(t), -1);
        assert_int_equal(fh_tracker_processed(t, "in", 0), 100001);

        fh_tracker_release(t, stuck);    /* the alert is confirmed */
        assert_int_equal(fh_tracker_pending(t), 0);
        assert_int_equal(last_committable(t), 100001);
        fh_tracker_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(offset_moves_only_when_every_earlier_message_is_released),
                cmocka_unit_test(a_held_message_waits_for_its_last_alert),
                cmocka_unit_test(partitions_are_independent_and_processed_runs_ahead_of_committable),
                cmocka_unit_test(forgotten_partition_keeps_its_pending_tracks_valid),
                cmocka_unit_test(free_accepts_null_and_tracks_still_held),
                cmocka_unit_test(one_unconfirmed_alert_holds_every_later_reading_pending),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
