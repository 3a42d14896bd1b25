/* The record that moves a partition's state between instances
 * (src/daemon/handoff.c): what one encodes the other decodes, and a record
 * that is not one is refused. Reading the state topic is covered by the
 * recovery suite. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "handoff.h"

static void key_names_group_topic_and_partition(void **state) {
        char key[128];

        fh_handoff_key(key, sizeof(key), "fenghuo", "miyun.sensors.rain", 3);
        assert_string_equal(key, "fenghuo|miyun.sensors.rain|3");
}

static void decode_returns_what_encode_wrote(void **state) {
        fh_buf b = FH_BUF_NULL;
        fh_offsets wm = { 0 }, got = { 0 };
        const char snap[] = "engine snapshot bytes";
        const void *p;
        size_t n;
        int64_t pos;

        fh_offsets_add(&wm, "fenghuo.alerts", 0, 120);
        fh_offsets_add(&wm, "fenghuo.alerts", 1, 7);
        fh_handoff_encode(&b, 4711, &wm, snap, sizeof(snap));
        assert_int_equal(fh_handoff_decode(b.data, b.len, &pos, &got, &p, &n), 0);
        assert_int_equal(pos, 4711);
        assert_int_equal(got.n, 2);
        assert_int_equal(fh_offsets_get(&got, "fenghuo.alerts", 0), 120);
        assert_int_equal(fh_offsets_get(&got, "fenghuo.alerts", 1), 7);
        assert_int_equal(n, sizeof(snap));
        assert_memory_equal(p, snap, sizeof(snap));
        fh_offsets_clear(&got);
        fh_offsets_clear(&wm);
        fh_buf_free(&b);
}

static void every_truncation_and_extension_is_refused(void **state) {
        fh_buf b = FH_BUF_NULL;
        fh_offsets wm = { 0 }, got = { 0 };
        const void *p = NULL;
        size_t n = 0;
        int64_t pos = -1;

        fh_offsets_add(&wm, "alerts", 0, 1);
        fh_handoff_encode(&b, 1, &wm, "snap", 4);
        for (size_t len = 0; len < b.len; len++)
                assert_int_equal(fh_handoff_decode(b.data, len, &pos, &got, &p, &n), -EBADMSG);
        fh_buf_putc(&b, 'x');
        assert_int_equal(fh_handoff_decode(b.data, b.len, &pos, &got, &p, &n), -EBADMSG);
        /* Outputs untouched on failure. */
        assert_int_equal(pos, -1);
        assert_int_equal(got.n, 0);
        assert_null(p);
        fh_offsets_clear(&wm);
        fh_buf_free(&b);
}

static void foreign_record_and_absurd_counts_are_refused(void **state) {
        fh_buf b = FH_BUF_NULL;
        fh_offsets got = { 0 };
        const void *p;
        size_t n;
        int64_t pos;

        assert_int_equal(fh_handoff_decode("FHSTATE2\0\0\0\0", 12, &pos, &got, &p, &n), -EBADMSG);
        /* A count of four billion watermarks in a record of a few bytes. */
        fh_buf_append(&b, "FHHAND01", 8);
        fh_buf_u64(&b, 1);
        fh_buf_u32(&b, UINT32_MAX);
        assert_int_equal(fh_handoff_decode(b.data, b.len, &pos, &got, &p, &n), -EBADMSG);
        fh_buf_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(key_names_group_topic_and_partition),
                cmocka_unit_test(decode_returns_what_encode_wrote),
                cmocka_unit_test(every_truncation_and_extension_is_refused),
                cmocka_unit_test(foreign_record_and_absurd_counts_are_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
