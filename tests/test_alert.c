/* Alert events as gateways and people read them (SPEC §4, docs/rules.md §5):
 * the default Chinese message, every message placeholder, and the JSON of
 * stations whose cells need escaping. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/engine.h"

#define MIN_ (60 * 1000LL)
#define T0 1690646400000LL /* 2023-07-30T00:00:00+08:00 */

static const char *stations_csv =
        "id,kind,name,region,warning_level,note\n"
        "A,rain,甲站,miyun,150.0,\"say \"\"hi\"\"\"\n"
        "B,rain,乙站,,,\n";

typedef struct rec {
        fh_engine *e;
        char msg[8][512];
        char json[8][2048];
        int n;
} rec;

static void on_alert(void *ud, const fh_alert *a) {
        rec *r = ud;
        fh_buf m = FH_BUF_NULL, j = FH_BUF_NULL;

        assert_true(r->n < 8);
        fh_alert_message(r->e, a, &m);
        fh_alert_to_json(r->e, a, &j);
        snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s", m.data ? m.data : "");
        snprintf(r->json[r->n], sizeof(r->json[0]), "%s", j.data);
        fh_buf_free(&m);
        fh_buf_free(&j);
        r->n++;
}

static fh_engine *engine(const char *yaml, rec *r) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "t.yaml", yaml, strlen(yaml), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(fh_registry_parse("s.csv", stations_csv, strlen(stations_csv), &reg, &d), 0);
        assert_int_equal(fh_engine_new(&e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        memset(r, 0, sizeof(*r));
        r->e = e;
        fh_engine_set_alert_cb(e, on_alert, r);
        return e;
}

static void feed(fh_engine *e, const char *sensor, int64_t minutes, double v) {
        fh_reading rd = { 0 };

        snprintf(rd.sensor, sizeof(rd.sensor), "%s", sensor);
        rd.sensor_len = (uint8_t) strlen(sensor);
        rd.ts_ms = T0 + minutes * MIN_;
        rd.n_values = 1;
        snprintf(rd.values[0].name, sizeof(rd.values[0].name), "%s", "x");
        rd.values[0].name_len = 1;
        rd.values[0].v = v;
        fh_engine_ingest(e, &rd);
}

static void default_message_names_station_level_value_and_local_time(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: storm\n    title: 暴雨预警\n    kind: rain\n"
                              "    levels:\n      orange: x >= 50\n    report: x\n", &r);

        feed(e, "A", 0, 63.54);
        feed(e, "A", 65, 1);
        assert_int_equal(r.n, 2);
        assert_string_equal(r.msg[0], "【暴雨预警】甲站（A）橙色预警，当前值63.5，2023-07-30 00:00");
        assert_string_equal(r.msg[1], "【暴雨预警】甲站（A）预警解除，当前值1.0，2023-07-30 01:05");
        fh_engine_free(e);
}

static void default_message_without_report_leaves_out_the_value_and_uses_the_id(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: storm\n    kind: rain\n    levels:\n      blue: x >= 1\n", &r);

        feed(e, "B", 0, 5);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.msg[0], "【storm】乙站（B）蓝色预警，2023-07-30 00:00");
        assert_non_null(strstr(r.json[0], "\"value\":null,"));
        fh_engine_free(e);
}

static void every_placeholder_renders_and_braces_unescape(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: storm\n    kind: rain\n    levels:\n      red: x >= 10\n"
                              "    report: x\n"
                              "    message: \"{title}|{sensor}|{station.name}|{station.warning_level}|{level}|"
                              "{level_cn}|{value}|{ts}|{{x}}\"\n", &r);

        feed(e, "A", 0, 12.25);
        feed(e, "A", 1, 0);
        assert_int_equal(r.n, 2);
        /* The registry cell as written: 150.0 stays 150.0. */
        assert_string_equal(r.msg[0], "storm|A|甲站|150.0|red|红色|12.2|2023-07-30 00:00|{x}");
        assert_string_equal(r.msg[1], "storm|A|甲站|150.0|none|解除|0.0|2023-07-30 00:01|{x}");
        fh_engine_free(e);
}

static void empty_cell_renders_as_nothing_and_a_tiny_negative_as_zero(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: storm\n    kind: rain\n    levels:\n      blue: x < 0\n"
                              "    report: x\n    message: \"[{station.warning_level}] {value}\"\n", &r);

        feed(e, "B", 0, -0.01);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.msg[0], "[] 0.0");
        fh_engine_free(e);
}

static void json_escapes_cells_and_keeps_numbers_as_numbers(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: storm\n    title: \"a \\\"quoted\\\" title\"\n    kind: rain\n"
                              "    levels:\n      blue: x >= 1\n", &r);

        feed(e, "A", 0, 1);
        feed(e, "B", 0, 1);
        assert_int_equal(r.n, 2);
        assert_non_null(strstr(r.json[0], "\"title\":\"a \\\"quoted\\\" title\""));
        assert_non_null(strstr(r.json[0],
                "\"station\":{\"name\":\"甲站\",\"region\":\"miyun\",\"warning_level\":150,\"note\":\"say \\\"hi\\\"\"}"));
        /* Empty cells are left out, not sent as "". */
        assert_non_null(strstr(r.json[1], "\"station\":{\"name\":\"乙站\"},"));
        fh_engine_free(e);
}

/* What JSON numbers were before the decimal fast path: the shortest of
 * %.15g..%.17g that reads back exactly (integers as integers, -0 as 0). */
static void reference_number(double v, char *out, size_t n) {
        if (!isfinite(v)) {
                snprintf(out, n, "null");
                return;
        }
        if (v == 0) {
                snprintf(out, n, "0");
                return;
        }
        if (fabs(v) < 1e15 && v == (double) (int64_t) v) {
                snprintf(out, n, "%lld", (long long) (int64_t) v);
                return;
        }
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(out, n, "%.*g", prec, v);
                if (strtod(out, NULL) == v)
                        return;
        }
}

static void check_number(double v) {
        char want[64];
        fh_buf b = FH_BUF_NULL;

        reference_number(v, want, sizeof(want));
        fh_buf_json_number(&b, v);
        if (strcmp(b.data, want) != 0)
                fail_msg("%.17g: got %s, want %s", v, b.data, want);
        fh_buf_free(&b);
}

/* Readings' and stations' values are mostly short decimals, printed
 * without snprintf now: every kind of value prints as it did. */
static void json_numbers_print_as_the_shortest_exact_form(void **state) {
        static const double edges[] = {
                0.1, 0.2, 0.1 + 0.2, 63.5, -63.5, 40.3767, 116.8441, 1e-4, 1.5e-4, 9.9e-5, 0.00012345,
                0.0001234567, 999999999.5, 1e9 + 0.5, 123456789.123456, 1e-7, 5e-324, 1.7976931348623157e308,
                2.5, -0.05, 0.05, 1.000001, 1.0000001, 123.4560, 4e12 + 0.25, NAN, INFINITY, -0.0, 7,
        };
        uint64_t x = 88172645463325252ULL;

        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
                check_number(edges[i]);
        for (int i = 0; i < 300000; i++) {
                /* xorshift64: k / 10^d over every magnitude, and raw bits. */
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                int d = (int) (x % 9);
                double k = (double) ((x >> 8) % 2000000000000ULL) / pow(10, (double) ((x >> 4) % 8));
                double v = rint(k) / pow(10, d) * ((x & 1) ? -1 : 1);
                check_number(v);
                double raw;
                memcpy(&raw, &x, sizeof(raw));
                check_number(raw);
                check_number(nextafter(v, 0));
        }
}

static void unit_renders_the_declared_unit_of_the_field_report_reads(void **state) {
        rec r;
        fh_engine *e = engine("fields:\n  rain:\n    x: mm/h\n"
                              "rules:\n  - id: storm\n    kind: rain\n    levels:\n      blue: x >= 1\n"
                              "    report: max(x, 1h)\n    message: \"{value} {unit}\"\n", &r);

        feed(e, "A", 0, 2);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.msg[0], "2.0 mm/h");
        fh_engine_free(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(default_message_names_station_level_value_and_local_time),
                cmocka_unit_test(default_message_without_report_leaves_out_the_value_and_uses_the_id),
                cmocka_unit_test(every_placeholder_renders_and_braces_unescape),
                cmocka_unit_test(empty_cell_renders_as_nothing_and_a_tiny_negative_as_zero),
                cmocka_unit_test(json_escapes_cells_and_keeps_numbers_as_numbers),
                cmocka_unit_test(unit_renders_the_declared_unit_of_the_field_report_reads),
                cmocka_unit_test(json_numbers_print_as_the_shortest_exact_form),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
