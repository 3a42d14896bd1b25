/* The reading parser (SPEC §1): what it accepts, and for everything else
 * the reason and the one-line text a user sees. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"

/* The typical line, and its members for building lines around them. */
#define GOOD_MEMBERS "\"sensor\":\"MY-RG-0012\",\"ts\":\"2023-07-30T14:05:00+08:00\",\"values\":{\"rain_mm\":4.5}}"
#define GOOD "{" GOOD_MEMBERS

/* Parses an exact-size heap copy, so that ASan sees any read past the end. */
static fh_reject parse_n(const char *s, size_t n, fh_reading *r, char *why, size_t why_len) {
        char *copy = malloc(n ? n : 1);
        fh_reject e;

        memcpy(copy, s, n);
        e = fh_reading_parse(copy, n, r, why, why_len);
        free(copy);
        return e;
}

static void assert_one_printable_line(const char *why) {
        for (const char *c = why; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                        fail_msg("reason has byte 0x%02x: %s", (unsigned char)*c, why);
}

static fh_reading accept(const char *s) {
        fh_reading r;
        char why[256];
        fh_reject e = parse_n(s, strlen(s), &r, why, sizeof(why));

        if (e != FH_REJECT_NONE)
                fail_msg("rejected %s: %s (%s)", s, fh_reject_name(e), why);
        assert_string_equal(why, "");
        return r;
}

/* The reason code, and the exact text when `text` is not NULL. */
static void reject_n(const char *s, size_t n, fh_reject want, const char *text) {
        fh_reading r;
        char why[256];
        fh_reject e = parse_n(s, n, &r, why, sizeof(why));

        if (e != want)
                fail_msg("%.*s: got %s (%s), want %s", (int)FH_MIN(n, (size_t)200), s, fh_reject_name(e), why,
                         fh_reject_name(want));
        assert_true(strlen(why) > 0);
        assert_one_printable_line(why);
        if (text)
                assert_string_equal(why, text);
}

static void reject(const char *s, fh_reject want, const char *text) {
        reject_n(s, strlen(s), want, text);
}

/* A line with the given values object and a good sensor and ts. */
static void with_values(char *buf, size_t n, const char *values) {
        snprintf(buf, n, "{\"sensor\":\"S1\",\"ts\":0,\"values\":%s}", values);
}

static double one_value(const char *number) {
        char line[2048];
        fh_reading r;

        snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":%s}}", number);
        r = accept(line);
        assert_int_equal(r.n_values, 1);
        return r.values[0].v;
}

static bool same_double(double a, double b) {
        return memcmp(&a, &b, sizeof(a)) == 0;
}

static void assert_value_is_strtod(const char *number) {
        double want = strtod(number, NULL);
        double got = one_value(number);

        if (!same_double(got, want))
                fail_msg("%s: got %.17g, strtod %.17g", number, got, want);
}

/* ---- Accepted readings ---------------------------------------------- */

static void test_a_typical_reading_is_accepted_with_all_its_fields(void **state) {
        fh_reading r = accept(GOOD);

        assert_string_equal(r.sensor, "MY-RG-0012");
        assert_int_equal(r.sensor_len, 10);
        assert_int_equal(r.ts_ms, INT64_C(1690697100000));
        assert_int_equal(r.n_values, 1);
        assert_string_equal(r.values[0].name, "rain_mm");
        assert_int_equal(r.values[0].name_len, 7);
        assert_true(r.values[0].v == 4.5);
}

static void test_member_order_does_not_matter(void **state) {
        fh_reading r = accept("{\"values\":{\"b\":2,\"a\":1},\"ts\":\"2023-07-30T06:05:00Z\",\"sensor\":\"X\"}");

        assert_string_equal(r.sensor, "X");
        assert_int_equal(r.ts_ms, INT64_C(1690697100000));
        assert_int_equal(r.n_values, 2);
        /* Values stay in message order. */
        assert_string_equal(r.values[0].name, "b");
        assert_string_equal(r.values[1].name, "a");
}

static void test_unknown_members_are_ignored_however_nested(void **state) {
        fh_reading r = accept("{\"id\":7,\"sensor\":\"S1\",\"meta\":{\"a\":[1,2.5e3,{\"b\":null}],\"c\":\"\\u00e9\\n\","
                              "\"d\":[],\"e\":{}},\"ts\":0,\"flags\":[true,false,null,\"x\",[[]]],"
                              "\"values\":{\"v\":1},\"meta\":\"duplicate unknown keys are fine\"}");

        assert_string_equal(r.sensor, "S1");
        assert_int_equal(r.n_values, 1);
}

static void test_whitespace_around_and_inside_the_object_and_a_final_cr_are_allowed(void **state) {
        fh_reading r = accept(" \t{ \"sensor\" : \"S1\" ,\n\"ts\"\t:\t0 , \"values\" : { \"v\" : -1 } } \r");

        assert_string_equal(r.sensor, "S1");
        assert_true(r.values[0].v == -1);
        accept(GOOD "\r");
        accept(GOOD "\r\n");
}

static void test_escaped_keys_and_strings_are_compared_after_unescaping(void **state) {
        fh_reading r = accept("{\"\\u0073ensor\":\"MY\\u002dRG\\u002e1\",\"t\\u0073\":\"2023-07-30T06:05:00\\u005a\","
                              "\"values\":{\"rain\\u005fmm\":1}}");

        assert_string_equal(r.sensor, "MY-RG.1");
        assert_int_equal(r.sensor_len, 7);
        assert_int_equal(r.ts_ms, INT64_C(1690697100000));
        assert_string_equal(r.values[0].name, "rain_mm");
}

static void test_sixty_four_characters_and_thirty_two_values_are_the_limits(void **state) {
        char line[4096];
        char values[2048];
        size_t n = 0;
        fh_reading r;

        n += (size_t)snprintf(values + n, sizeof(values) - n, "{");
        for (int i = 0; i < 32; i++)
                n += (size_t)snprintf(values + n, sizeof(values) - n, "%s\"f%d\":%d", i ? "," : "", i, i);
        snprintf(values + n, sizeof(values) - n, "}");
        snprintf(line, sizeof(line), "{\"sensor\":\"%s\",\"ts\":0,\"values\":%s}",
                 "0123456789012345678901234567890123456789012345678901234567890123", values);
        r = accept(line);
        assert_int_equal(r.sensor_len, 64);
        assert_int_equal(r.n_values, 32);
        assert_string_equal(r.values[31].name, "f31");
        assert_true(r.values[31].v == 31);

        with_values(line, sizeof(line), "{\"abcdefghijklmnopqrstuvwxyz_01234\":1}");
        r = accept(line);
        assert_int_equal(r.values[0].name_len, 32);
        assert_string_equal(r.values[0].name, "abcdefghijklmnopqrstuvwxyz_01234");
}

static void test_every_allowed_sensor_character_is_accepted(void **state) {
        fh_reading r = accept("{\"sensor\":\"AZaz09._:-\",\"ts\":0,\"values\":{\"v\":1}}");

        assert_string_equal(r.sensor, "AZaz09._:-");
}

/* ---- Timestamps ----------------------------------------------------- */

static int64_t ts_of(const char *ts_json) {
        char line[2048];

        snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":%s,\"values\":{\"v\":1}}", ts_json);
        return accept(line).ts_ms;
}

static void reject_ts(const char *ts_json, const char *text) {
        char line[512];

        snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":%s,\"values\":{\"v\":1}}", ts_json);
        reject(line, FH_REJECT_BAD_TIMESTAMP, text);
}

static void test_timestamps_accept_every_rfc3339_form(void **state) {
        int64_t ref = INT64_C(1690697100000);

        assert_int_equal(ts_of("\"2023-07-30T14:05:00+08:00\""), ref);
        assert_int_equal(ts_of("\"2023-07-30T06:05:00Z\""), ref);
        assert_int_equal(ts_of("\"2023-07-30t06:05:00z\""), ref);
        assert_int_equal(ts_of("\"2023-07-30 06:05:00Z\""), ref);
        assert_int_equal(ts_of("\"2023-07-30T02:35:00-03:30\""), ref);
        assert_int_equal(ts_of("\"2023-07-30T06:05:00.9999Z\""), ref + 999);
        assert_int_equal(ts_of("\"2024-02-29T00:00:00Z\""), INT64_C(1709164800000));
        assert_int_equal(ts_of("\"0001-01-01T00:00:00Z\""), FH_TIME_MIN_MS);
        assert_int_equal(ts_of("\"9999-12-31T23:59:59.999Z\""), FH_TIME_MAX_MS);
}

static void test_timestamps_as_epoch_milliseconds_are_accepted_up_to_the_range_limits(void **state) {
        assert_int_equal(ts_of("1690697100000"), INT64_C(1690697100000));
        assert_int_equal(ts_of("0"), 0);
        assert_int_equal(ts_of("-0"), 0);
        assert_int_equal(ts_of("-1"), -1);
        assert_int_equal(ts_of("-62135596800000"), FH_TIME_MIN_MS);
        assert_int_equal(ts_of("253402300799999"), FH_TIME_MAX_MS);
        reject_ts("-62135596800001", "bad timestamp: -62135596800001: out of range (years 0001-9999)");
        reject_ts("253402300800000", "bad timestamp: 253402300800000: out of range (years 0001-9999)");
        reject_ts("99999999999999999999999999", NULL);
        reject_ts("-9223372036854775808", NULL);
        reject_ts("18446744073709551616", NULL);
}

static void test_timestamps_that_are_not_integers_or_strings_are_bad(void **state) {
        reject_ts("1690697100000.0", "bad timestamp: 1690697100000.0: epoch milliseconds must be an integer");
        reject_ts("1.6906971e12", "bad timestamp: 1.6906971e12: epoch milliseconds must be an integer");
        reject_ts("1e3", NULL);
        reject_ts("null", "bad timestamp: null, expected an RFC 3339 string or epoch milliseconds");
        reject_ts("true", NULL);
        reject_ts("[1690697100000]", "bad timestamp: an array, expected an RFC 3339 string or epoch milliseconds");
        reject_ts("{\"ms\":1}", NULL);
        reject_ts("1234567890123456789012345678901234567890.5",
                  "bad timestamp: 1234567890123456789012345678901234567890...: epoch milliseconds must be an integer");
}

static void test_bad_timestamp_strings_quote_the_text_and_name_the_problem(void **state) {
        reject_ts("\"2023-13-01T00:00:00Z\"", "bad timestamp: \"2023-13-01T00:00:00Z\": month out of range");
        reject_ts("\"2023-02-29T00:00:00Z\"", "bad timestamp: \"2023-02-29T00:00:00Z\": day out of range for the month");
        reject_ts("\"2023-07-30T14:05:00\"", "bad timestamp: \"2023-07-30T14:05:00\": missing offset (Z, +hh:mm or -hh:mm)");
        reject_ts("\"2016-12-31T23:59:60Z\"", "bad timestamp: \"2016-12-31T23:59:60Z\": leap seconds are not supported");
        reject_ts("\"\"", "bad timestamp: \"\": expected a date as YYYY-MM-DD");
        reject_ts("\"0001-01-01T00:00:00+00:01\"", NULL);
        reject_ts("\"10000-01-01T00:00:00Z\"", NULL);
        reject_ts("\"2023-07-30T14:05:00.12345678901234567890123456789+08:00junk\"",
                  "bad timestamp: \"2023-07-30T14:05:00.12345678901234567890\"...: unexpected characters after the offset");
        reject_ts("\"2023-07-30T14:05:00\\u0000Z\"", "bad timestamp: \"2023-07-30T14:05:00\\x00Z\": missing offset (Z, +hh:mm or -hh:mm)");
}

static void test_timestamps_with_escapes_are_decoded_and_capped(void **state) {
        char line[1024];
        char ts[600];
        size_t n = 0;

        /* Any length of fraction when the string is plain... */
        n += (size_t)snprintf(ts + n, sizeof(ts) - n, "\"2023-07-30T06:05:00.");
        for (int i = 0; i < 500; i++)
                ts[n++] = '5';
        snprintf(ts + n, sizeof(ts) - n, "Z\"");
        assert_int_equal(ts_of(ts), INT64_C(1690697100555));
        /* ...but an escaped one is only decoded up to 128 bytes. */
        n = (size_t)snprintf(ts, sizeof(ts), "\"\\u0032023-07-30T06:05:00.");
        for (int i = 0; i < 500; i++)
                ts[n++] = '5';
        snprintf(ts + n, sizeof(ts) - n, "Z\"");
        snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":%s,\"values\":{\"v\":1}}", ts);
        reject(line, FH_REJECT_BAD_TIMESTAMP, "bad timestamp: \"2023-07-30T06:05:00.55555555555555555555\"...: too long");
        assert_int_equal(ts_of("\"\\u0032023-07-30T06:05:00.5Z\""), INT64_C(1690697100500));
}

/* ---- Sensor --------------------------------------------------------- */

static void reject_sensor(const char *sensor_json, const char *text) {
        char line[512];

        snprintf(line, sizeof(line), "{\"sensor\":%s,\"ts\":0,\"values\":{\"v\":1}}", sensor_json);
        reject(line, FH_REJECT_BAD_SENSOR, text);
}

static void test_sensors_outside_the_id_alphabet_are_bad(void **state) {
        reject_sensor("\"MY RG\"", "bad sensor: \"MY RG\": only A-Z a-z 0-9 . _ : - are allowed");
        reject_sensor("\"MY/RG\"", NULL);
        reject_sensor("\"石城\"", "bad sensor: \"\\xe7\\x9f\\xb3\\xe5\\x9f\\x8e\": only A-Z a-z 0-9 . _ : - are allowed");
        reject_sensor("\"a\\nb\"", "bad sensor: \"a\\x0ab\": only A-Z a-z 0-9 . _ : - are allowed");
        reject_sensor("\"a\\u0000\"", "bad sensor: \"a\\x00\": only A-Z a-z 0-9 . _ : - are allowed");
        reject_sensor("\"a\\\"b\"", "bad sensor: \"a\\\"b\": only A-Z a-z 0-9 . _ : - are allowed");
        reject_sensor("\"\"", "bad sensor: empty string");
}

static void test_sensors_over_sixty_four_characters_are_bad_and_quoted_truncated(void **state) {
        reject_sensor("\"01234567890123456789012345678901234567890123456789012345678901234\"",
                      "bad sensor: \"0123456789012345678901234567890123456789\"...: longer than 64 characters");
}

static void test_sensors_that_are_not_strings_are_bad(void **state) {
        reject_sensor("12", "bad sensor: a number, expected a string");
        reject_sensor("null", "bad sensor: null, expected a string");
        reject_sensor("[\"S1\"]", "bad sensor: an array, expected a string");
        reject_sensor("{\"id\":\"S1\"}", "bad sensor: an object, expected a string");
        reject_sensor("false", "bad sensor: a boolean, expected a string");
}

/* ---- Values --------------------------------------------------------- */

static void reject_values(const char *values, fh_reject want, const char *text) {
        char line[8192];

        with_values(line, sizeof(line), values);
        reject(line, want, text);
}

static void test_values_that_are_not_a_non_empty_object_are_bad(void **state) {
        reject_values("[1]", FH_REJECT_BAD_VALUES, "bad values: an array, expected an object of numbers");
        reject_values("4.5", FH_REJECT_BAD_VALUES, "bad values: a number, expected an object of numbers");
        reject_values("null", FH_REJECT_BAD_VALUES, NULL);
        reject_values("{}", FH_REJECT_BAD_VALUES, "bad values: empty object, expected at least one value");
        reject_values("{ \n }", FH_REJECT_BAD_VALUES, NULL);
}

static void test_more_than_thirty_two_values_are_bad(void **state) {
        char values[2048];
        size_t n = 0;

        n += (size_t)snprintf(values + n, sizeof(values) - n, "{");
        for (int i = 0; i < 33; i++)
                n += (size_t)snprintf(values + n, sizeof(values) - n, "%s\"f%d\":%d", i ? "," : "", i, i);
        snprintf(values + n, sizeof(values) - n, "}");
        reject_values(values, FH_REJECT_BAD_VALUES, "bad values: more than 32 members");
}

static void test_field_names_must_be_short_lower_case_identifiers(void **state) {
        reject_values("{\"Rain\":1}", FH_REJECT_BAD_VALUES, "bad values: field name \"Rain\" must match [a-z][a-z0-9_]{0,31}");
        reject_values("{\"1a\":1}", FH_REJECT_BAD_VALUES, NULL);
        reject_values("{\"_a\":1}", FH_REJECT_BAD_VALUES, NULL);
        reject_values("{\"a-b\":1}", FH_REJECT_BAD_VALUES, NULL);
        reject_values("{\"\":1}", FH_REJECT_BAD_VALUES, "bad values: field name \"\" must match [a-z][a-z0-9_]{0,31}");
        reject_values("{\"abcdefghijklmnopqrstuvwxyz_012345\":1}", FH_REJECT_BAD_VALUES, NULL);
        reject_values("{\"abcdefghijklmnopqrstuvwxyz_0123456789abcdefghijklmnop\":1}", FH_REJECT_BAD_VALUES,
                      "bad values: field name \"abcdefghijklmnopqrstuvwxyz_0123456789abc\"... must match "
                      "[a-z][a-z0-9_]{0,31}");
        reject_values("{\"r\\u00e9\":1}", FH_REJECT_BAD_VALUES, "bad values: field name \"r\\xc3\\xa9\" must match "
                                                               "[a-z][a-z0-9_]{0,31}");
}

static void test_duplicate_field_names_are_bad(void **state) {
        reject_values("{\"a\":1,\"b\":2,\"a\":3}", FH_REJECT_BAD_VALUES, "bad values: duplicate field \"a\"");
        reject_values("{\"a\":1,\"\\u0061\":3}", FH_REJECT_BAD_VALUES, NULL);
}

static void test_values_that_are_not_numbers_are_bad(void **state) {
        reject_values("{\"rain_mm\":\"4.5\"}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": a string, expected a number");
        reject_values("{\"rain_mm\":null}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": null, expected a number");
        reject_values("{\"rain_mm\":true}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": a boolean, expected a number");
        reject_values("{\"rain_mm\":{\"v\":1}}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": an object, expected a number");
        reject_values("{\"rain_mm\":[1]}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": an array, expected a number");
        reject_values("{\"a\":1,\"rain_mm\":[1]}", FH_REJECT_BAD_VALUE, NULL);
}

static void test_numbers_too_large_for_a_double_are_not_finite(void **state) {
        reject_values("{\"rain_mm\":1e999}", FH_REJECT_BAD_VALUE, "bad value for \"rain_mm\": not a finite number");
        reject_values("{\"rain_mm\":1e309}", FH_REJECT_BAD_VALUE, NULL);
        reject_values("{\"rain_mm\":-1e309}", FH_REJECT_BAD_VALUE, NULL);
        reject_values("{\"rain_mm\":1.8e308}", FH_REJECT_BAD_VALUE, NULL);
        reject_values("{\"rain_mm\":1e99999999999999999999999}", FH_REJECT_BAD_VALUE, NULL);
        assert_true(one_value("1.7976931348623157e308") == 1.7976931348623157e308);
        assert_true(one_value("1e308") == 1e308);
}

static void test_nan_and_infinity_are_not_json(void **state) {
        reject_values("{\"v\":NaN}", FH_REJECT_MALFORMED_JSON, NULL);
        reject_values("{\"v\":Infinity}", FH_REJECT_MALFORMED_JSON, NULL);
        reject_values("{\"v\":-Infinity}", FH_REJECT_MALFORMED_JSON, NULL);
        reject_values("{\"v\":nan}", FH_REJECT_MALFORMED_JSON, NULL);
}

/* ---- Numbers -------------------------------------------------------- */

static void test_numbers_are_read_exactly_as_strtod_reads_them(void **state) {
        const char *nums[] = {
                "0", "1", "-1", "4.5", "0.1", "0.2", "0.3", "-0.0", "123456789", "1e0", "1E2", "1e+2", "1e-2",
                "2.5e-3", "9007199254740992", "9007199254740993", "9007199254740991.5", "123456789012345678",
                "1234567890123456789", "12345678901234567890", "0.000001", "1e22", "1e23", "1e-22", "1e-23",
                "4.9e-324", "5e-324", "2e-324", "2.4703282292062328e-324", "2.2250738585072011e-308",
                "2.2250738585072014e-308", "1.7976931348623157e308", "1e-400", "-1e-400",
                "3.141592653589793238462643383279502884197169399375105820974944592307816406286",
                "0.1000000000000000055511151231257827021181583404541015625",
                "0.10000000000000000555111512312578270211815834045410156250000000000000000001",
                "9007199254740993.0000000000000000000000000000000001",
                "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587"
                "207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711"
                "531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093"
                "042880177904174497791",
                "0.0000000000000000000000000000000000000000000000000000000000000000000000000000001234",
                "100000000000000000000000000000000000000000000e-30", "8.5", "-123.456e7", "1e-7", "6.02214076e23",
                "1.0e-5", "0.5e1", "10e-1",
        };

        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
                assert_value_is_strtod(nums[i]);
}

static void test_minus_zero_keeps_its_sign(void **state) {
        assert_true(signbit(one_value("-0")));
        assert_true(signbit(one_value("-0.0e5")));
        assert_false(signbit(one_value("0")));
}

static void test_random_decimals_are_read_exactly_as_strtod_reads_them(void **state) {
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        char num[64];

        for (int i = 0; i < 200000; i++) {
                int digits, point, e;
                size_t n = 0;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                digits = 1 + (int)(x % 20);
                point = (int)((x >> 8) % (unsigned)(digits + 1));
                e = (int)((x >> 16) % 80) - 40;
                if ((x >> 24) & 1)
                        num[n++] = '-';
                for (int d = 0; d < digits; d++) {
                        int c = (int)((x >> (28 + (d % 30))) % 10);
                        if (d == 0 && c == 0 && point != 1)
                                c = 1 + d % 9;
                        if (d == point && d > 0)
                                num[n++] = '.';
                        num[n++] = (char)('0' + c);
                }
                if ((x >> 40) & 1)
                        n += (size_t)snprintf(num + n, sizeof(num) - n, "e%d", e);
                num[n] = '\0';
                assert_value_is_strtod(num);
        }
}

static void test_long_mantissas_of_thousands_of_digits_are_read_exactly(void **state) {
        /* 2^-1074 * 3/2 midpoints and long runs of digits beyond what any
         * double can hold, where only a far-away digit decides rounding. */
        static char num[8192];
        size_t n = 0;

        n += (size_t)snprintf(num, sizeof(num), "9007199254740993.");
        for (int i = 0; i < 3000; i++)
                num[n++] = '0';
        num[n++] = '1';
        num[n] = '\0';
        /* Too long for one_value's buffer: build the line by hand. */
        {
                static char line[9000];
                fh_reading r;
                char why[256];
                snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":%s}}", num);
                assert_int_equal(parse_n(line, strlen(line), &r, why, sizeof(why)), FH_REJECT_NONE);
                assert_true(same_double(r.values[0].v, strtod(num, NULL)));

                n = (size_t)snprintf(num, sizeof(num), "0.");
                for (int i = 0; i < 5000; i++)
                        num[n++] = (char)('0' + (i * 7) % 10);
                num[n] = '\0';
                snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":%s}}", num);
                assert_int_equal(parse_n(line, strlen(line), &r, why, sizeof(why)), FH_REJECT_NONE);
                assert_true(same_double(r.values[0].v, strtod(num, NULL)));

                n = (size_t)snprintf(num, sizeof(num), "1");
                for (int i = 0; i < 400; i++)
                        num[n++] = '0';
                snprintf(num + n, sizeof(num) - n, "e-400");
                snprintf(line, sizeof(line), "{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":%s}}", num);
                assert_int_equal(parse_n(line, strlen(line), &r, why, sizeof(why)), FH_REJECT_NONE);
                assert_true(r.values[0].v == 1.0);
        }
        /* The exact halfway point between 1 and the next double, then just above it. */
        assert_value_is_strtod("1.00000000000000011102230246251565404236316680908203125");
        assert_value_is_strtod("1.000000000000000111022302462515654042363166809082031250000000000000000000000000000000001");
}

static void test_numbers_that_json_does_not_allow_are_malformed(void **state) {
        const char *bad[] = { "01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "0x10", "1.e5", "--1", "1..2",
                              "1e5.5", "Inf", "- 1", "1 2", "\"1\"x" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char values[64];
                snprintf(values, sizeof(values), "{\"v\":%s}", bad[i]);
                reject_values(values, FH_REJECT_MALFORMED_JSON, NULL);
        }
        reject_values("{\"v\":01}", FH_REJECT_MALFORMED_JSON,
                      "malformed JSON at column 37: leading zeros are not allowed in numbers");
}

/* ---- JSON syntax ---------------------------------------------------- */

static void test_a_line_that_is_not_an_object_is_malformed(void **state) {
        reject("", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 1: empty line, expected a JSON object");
        reject(" \r", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 3: empty line, expected a JSON object");
        reject("[" GOOD "]", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 1: expected a JSON object");
        reject("\"sensor\"", FH_REJECT_MALFORMED_JSON, NULL);
        reject("42", FH_REJECT_MALFORMED_JSON, NULL);
        reject("null", FH_REJECT_MALFORMED_JSON, NULL);
        reject("\xef\xbb\xbf" GOOD, FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_trailing_garbage_after_the_object_is_malformed(void **state) {
        reject(GOOD "x", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 82: unexpected characters after the object");
        reject(GOOD GOOD, FH_REJECT_MALFORMED_JSON, NULL);
        reject(GOOD ",", FH_REJECT_MALFORMED_JSON, NULL);
        reject(GOOD "}", FH_REJECT_MALFORMED_JSON, NULL);
        reject_n(GOOD "\0", sizeof(GOOD), FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_structural_mistakes_are_malformed_and_located(void **state) {
        reject("{\"sensor\" \"S1\"}", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 11: expected ':' after a key");
        reject("{\"sensor\":\"S1\" \"ts\":0}", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 16: expected ',' or '}'");
        reject("{\"sensor\":\"S1\",}", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 16: expected a string key");
        reject("{sensor:\"S1\"}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{'sensor':'S1'}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":[1,2,]," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":[1 2]," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, "malformed JSON at column 9: expected ',' or ']'");
        reject("{\"x\":{\"a\"}," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":{1:2}," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":[}," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":tru," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 6: invalid literal (expected true, false or null)");
        reject("{\"x\":True," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":nulll," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"x\":," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1,}}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\" 1}}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1}", FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 39: unexpected end of line, expected ',' or '}'");
        reject_n("{\"sensor\":\"S1\"\0,\"ts\":0,\"values\":{\"v\":1}}", 41, FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_duplicate_sensor_ts_or_values_keys_are_malformed(void **state) {
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1},\"sensor\":\"S2\"}", FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 40: duplicate key \"sensor\"");
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1},\"ts\":1}", FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 40: duplicate key \"ts\"");
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1},\"val\\u0075es\":{\"w\":1}}", FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 40: duplicate key \"values\"");
}

static void test_a_missing_field_is_named(void **state) {
        reject("{\"ts\":0,\"values\":{\"v\":1}}", FH_REJECT_MISSING_FIELD, "missing field \"sensor\"");
        reject("{\"sensor\":\"S1\",\"values\":{\"v\":1}}", FH_REJECT_MISSING_FIELD, "missing field \"ts\"");
        reject("{\"sensor\":\"S1\",\"ts\":0}", FH_REJECT_MISSING_FIELD, "missing field \"values\"");
        reject("{}", FH_REJECT_MISSING_FIELD, "missing field \"sensor\"");
        reject("{\"Sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1}}", FH_REJECT_MISSING_FIELD, "missing field \"sensor\"");
        reject("{\"sensor\":\"S1\",\"ts\":0,\"value\":{\"v\":1}}", FH_REJECT_MISSING_FIELD, "missing field \"values\"");
}

/* ---- Strings and UTF-8 ---------------------------------------------- */

static void reject_in_unknown_string(const char *raw, const char *text) {
        char line[512];

        snprintf(line, sizeof(line), "{\"note\":\"%s\"," GOOD_MEMBERS, raw);
        reject(line, FH_REJECT_MALFORMED_JSON, text);
}

static void accept_in_unknown_string(const char *raw) {
        char line[512];

        snprintf(line, sizeof(line), "{\"note\":\"%s\"," GOOD_MEMBERS, raw);
        accept(line);
}

static void test_valid_utf8_of_every_length_is_accepted(void **state) {
        accept_in_unknown_string("ascii");
        accept_in_unknown_string("\xc2\x80\xdf\xbf");                   /* U+0080, U+07FF */
        accept_in_unknown_string("\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"); /* U+0800, U+D7FF, U+E000, U+FFFF */
        accept_in_unknown_string("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");   /* U+10000, U+10FFFF */
        accept_in_unknown_string("石城站 暴雨预警");
        accept_in_unknown_string("\x7f");
}

static void test_invalid_utf8_is_malformed(void **state) {
        reject_in_unknown_string("\xc0\x80", "malformed JSON at column 10: invalid UTF-8 in string"); /* overlong NUL */
        reject_in_unknown_string("\xc1\xbf", NULL);                 /* overlong */
        reject_in_unknown_string("\xe0\x80\x80", NULL);             /* overlong 3 */
        reject_in_unknown_string("\xe0\x9f\xbf", NULL);             /* overlong U+07FF */
        reject_in_unknown_string("\xf0\x80\x80\x80", NULL);         /* overlong 4 */
        reject_in_unknown_string("\xf0\x8f\xbf\xbf", NULL);         /* overlong U+FFFF */
        reject_in_unknown_string("\xed\xa0\x80", NULL);             /* U+D800 */
        reject_in_unknown_string("\xed\xbf\xbf", NULL);             /* U+DFFF */
        reject_in_unknown_string("\xf4\x90\x80\x80", NULL);         /* U+110000 */
        reject_in_unknown_string("\xf5\x80\x80\x80", NULL);
        reject_in_unknown_string("\xff", NULL);
        reject_in_unknown_string("\x80", NULL);                     /* lone continuation */
        reject_in_unknown_string("\xc3", NULL);                     /* cut short by the quote */
        reject_in_unknown_string("\xe7\x9f", NULL);
        reject_in_unknown_string("\xf0\x90\x80", NULL);
        reject_in_unknown_string("\xc3\x28", NULL);                 /* bad continuation */
        reject_in_unknown_string("\xe7\x9f\x28", NULL);
        reject_in_unknown_string("\xf0\x90\x28\x80", NULL);
}

static void test_invalid_utf8_is_malformed_in_keys_and_outside_strings(void **state) {
        reject("{\"\xff\":1," GOOD_MEMBERS, FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"S\xc3\",\"ts\":0,\"values\":{\"v\":1}}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\xc2\xa0\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1}}", FH_REJECT_MALFORMED_JSON, NULL);
        reject(GOOD "\xc2\xa0", FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_every_json_escape_is_understood(void **state) {
        fh_reading r = accept("{\"sensor\":\"\\u0041\\u0062\\u005F\\u003a\",\"ts\":0,\"values\":{\"v\":1}}");

        assert_string_equal(r.sensor, "Ab_:");
        accept_in_unknown_string("\\\"\\\\\\/\\b\\f\\n\\r\\t");
        accept_in_unknown_string("\\u00e9\\u4e2d\\uFFFF\\u0000");
        accept_in_unknown_string("\\ud83d\\ude00");                 /* U+1F600 as a pair */
        accept_in_unknown_string("\\uDBFF\\uDFFF");                 /* U+10FFFF */
}

static void test_bad_escapes_and_lone_surrogates_are_malformed(void **state) {
        reject_in_unknown_string("\\x41", "malformed JSON at column 10: invalid escape in string");
        reject_in_unknown_string("\\'", NULL);
        reject_in_unknown_string("\\a", NULL);
        reject_in_unknown_string("\\U0041", NULL);
        reject_in_unknown_string("\\u41", "malformed JSON at column 10: \\u needs four hex digits");
        reject_in_unknown_string("\\u00g1", NULL);
        reject_in_unknown_string("\\ude00", "malformed JSON at column 10: \\u escape is a lone low surrogate");
        reject_in_unknown_string("\\ud83d", "malformed JSON at column 10: \\u escape is a high surrogate without a low one");
        reject_in_unknown_string("\\ud83dx", NULL);
        reject_in_unknown_string("\\ud83d\\u0041", NULL);
        reject_in_unknown_string("\\ud83d\\ud83d", NULL);
        reject_in_unknown_string("\\ud83d\\n", NULL);
        reject("{\"note\":\"\\", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"note\":\"\\u12", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"note\":\"\\ud83d\\ude0", FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_raw_control_characters_in_strings_are_malformed(void **state) {
        reject_in_unknown_string("a\tb", "malformed JSON at column 11: control character in string (must be escaped)");
        reject_in_unknown_string("a\nb", NULL);
        reject_in_unknown_string("\x1f", NULL);
        reject_n("{\"note\":\"a\0b\"," GOOD_MEMBERS, sizeof("{\"note\":\"a\0b\"," GOOD_MEMBERS) - 1, FH_REJECT_MALFORMED_JSON,
                 NULL);
}

static void test_an_unterminated_string_is_malformed_even_where_a_schema_error_could_be_seen(void **state) {
        reject("{\"sensor\":\"MY RG", FH_REJECT_MALFORMED_JSON, "malformed JSON at column 11: unterminated string");
}

/* ---- Nesting -------------------------------------------------------- */

static void nested_unknown(char *line, size_t cap, int arrays) {
        size_t n = (size_t)snprintf(line, cap, "{\"deep\":");

        for (int i = 0; i < arrays; i++)
                line[n++] = '[';
        for (int i = 0; i < arrays; i++)
                line[n++] = ']';
        snprintf(line + n, cap - n, "," GOOD_MEMBERS);
}

static void test_nesting_is_capped_at_the_documented_depth(void **state) {
        char line[512];

        /* The reading object itself is the first level. */
        nested_unknown(line, sizeof(line), FH_JSON_DEPTH_MAX - 1);
        accept(line);
        nested_unknown(line, sizeof(line), FH_JSON_DEPTH_MAX);
        reject(line, FH_REJECT_MALFORMED_JSON, "malformed JSON at column 40: nested too deep");
        reject("{\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
               FH_REJECT_MALFORMED_JSON, NULL);
}

static void test_very_deep_nesting_is_rejected_without_recursion(void **state) {
        size_t n = 60000;
        char *line = malloc(n);

        memcpy(line, "{\"x\":", 5);
        memset(line + 5, '[', n - 5);
        reject_n(line, n, FH_REJECT_MALFORMED_JSON, NULL);
        memset(line + 5, '{', n - 5);
        reject_n(line, n, FH_REJECT_MALFORMED_JSON, NULL);
        free(line);
}

/* ---- Size ----------------------------------------------------------- */

static void test_a_line_of_64_kib_is_accepted_and_one_byte_more_is_too_long(void **state) {
        size_t n = FH_READING_BYTES_MAX + 1;
        char *line = malloc(n);
        const char *head = "{\"pad\":\"";
        const char *tail = "\"," GOOD_MEMBERS;
        fh_reading r;
        char why[256];

        memset(line, 'p', n);
        memcpy(line, head, strlen(head));
        memcpy(line + FH_READING_BYTES_MAX - strlen(tail), tail, strlen(tail));
        assert_int_equal(parse_n(line, FH_READING_BYTES_MAX, &r, why, sizeof(why)), FH_REJECT_NONE);
        assert_string_equal(r.sensor, "MY-RG-0012");
        /* The same with one more byte of padding. */
        memcpy(line + FH_READING_BYTES_MAX + 1 - strlen(tail), tail, strlen(tail));
        line[FH_READING_BYTES_MAX - strlen(tail)] = 'p';
        reject_n(line, n, FH_REJECT_TOO_LONG, "line too long: 65537 bytes, the limit is 65536");
        free(line);
}

static void test_length_is_checked_before_anything_else(void **state) {
        size_t n = FH_READING_BYTES_MAX + 1;
        char *line = malloc(n);

        memset(line, 'x', n);
        reject_n(line, n, FH_REJECT_TOO_LONG, "line too long: 65537 bytes, the limit is 65536");
        reject_n(line, n - 1, FH_REJECT_MALFORMED_JSON, NULL);
        free(line);
}

/* ---- Which problem is reported ---------------------------------------- */

static void test_the_first_schema_problem_in_text_order_is_reported(void **state) {
        reject("{\"ts\":\"2023-13-01T00:00:00Z\",\"sensor\":\"a b\",\"values\":[]}", FH_REJECT_BAD_TIMESTAMP, NULL);
        reject("{\"sensor\":\"a b\",\"ts\":\"2023-13-01T00:00:00Z\",\"values\":[]}", FH_REJECT_BAD_SENSOR, NULL);
        reject("{\"values\":{\"A\":\"x\"},\"sensor\":\"a b\"}", FH_REJECT_BAD_VALUES, NULL);
        reject("{\"values\":{\"a\":\"x\",\"B\":1},\"sensor\":\"a b\"}", FH_REJECT_BAD_VALUE, NULL);
        reject("{\"sensor\":\"a b\"}", FH_REJECT_BAD_SENSOR, NULL);
        reject("{\"ts\":true}", FH_REJECT_BAD_TIMESTAMP, NULL);
}

static void test_malformed_json_wins_over_an_earlier_schema_problem(void **state) {
        reject("{\"sensor\":\"a b\",\"ts\":0,\"values\":{\"v\":1},}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"a b\",\"ts\":0,\"values\":{\"V\":1,\"w\":[1,}}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"a b\",\"ts\":0,\"values\":{\"v\":1},\"note\":\"\xff\"}", FH_REJECT_MALFORMED_JSON, NULL);
        reject("{\"sensor\":\"a b\",\"sensor\":\"S1\",\"ts\":0,\"values\":{\"v\":1}}", FH_REJECT_MALFORMED_JSON,
               "malformed JSON at column 17: duplicate key \"sensor\"");
        reject("{\"sensor\":[1,2" , FH_REJECT_MALFORMED_JSON, NULL);
}

/* ---- Robustness ------------------------------------------------------- */

static void test_every_prefix_of_a_valid_line_is_rejected_as_malformed(void **state) {
        const char *lines[] = {
                GOOD,
                "{\"sensor\":\"S\\u00e9\",\"ts\":-1.5e3,\"values\":{\"a\":-0.0e-5,\"b\":[true,false,null,{\"x\":\"\\ud83d\\ude00\"}]}}",
                "{\"sensor\":\"S1\",\"ts\":1690697100000,\"note\":\"石城\",\"values\":{\"v\":123456789012345678901234567890}}",
        };

        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
                size_t n = strlen(lines[i]);
                for (size_t k = 0; k < n; k++)
                        reject_n(lines[i], k, FH_REJECT_MALFORMED_JSON, NULL);
        }
}

static void test_reasons_fit_any_buffer_and_the_buffer_may_be_absent(void **state) {
        const char *bad = "{\"sensor\":\"a b c d e f g h i j k l m n o p\",\"ts\":0,\"values\":{\"v\":1}}";
        char why[8];
        fh_reading r;

        memset(why, 'x', sizeof(why));
        assert_int_equal(fh_reading_parse(bad, strlen(bad), &r, why, sizeof(why)), FH_REJECT_BAD_SENSOR);
        assert_string_equal(why, "bad sen");
        assert_int_equal(fh_reading_parse(bad, strlen(bad), &r, NULL, 0), FH_REJECT_BAD_SENSOR);
        assert_int_equal(fh_reading_parse("{", 1, &r, why, 1), FH_REJECT_MALFORMED_JSON);
        assert_string_equal(why, "");
        assert_int_equal(fh_reading_parse(GOOD, strlen(GOOD), &r, NULL, 0), FH_REJECT_NONE);
}

static void test_every_reject_reason_has_a_stable_name(void **state) {
        assert_string_equal(fh_reject_name(FH_REJECT_NONE), "none");
        assert_string_equal(fh_reject_name(FH_REJECT_MALFORMED_JSON), "malformed_json");
        assert_string_equal(fh_reject_name(FH_REJECT_MISSING_FIELD), "missing_field");
        assert_string_equal(fh_reject_name(FH_REJECT_BAD_SENSOR), "bad_sensor");
        assert_string_equal(fh_reject_name(FH_REJECT_BAD_TIMESTAMP), "bad_timestamp");
        assert_string_equal(fh_reject_name(FH_REJECT_BAD_VALUE), "bad_value");
        assert_string_equal(fh_reject_name(FH_REJECT_BAD_VALUES), "bad_values");
        assert_string_equal(fh_reject_name(FH_REJECT_UNKNOWN_SENSOR), "unknown_sensor");
        assert_string_equal(fh_reject_name(FH_REJECT_TOO_LONG), "too_long");
        assert_string_equal(fh_reject_name(FH_REJECT__MAX), "unknown");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_typical_reading_is_accepted_with_all_its_fields),
                cmocka_unit_test(test_member_order_does_not_matter),
                cmocka_unit_test(test_unknown_members_are_ignored_however_nested),
                cmocka_unit_test(test_whitespace_around_and_inside_the_object_and_a_final_cr_are_allowed),
                cmocka_unit_test(test_escaped_keys_and_strings_are_compared_after_unescaping),
                cmocka_unit_test(test_sixty_four_characters_and_thirty_two_values_are_the_limits),
                cmocka_unit_test(test_every_allowed_sensor_character_is_accepted),
                cmocka_unit_test(test_timestamps_accept_every_rfc3339_form),
                cmocka_unit_test(test_timestamps_as_epoch_milliseconds_are_accepted_up_to_the_range_limits),
                cmocka_unit_test(test_timestamps_that_are_not_integers_or_strings_are_bad),
                cmocka_unit_test(test_bad_timestamp_strings_quote_the_text_and_name_the_problem),
                cmocka_unit_test(test_timestamps_with_escapes_are_decoded_and_capped),
                cmocka_unit_test(test_sensors_outside_the_id_alphabet_are_bad),
                cmocka_unit_test(test_sensors_over_sixty_four_characters_are_bad_and_quoted_truncated),
                cmocka_unit_test(test_sensors_that_are_not_strings_are_bad),
                cmocka_unit_test(test_values_that_are_not_a_non_empty_object_are_bad),
                cmocka_unit_test(test_more_than_thirty_two_values_are_bad),
                cmocka_unit_test(test_field_names_must_be_short_lower_case_identifiers),
                cmocka_unit_test(test_duplicate_field_names_are_bad),
                cmocka_unit_test(test_values_that_are_not_numbers_are_bad),
                cmocka_unit_test(test_numbers_too_large_for_a_double_are_not_finite),
                cmocka_unit_test(test_nan_and_infinity_are_not_json),
                cmocka_unit_test(test_numbers_are_read_exactly_as_strtod_reads_them),
                cmocka_unit_test(test_minus_zero_keeps_its_sign),
                cmocka_unit_test(test_random_decimals_are_read_exactly_as_strtod_reads_them),
                cmocka_unit_test(test_long_mantissas_of_thousands_of_digits_are_read_exactly),
                cmocka_unit_test(test_numbers_that_json_does_not_allow_are_malformed),
                cmocka_unit_test(test_a_line_that_is_not_an_object_is_malformed),
                cmocka_unit_test(test_trailing_garbage_after_the_object_is_malformed),
                cmocka_unit_test(test_structural_mistakes_are_malformed_and_located),
                cmocka_unit_test(test_duplicate_sensor_ts_or_values_keys_are_malformed),
                cmocka_unit_test(test_a_missing_field_is_named),
                cmocka_unit_test(test_valid_utf8_of_every_length_is_accepted),
                cmocka_unit_test(test_invalid_utf8_is_malformed),
                cmocka_unit_test(test_invalid_utf8_is_malformed_in_keys_and_outside_strings),
                cmocka_unit_test(test_every_json_escape_is_understood),
                cmocka_unit_test(test_bad_escapes_and_lone_surrogates_are_malformed),
                cmocka_unit_test(test_raw_control_characters_in_strings_are_malformed),
                cmocka_unit_test(test_an_unterminated_string_is_malformed_even_where_a_schema_error_could_be_seen),
                cmocka_unit_test(test_nesting_is_capped_at_the_documented_depth),
                cmocka_unit_test(test_very_deep_nesting_is_rejected_without_recursion),
                cmocka_unit_test(test_a_line_of_64_kib_is_accepted_and_one_byte_more_is_too_long),
                cmocka_unit_test(test_length_is_checked_before_anything_else),
                cmocka_unit_test(test_the_first_schema_problem_in_text_order_is_reported),
                cmocka_unit_test(test_malformed_json_wins_over_an_earlier_schema_problem),
                cmocka_unit_test(test_every_prefix_of_a_valid_line_is_rejected_as_malformed),
                cmocka_unit_test(test_reasons_fit_any_buffer_and_the_buffer_may_be_absent),
                cmocka_unit_test(test_every_reject_reason_has_a_stable_name),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
