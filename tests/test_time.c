/* Time utilities: RFC 3339 both ways, durations, offsets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "fenghuo/timeutil.h"

static int parse(const char *s, int64_t *ret_ms, const char **ret_why) {
        return fh_time_parse_rfc3339(s, strlen(s), ret_ms, ret_why);
}

static int64_t parse_ok(const char *s) {
        int64_t ms = 0;
        const char *why = NULL;
        int r = parse(s, &ms, &why);

        if (r != 0)
                fail_msg("%s: %s", s, why);
        return ms;
}

static void assert_rejected_because(const char *s, const char *reason) {
        int64_t ms = 12345;
        const char *why = NULL;

        assert_int_equal(parse(s, &ms, &why), -EINVAL);
        assert_non_null(why);
        assert_string_equal(why, reason);
        assert_int_equal(ms, 12345); /* untouched */
}

static void test_rfc3339_with_an_offset_gives_epoch_milliseconds(void **state) {
        assert_int_equal(parse_ok("2023-07-30T14:05:00+08:00"), INT64_C(1690697100000));
        assert_int_equal(parse_ok("2023-07-30T06:05:00Z"), INT64_C(1690697100000));
        assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
        assert_int_equal(parse_ok("1970-01-01T00:00:00+00:00"), 0);
        assert_int_equal(parse_ok("1970-01-01T00:00:00-00:00"), 0);
        assert_int_equal(parse_ok("1969-12-31T23:59:59.999Z"), -1);
        assert_int_equal(parse_ok("2000-03-01T00:00:00Z"), INT64_C(951868800000));
}

static void test_lower_case_z_and_t_and_a_space_separator_are_accepted(void **state) {
        int64_t ref = parse_ok("2023-07-30T06:05:00Z");

        assert_int_equal(parse_ok("2023-07-30t06:05:00z"), ref);
        assert_int_equal(parse_ok("2023-07-30 06:05:00Z"), ref);
        assert_rejected_because("2023-07-30  06:05:00Z", "expected the time as HH:MM:SS");
        assert_rejected_because("2023-07-30_06:05:00Z", "expected 'T' or a space between date and time");
}

static void test_negative_offsets_move_the_time_later(void **state) {
        assert_int_equal(parse_ok("2023-07-30T02:35:00-03:30"), parse_ok("2023-07-30T06:05:00Z"));
        assert_int_equal(parse_ok("2023-12-31T23:00:00-02:00"), parse_ok("2024-01-01T01:00:00Z"));
}

static void test_fractional_seconds_are_truncated_to_milliseconds(void **state) {
        int64_t base = parse_ok("2023-07-30T06:05:00Z");

        assert_int_equal(parse_ok("2023-07-30T06:05:00.9999Z"), base + 999);
        assert_int_equal(parse_ok("2023-07-30T06:05:00.1Z"), base + 100);
        assert_int_equal(parse_ok("2023-07-30T06:05:00.12Z"), base + 120);
        assert_int_equal(parse_ok("2023-07-30T06:05:00.123Z"), base + 123);
        assert_int_equal(parse_ok("2023-07-30T06:05:00.000999999999999999999999999Z"), base);
        assert_int_equal(parse_ok("1969-12-31T23:59:59.9999Z"), -1);
        assert_rejected_because("2023-07-30T06:05:00.Z", "expected digits after '.'");
}

static void test_leap_days_follow_the_gregorian_rules(void **state) {
        assert_int_equal(parse_ok("2024-02-29T00:00:00Z") + 86400000, parse_ok("2024-03-01T00:00:00Z"));
        parse_ok("2000-02-29T00:00:00Z");
        assert_rejected_because("2023-02-29T00:00:00Z", "day out of range for the month");
        assert_rejected_because("1900-02-29T00:00:00Z", "day out of range for the month");
        assert_rejected_because("2023-04-31T00:00:00Z", "day out of range for the month");
        parse_ok("2023-01-31T00:00:00Z");
}

static void test_each_field_out_of_range_is_named(void **state) {
        assert_rejected_because("2023-13-01T00:00:00Z", "month out of range");
        assert_rejected_because("2023-00-01T00:00:00Z", "month out of range");
        assert_rejected_because("2023-01-00T00:00:00Z", "day out of range");
        assert_rejected_because("2023-01-32T00:00:00Z", "day out of range");
        assert_rejected_because("2023-01-01T24:00:00Z", "hour out of range");
        assert_rejected_because("2023-01-01T00:60:00Z", "minute out of range");
        assert_rejected_because("2023-01-01T00:00:61Z", "second out of range");
        assert_rejected_because("2016-12-31T23:59:60Z", "leap seconds are not supported");
        assert_rejected_because("2023-01-01T00:00:00+24:00", "offset hour out of range");
        assert_rejected_because("2023-01-01T00:00:00+08:60", "offset minute out of range");
        assert_rejected_because("0000-01-01T00:00:00Z", "year out of range (0001-9999)");
}

static void test_malformed_timestamps_say_what_was_expected(void **state) {
        assert_rejected_because("", "expected a date as YYYY-MM-DD");
        assert_rejected_because("yesterday", "expected a date as YYYY-MM-DD");
        assert_rejected_because("23-07-30T00:00:00Z", "expected a date as YYYY-MM-DD");
        assert_rejected_because("2023/07/30T00:00:00Z", "expected a date as YYYY-MM-DD");
        assert_rejected_because("2023-07-30", "missing the time: expected YYYY-MM-DDTHH:MM:SS and an offset");
        assert_rejected_because("2023-07-30T00:00Z", "expected the time as HH:MM:SS");
        assert_rejected_because("2023-07-30T00:00:00", "missing offset (Z, +hh:mm or -hh:mm)");
        assert_rejected_because("2023-07-30T00:00:00+0800", "expected the offset as +hh:mm or -hh:mm");
        assert_rejected_because("2023-07-30T00:00:00+8:00", "expected the offset as +hh:mm or -hh:mm");
        assert_rejected_because("2023-07-30T00:00:00Zjunk", "unexpected characters after the offset");
        assert_rejected_because("2023-07-30T00:00:00+08:00:00", "unexpected characters after the offset");
        assert_rejected_because("2023-07-30T00:00:00+08:00 ", "unexpected characters after the offset");
        assert_rejected_because(" 2023-07-30T00:00:00Z", "expected a date as YYYY-MM-DD");
}

static void test_years_0001_and_9999_are_the_edges_of_the_range(void **state) {
        int64_t ms;
        const char *why;

        assert_int_equal(parse_ok("0001-01-01T00:00:00Z"), FH_TIME_MIN_MS);
        assert_int_equal(parse_ok("0001-01-01T08:00:00+08:00"), FH_TIME_MIN_MS);
        assert_int_equal(parse_ok("9999-12-31T23:59:59.999Z"), FH_TIME_MAX_MS);
        assert_int_equal(parse_ok("9999-12-31T20:59:59.999-03:00"), FH_TIME_MAX_MS);
        assert_int_equal(parse("0001-01-01T00:00:00+00:01", &ms, &why), -EINVAL);
        assert_string_equal(why, "out of range (years 0001-9999 in UTC)");
        assert_int_equal(parse("9999-12-31T23:59:59-00:01", &ms, &why), -EINVAL);
        assert_string_equal(why, "out of range (years 0001-9999 in UTC)");
}

static void test_the_reason_may_be_left_out(void **state) {
        int64_t ms;

        assert_int_equal(parse("2023-13-01T00:00:00Z", &ms, NULL), -EINVAL);
}

static void test_every_prefix_of_a_timestamp_is_rejected_without_reading_past_it(void **state) {
        const char *full = "2023-07-30T14:05:00.123+08:00";
        size_t n = strlen(full);

        for (size_t k = 0; k < n; k++) {
                /* An exact-size heap copy lets ASan catch any read past the end. */
                char *s = malloc(k ? k : 1);
                int64_t ms;
                const char *why = NULL;
                memcpy(s, full, k);
                assert_int_equal(fh_time_parse_rfc3339(s, k, &ms, &why), -EINVAL);
                assert_non_null(why);
                free(s);
        }
}

static void test_days_agree_with_timegm_for_every_day_from_1600_to_2500(void **state) {
        char s[64];
        struct tm first = { .tm_year = 1600 - 1900, .tm_mon = 0, .tm_mday = 1 };
        struct tm last = { .tm_year = 2500 - 1900, .tm_mon = 0, .tm_mday = 1 };
        time_t t = timegm(&first), end = timegm(&last);

        /* Noon, so that every day is a different date string. */
        for (t += 43200; t < end; t += 86400) {
                struct tm d;
                gmtime_r(&t, &d);
                snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ", d.tm_year + 1900, d.tm_mon + 1,
                         d.tm_mday, d.tm_hour, d.tm_min, d.tm_sec);
                assert_int_equal(parse_ok(s), (int64_t)t * 1000);
        }
}

static void test_formatting_prints_milliseconds_only_when_not_zero(void **state) {
        char buf[FH_TIME_RFC3339_MAX];

        assert_int_equal(fh_time_format_rfc3339(INT64_C(1690697100000), 480, buf), 25);
        assert_string_equal(buf, "2023-07-30T14:05:00+08:00");
        fh_time_format_rfc3339(INT64_C(1690697100123), 480, buf);
        assert_string_equal(buf, "2023-07-30T14:05:00.123+08:00");
        fh_time_format_rfc3339(INT64_C(1690697100007), 0, buf);
        assert_string_equal(buf, "2023-07-30T06:05:00.007+00:00");
        fh_time_format_rfc3339(-1, 0, buf);
        assert_string_equal(buf, "1969-12-31T23:59:59.999+00:00");
        fh_time_format_rfc3339(INT64_C(1690697100000), -210, buf);
        assert_string_equal(buf, "2023-07-30T02:35:00-03:30");
        fh_time_format_rfc3339(FH_TIME_MIN_MS, 0, buf);
        assert_string_equal(buf, "0001-01-01T00:00:00+00:00");
        fh_time_format_rfc3339(FH_TIME_MAX_MS, 0, buf);
        assert_string_equal(buf, "9999-12-31T23:59:59.999+00:00");
}

static void test_formatting_the_local_time_drops_seconds(void **state) {
        char buf[FH_TIME_LOCAL_MAX];

        assert_int_equal(fh_time_format_local(INT64_C(1690697159999), 480, buf), 16);
        assert_string_equal(buf, "2023-07-30 14:05");
        fh_time_format_local(0, -60, buf);
        assert_string_equal(buf, "1969-12-31 23:00");
}

static void test_formatting_never_overflows_for_any_time_or_offset(void **state) {
        char buf[FH_TIME_RFC3339_MAX];
        char local[FH_TIME_LOCAL_MAX];
        const int64_t times[] = { INT64_MIN, INT64_MIN + 1, FH_TIME_MIN_MS - 1, FH_TIME_MIN_MS,
                                  FH_TIME_MAX_MS, FH_TIME_MAX_MS + 1, INT64_MAX };
        const int offsets[] = { INT32_MIN, -100000, -1439, 0, 1439, 100000, INT32_MAX };

        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                for (size_t j = 0; j < sizeof(offsets) / sizeof(offsets[0]); j++) {
                        assert_true(fh_time_format_rfc3339(times[i], offsets[j], buf) < sizeof(buf));
                        assert_int_equal(strlen(buf), fh_time_format_rfc3339(times[i], offsets[j], buf));
                        assert_true(fh_time_format_local(times[i], offsets[j], local) < sizeof(local));
                }
        }
        /* Out-of-range times are shown as the nearest edge. */
        fh_time_format_rfc3339(INT64_MIN, 0, buf);
        assert_string_equal(buf, "0001-01-01T00:00:00+00:00");
        fh_time_format_rfc3339(INT64_MAX, 0, buf);
        assert_string_equal(buf, "9999-12-31T23:59:59.999+00:00");
}

static void test_formatted_times_parse_back_to_the_same_milliseconds(void **state) {
        char buf[FH_TIME_RFC3339_MAX];
        const int offsets[] = { 0, 480, -210, 345, -720, 840 };
        uint64_t x = 88172645463325252ULL;

        for (int i = 0; i < 200000; i++) {
                int64_t ms, back = 0;
                const char *why = NULL;
                int off = offsets[i % 6];
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ms = FH_TIME_MIN_MS + 14 * 3600000 +
                     (int64_t)(x % (uint64_t)(FH_TIME_MAX_MS - FH_TIME_MIN_MS - 28 * 3600000));
                fh_time_format_rfc3339(ms, off, buf);
                if (fh_time_parse_rfc3339(buf, strlen(buf), &back, &why) != 0)
                        fail_msg("%s: %s", buf, why);
                assert_int_equal(back, ms);
        }
}

static void test_durations_are_an_integer_and_one_unit(void **state) {
        int64_t ms = -1;

        assert_int_equal(fh_duration_parse("0s", 2, &ms), 0);
        assert_int_equal(ms, 0);
        assert_int_equal(fh_duration_parse("90s", 3, &ms), 0);
        assert_int_equal(ms, 90000);
        assert_int_equal(fh_duration_parse("30m", 3, &ms), 0);
        assert_int_equal(ms, 1800000);
        assert_int_equal(fh_duration_parse("3h", 2, &ms), 0);
        assert_int_equal(ms, 10800000);
        assert_int_equal(fh_duration_parse("1d", 2, &ms), 0);
        assert_int_equal(ms, 86400000);
        assert_int_equal(fh_duration_parse("012h", 4, &ms), 0);
        assert_int_equal(ms, 12 * 3600000);
        /* Only the given length is read. */
        assert_int_equal(fh_duration_parse("5mjunk", 2, &ms), 0);
        assert_int_equal(ms, 300000);
}

static void test_durations_without_digits_or_unit_or_with_a_sign_are_invalid(void **state) {
        const char *bad[] = { "", "s", "5", "-5s", "+5s", "5 s", " 5s", "5s ", "5S", "5ms", "5w",
                              "1.5h", "5x", "h1", "0x10s" };
        int64_t ms = 77;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (fh_duration_parse(bad[i], strlen(bad[i]), &ms) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_int_equal(ms, 77);
        }
}

static void test_durations_over_a_hundred_years_are_invalid(void **state) {
        int64_t ms = 0;

        assert_int_equal(fh_duration_parse("36525d", 6, &ms), 0);
        assert_int_equal(ms, INT64_C(36525) * 86400000);
        assert_int_equal(fh_duration_parse("876600h", 7, &ms), 0);
        assert_int_equal(fh_duration_parse("36526d", 6, &ms), -EINVAL);
        assert_int_equal(fh_duration_parse("876601h", 7, &ms), -EINVAL);
        assert_int_equal(fh_duration_parse("3155760001s", 11, &ms), -EINVAL);
        assert_int_equal(fh_duration_parse("99999999999999999999999999s", 27, &ms), -EINVAL);
        assert_int_equal(fh_duration_parse("18446744073709551617d", 21, &ms), -EINVAL);
}

static void test_durations_format_in_the_largest_exact_unit(void **state) {
        char buf[32];

        assert_int_equal(fh_duration_format(90000, buf, sizeof(buf)), 3);
        assert_string_equal(buf, "90s");
        fh_duration_format(3600000, buf, sizeof(buf));
        assert_string_equal(buf, "1h");
        fh_duration_format(0, buf, sizeof(buf));
        assert_string_equal(buf, "0s");
        fh_duration_format(120000, buf, sizeof(buf));
        assert_string_equal(buf, "2m");
        fh_duration_format(86400000 * 2, buf, sizeof(buf));
        assert_string_equal(buf, "2d");
        fh_duration_format(90 * 60000, buf, sizeof(buf));
        assert_string_equal(buf, "90m");
        fh_duration_format(1500, buf, sizeof(buf));
        assert_string_equal(buf, "1500ms");
        fh_duration_format(-60000, buf, sizeof(buf));
        assert_string_equal(buf, "-1m");
        fh_duration_format(INT64_MIN, buf, sizeof(buf));
        assert_string_equal(buf, "-9223372036854775808ms");
}

static void test_duration_formatting_truncates_like_snprintf(void **state) {
        char buf[4] = "xxx";

        assert_int_equal(fh_duration_format(3600000 * 25, buf, sizeof(buf)), 3);
        assert_string_equal(buf, "25h");
        assert_int_equal(fh_duration_format(INT64_C(86400000) * 1234, buf, sizeof(buf)), 5);
        assert_string_equal(buf, "123");
        assert_int_equal(fh_duration_format(1000, buf, 0), 2);
        assert_string_equal(buf, "123");
}

static void test_formatted_durations_parse_back(void **state) {
        const int64_t v[] = { 0, 1000, 59000, 60000, 61000, 3600000, 5400000, 86400000, 90061000,
                              INT64_C(36525) * 86400000 };
        char buf[32];

        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                int64_t back = -1;
                size_t n = fh_duration_format(v[i], buf, sizeof(buf));
                assert_int_equal(fh_duration_parse(buf, n, &back), 0);
                assert_int_equal(back, v[i]);
        }
}

static void test_offsets_parse_to_minutes(void **state) {
        int m = 99;

        assert_int_equal(fh_offset_parse("Z", 1, &m), 0);
        assert_int_equal(m, 0);
        assert_int_equal(fh_offset_parse("+08:00", 6, &m), 0);
        assert_int_equal(m, 480);
        assert_int_equal(fh_offset_parse("-03:30", 6, &m), 0);
        assert_int_equal(m, -210);
        assert_int_equal(fh_offset_parse("+05:45", 6, &m), 0);
        assert_int_equal(m, 345);
        assert_int_equal(fh_offset_parse("-00:00", 6, &m), 0);
        assert_int_equal(m, 0);
}

static void test_malformed_offsets_are_invalid(void **state) {
        const char *bad[] = { "", "08:00", "+8:00", "+0800", "+08:0", "+24:00", "+08:60", "+08:00 ",
                              "UTC", "ZZ", "+08", "−08:00" };
        int m = 99;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (fh_offset_parse(bad[i], strlen(bad[i]), &m) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_int_equal(m, 99);
        }
}

static void test_floor_division_rounds_towards_minus_infinity(void **state) {
        assert_int_equal(fh_floor_div(7, 2), 3);
        assert_int_equal(fh_floor_div(-7, 2), -4);
        assert_int_equal(fh_floor_div(-8, 2), -4);
        assert_int_equal(fh_floor_div(-1, 60000), -1);
        assert_int_equal(fh_floor_div(0, 60000), 0);
        assert_int_equal(fh_floor_div(7, -2), -4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rfc3339_with_an_offset_gives_epoch_milliseconds),
                cmocka_unit_test(test_lower_case_z_and_t_and_a_space_separator_are_accepted),
                cmocka_unit_test(test_negative_offsets_move_the_time_later),
                cmocka_unit_test(test_fractional_seconds_are_truncated_to_milliseconds),
                cmocka_unit_test(test_leap_days_follow_the_gregorian_rules),
                cmocka_unit_test(test_each_field_out_of_range_is_named),
                cmocka_unit_test(test_malformed_timestamps_say_what_was_expected),
                cmocka_unit_test(test_years_0001_and_9999_are_the_edges_of_the_range),
                cmocka_unit_test(test_the_reason_may_be_left_out),
                cmocka_unit_test(test_every_prefix_of_a_timestamp_is_rejected_without_reading_past_it),
                cmocka_unit_test(test_days_agree_with_timegm_for_every_day_from_1600_to_2500),
                cmocka_unit_test(test_formatting_prints_milliseconds_only_when_not_zero),
                cmocka_unit_test(test_formatting_the_local_time_drops_seconds),
                cmocka_unit_test(test_formatting_never_overflows_for_any_time_or_offset),
                cmocka_unit_test(test_formatted_times_parse_back_to_the_same_milliseconds),
                cmocka_unit_test(test_durations_are_an_integer_and_one_unit),
                cmocka_unit_test(test_durations_without_digits_or_unit_or_with_a_sign_are_invalid),
                cmocka_unit_test(test_durations_over_a_hundred_years_are_invalid),
                cmocka_unit_test(test_durations_format_in_the_largest_exact_unit),
                cmocka_unit_test(test_duration_formatting_truncates_like_snprintf),
                cmocka_unit_test(test_formatted_durations_parse_back),
                cmocka_unit_test(test_offsets_parse_to_minutes),
                cmocka_unit_test(test_malformed_offsets_are_invalid),
                cmocka_unit_test(test_floor_division_rounds_towards_minus_infinity),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
