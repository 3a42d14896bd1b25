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

static void offset_moves_only_when_every_earlier_message_is_released(void **state) {
        fh_tracker *t = fh_tracker_new();
        fh_track *a = fh_tracker_begin(t, "rain", 0, 10);
        fh_track *b = fh_tracker_begin(t, "rain", 0, 11);
        fh_track *c = fh_tracker_begin(t, "rain", 0, 12);
        seen s = { 0 };

        assert_int_equal(fh_tracker_pending(t), 3);
        fh_tracker_release(t, b);      /* finished first, but 10 is still open */
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 0);
        fh_tracker_release(t, a);      /* 10 and 11 done: commit 12 */
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.topic, "rain");
        assert_int_equal(s.offset, 12);
        fh_tracker_collect(t, record, &s);   /* nothing new: not reported again */
        assert_int_equal(s.n, 1);
        fh_tracker_release(t, c);
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 2);
        assert_int_equal(s.offset, 13);
        assert_int_equal(fh_tracker_pending(t), 0);
        assert_null(fh_tracker_free(t));
}

static void a_held_message_waits_for_its_last_alert(void **state) {
        fh_tracker *t = fh_tracker_new();
        fh_track *a = fh_tracker_begin(t, "rain", 3, 0);
        seen s = { 0 };

        fh_track_hold(a);              /* one alert in flight */
        fh_tracker_release(t, a);      /* the engine is done with it */
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 0);
        fh_tracker_release(t, a);      /* the alert is acknowledged */
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.partition, 3);
        assert_int_equal(s.offset, 1);
        fh_tracker_free(t);
}

static void partitions_are_independent_and_processed_runs_ahead_of_committable(void **state) {
        fh_tracker *t = fh_tracker_new();
        fh_track *a = fh_tracker_begin(t, "rain", 0, 5);
        fh_track *b = fh_tracker_begin(t, "rain", 1, 7);
        fh_track *c = fh_tracker_begin(t, "bridge", 0, 2);
        seen s = { 0 };

        assert_int_equal(fh_tracker_processed(t, "rain", 0), 6);
        assert_int_equal(fh_tracker_processed(t, "rain", 1), 8);
        assert_int_equal(fh_tracker_processed(t, "bridge", 0), 3);
        assert_int_equal(fh_tracker_processed(t, "bridge", 1), -1);
        fh_tracker_release(t, b);
        fh_tracker_collect(t, record, &s);
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
        fh_track *a = fh_tracker_begin(t, "rain", 0, 5);
        seen s = { 0 };

        fh_tracker_forget(t, "rain", 0);
        assert_int_equal(fh_tracker_processed(t, "rain", 0), -1);
        assert_int_equal(fh_tracker_pending(t), 1);
        fh_tracker_release(t, a);      /* must not touch freed memory (ASan) */
        fh_tracker_collect(t, record, &s);
        assert_int_equal(s.n, 0);      /* a revoked partition is not committed */
        assert_int_equal(fh_tracker_pending(t), 0);
        fh_tracker_forget(t, "rain", 9);   /* unknown: nothing happens */
        fh_tracker_free(t);
}

static void free_accepts_null_and_tracks_still_held(void **state) {
        fh_tracker *t = fh_tracker_new();

        assert_null(fh_tracker_free(NULL));
        fh_tracker_begin(t, "rain", 0, 1);
        fh_tracker_begin(t, "rain", 1, 1);
        fh_tracker_forget(t, "rain", 1);
        assert_null(fh_tracker_free(t));   /* nothing leaks (ASan) */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(offset_moves_only_when_every_earlier_message_is_released),
                cmocka_unit_test(a_held_message_waits_for_its_last_alert),
                cmocka_unit_test(partitions_are_independent_and_processed_runs_ahead_of_committable),
                cmocka_unit_test(forgotten_partition_keeps_its_pending_tracks_valid),
                cmocka_unit_test(free_accepts_null_and_tracks_still_held),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
