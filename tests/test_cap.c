/* CAP 1.2 messages of alert events (include/fenghuo/cap.h): escaping of
 * everything a registry or rule file controls, the tier mapping, the
 * identifiers, and the references chain of one alert's lifecycle. The
 * messages' validity against the OASIS schema is checked end to end in
 * test_cap_xsd.c, which links libxml2. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/cap.h"
#include "fenghuo/timeutil.h"

#define MIN_ (60 * 1000LL)
#define T0 1690646400000LL /* 2023-07-30T00:00:00+08:00 */

static const char *stations_csv =
        "id,kind,name,region,town,lat,lon,guarantee_level,polygon,district_code\n"
        "A,rain,\"甲<b>&\"\"站'\x01\",miyun,石城镇,40.5912,116.8035,,,\n"
        "B,rain,乙站,miyun,,,,,\"40.1,116.1 40.2,116.1 40.2,116.2 40.1,116.1\",110116\n"
        "C,rain,丙站,miyun,,,,,not a polygon,11011\n"
        "W,water_level,水位站,miyun,溪翁庄镇,40.48,116.83,150.5,,\n";

static const char *rules_yaml =
        "rules:\n"
        "  - id: gauge\n"
        "    title: 暴雨&<预警>\n"
        "    kind: rain\n"
        "    levels:\n"
        "      red: x >= 4\n"
        "      orange: x >= 3\n"
        "      yellow: x >= 2\n"
        "      blue: x >= 1\n"
        "    report: x\n"
        "  - id: river\n"
        "    kind: water_level\n"
        "    levels:\n"
        "      orange: level_m >= station.guarantee_level\n"
        "      yellow: level_m >= station.guarantee_level - 0.5 and level_m > 0\n"
        "      blue: level_m + 1 >= station.guarantee_level - 1\n"
        "    report: level_m\n";

typedef struct rec {
        fh_engine *e;
        fh_cap_config cfg;
        char *xml[64];
        char *ids[64];
        int n;
} rec;

static void on_alert(void *ud, const fh_alert *a) {
        rec *r = ud;
        fh_buf x = FH_BUF_NULL, id = FH_BUF_NULL;

        assert_true(r->n < 64);
        fh_cap_message(r->e, &r->cfg, a, &id, &x);
        r->xml[r->n] = x.data;
        r->ids[r->n] = id.data;
        r->n++;
}

static void setup(rec *r, bool exercise) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_cap_config cfg = FH_CAP_CONFIG_DEFAULT;

        memset(r, 0, sizeof(*r));
        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "t.yaml", rules_yaml, strlen(rules_yaml), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        if (fh_registry_parse("s.csv", stations_csv, strlen(stations_csv), &reg, &d) < 0) {
                char line[512];
                for (size_t i = 0; i < d.n; i++) {
                        fh_diag_format(&d.v[i], line, sizeof(line));
                        fprintf(stderr, "%s\n", line);
                }
                fail();
        }
        assert_int_equal(fh_engine_new(&r->e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        cfg.exercise = exercise;
        r->cfg = cfg;
        fh_engine_set_alert_cb(r->e, on_alert, r);
}

static void teardown_rec(rec *r) {
        for (int i = 0; i < r->n; i++) {
                free(r->xml[i]);
                free(r->ids[i]);
        }
        fh_engine_free(r->e);
}

static void feed(fh_engine *e, const char *sensor, int64_t minutes, const char *field, double v) {
        fh_reading rd = { 0 };

        snprintf(rd.sensor, sizeof(rd.sensor), "%s", sensor);
        rd.sensor_len = (uint8_t) strlen(sensor);
        rd.ts_ms = T0 + minutes * MIN_;
        rd.n_values = 1;
        snprintf(rd.values[0].name, sizeof(rd.values[0].name), "%s", field);
        rd.values[0].name_len = (uint8_t) strlen(field);
        rd.values[0].v = v;
        fh_engine_ingest(e, &rd);
}

/* The text between <name> and </name>, first occurrence, or "". */
static const char *elem(const char *xml, const char *name, char *out, size_t n) {
        char open[64], close[64];
        snprintf(open, sizeof(open), "<%s>", name);
        snprintf(close, sizeof(close), "</%s>", name);
        const char *a = strstr(xml, open), *b;
        out[0] = 0;
        if (a && (b = strstr(a, close))) {
                a += strlen(open);
                snprintf(out, n, "%.*s", (int) (b - a), a);
        }
        return out;
}

static void raise_escalate_deescalate_clear_become_alert_update_update_cancel(void **state) {
        rec r;
        char t[512];

        setup(&r, false);
        feed(r.e, "B", 0, "x", 1);   /* raised blue */
        feed(r.e, "B", 1, "x", 4);   /* escalated red */
        feed(r.e, "B", 2, "x", 2);   /* deescalated yellow */
        feed(r.e, "B", 3, "x", 0);   /* cleared */
        assert_int_equal(r.n, 4);
        const char *types[] = { "Alert", "Update", "Update", "Cancel" };
        const char *sev[] = { "Minor", "Extreme", "Moderate", "Moderate" };
        const char *urg[] = { "Expected", "Immediate", "Expected", "Past" };
        for (int i = 0; i < 4; i++) {
                assert_string_equal(elem(r.xml[i], "msgType", t, sizeof(t)), types[i]);
                assert_string_equal(elem(r.xml[i], "severity", t, sizeof(t)), sev[i]);
                assert_string_equal(elem(r.xml[i], "urgency", t, sizeof(t)), urg[i]);
                assert_string_equal(elem(r.xml[i], "status", t, sizeof(t)), "Actual");
                assert_string_equal(elem(r.xml[i], "certainty", t, sizeof(t)), "Observed");
                assert_string_equal(elem(r.xml[i], "language", t, sizeof(t)), "zh-CN");
                assert_string_equal(elem(r.xml[i], "identifier", t, sizeof(t)), r.ids[i]);
                assert_string_equal(elem(r.xml[i], "incidents", t, sizeof(t)), "gauge:B:1690646400000");
        }
        assert_non_null(strstr(r.xml[0], "<sent>2023-07-30T00:00:00+08:00</sent>"));
        assert_non_null(strstr(r.xml[1], "<sent>2023-07-30T00:01:00+08:00</sent>"));
        /* The cancel names the tier it ends, and why. */
        assert_non_null(strstr(r.xml[3], "解除暴雨&amp;&lt;预警&gt;黄色预警"));
        assert_non_null(strstr(r.xml[3], "<note>解除原因"));
        teardown_rec(&r);
}

static void every_message_references_its_alert_and_its_predecessor(void **state) {
        rec r;
        char t[2048], want[2048];

        setup(&r, false);
        feed(r.e, "B", 0, "x", 1);   /* 0 Alert */
        feed(r.e, "A", 0, "x", 3);   /* 1 another alert in between: not referenced */
        feed(r.e, "B", 1, "x", 4);   /* 2 Update */
        feed(r.e, "B", 2, "x", 2);   /* 3 Update */
        feed(r.e, "B", 3, "x", 0);   /* 4 Cancel */
        assert_int_equal(r.n, 5);
        assert_null(strstr(r.xml[0], "<references>"));
        assert_null(strstr(r.xml[1], "<references>"));
        snprintf(want, sizeof(want), "北京市密云区,%s,2023-07-30T00:00:00+08:00", r.ids[0]);
        assert_string_equal(elem(r.xml[2], "references", t, sizeof(t)), want);
        snprintf(want, sizeof(want), "北京市密云区,%s,2023-07-30T00:00:00+08:00 北京市密云区,%s,2023-07-30T00:01:00+08:00",
                 r.ids[0], r.ids[2]);
        assert_string_equal(elem(r.xml[3], "references", t, sizeof(t)), want);
        /* The last Update superseded the first: the Cancel names the Alert and it. */
        snprintf(want, sizeof(want), "北京市密云区,%s,2023-07-30T00:00:00+08:00 北京市密云区,%s,2023-07-30T00:02:00+08:00",
                 r.ids[0], r.ids[3]);
        assert_string_equal(elem(r.xml[4], "references", t, sizeof(t)), want);
        teardown_rec(&r);
}

static void identifiers_follow_the_national_pattern_and_repeat_in_every_run(void **state) {
        rec a, b;

        setup(&a, false);
        setup(&b, false);
        for (rec *r = &a; r; r = r == &a ? &b : NULL) {
                feed(r->e, "B", 0, "x", 1);
                feed(r->e, "A", 0, "x", 1);
                feed(r->e, "B", 5, "x", 0);
        }
        assert_int_equal(a.n, 3);
        for (int i = 0; i < a.n; i++) {
                const char *id = a.ids[i];
                assert_string_equal(id, b.ids[i]);
                assert_memory_equal(id, "11011800000000_2023073000", 24);
                assert_true(strlen(id) > 30);
                assert_int_equal(strspn(id + 30, "0123456789"), strlen(id + 30));
                assert_int_equal(id[29], '_');
        }
        /* Same second, two stations: still two identifiers. */
        assert_string_not_equal(a.ids[0], a.ids[1]);
        assert_memory_equal(a.ids[2], "11011800000000_20230730000500_", 30);
        teardown_rec(&a);
        teardown_rec(&b);
}

/* A daemon restarted from its state mid-alert remembers no messages: the
 * engine's state alone gives the same references. */
static void an_engine_restored_mid_alert_writes_the_same_messages(void **state) {
        rec full, late;
        fh_buf snap = FH_BUF_NULL;

        setup(&full, false);
        setup(&late, false);
        for (rec *r = &full; r; r = r == &full ? &late : NULL) {
                feed(r->e, "B", 0, "x", 1);
                feed(r->e, "B", 1, "x", 4);
        }
        fh_engine_snapshot(late.e, NULL, NULL, &snap);
        teardown_rec(&late);
        setup(&late, false);
        assert_int_equal(fh_engine_restore(late.e, snap.data, snap.len), 0);
        for (rec *r = &full; r; r = r == &full ? &late : NULL) {
                feed(r->e, "B", 2, "x", 2);
                feed(r->e, "B", 3, "x", 0);
        }
        assert_int_equal(full.n, 4);
        assert_int_equal(late.n, 2);
        assert_string_equal(late.xml[0], full.xml[2]);
        assert_string_equal(late.xml[1], full.xml[3]);
        fh_buf_free(&snap);
        teardown_rec(&full);
        teardown_rec(&late);
}

static void text_from_registry_and_rules_is_escaped(void **state) {
        rec r;

        setup(&r, false);
        feed(r.e, "A", 0, "x", 4);
        assert_int_equal(r.n, 1);
        const char *x = r.xml[0];
        assert_non_null(strstr(x, "<event>暴雨&amp;&lt;预警&gt;</event>"));
        assert_non_null(strstr(x, "甲&lt;b&gt;&amp;&quot;站&apos;\xEF\xBF\xBD"));
        assert_null(strstr(x, "<b>"));
        assert_null(strstr(x, "\x01"));
        /* Exactly one '<' per tag: none came in through the text. */
        size_t lt = 0, gt = 0;
        for (const char *p = x; *p; p++) {
                lt += *p == '<';
                gt += *p == '>';
        }
        assert_int_equal(lt, gt);
        teardown_rec(&r);
}

static void area_is_the_town_with_a_circle_or_the_registry_polygon(void **state) {
        rec r;
        char t[512];

        setup(&r, false);
        feed(r.e, "A", 0, "x", 1);
        feed(r.e, "B", 0, "x", 1);
        feed(r.e, "C", 0, "x", 1);
        assert_int_equal(r.n, 3);
        assert_string_equal(elem(r.xml[0], "areaDesc", t, sizeof(t)), "石城镇");
        assert_string_equal(elem(r.xml[0], "circle", t, sizeof(t)), "40.5912,116.8035 5");
        assert_null(strstr(r.xml[0], "<polygon>"));
        /* No town: the region. A valid polygon is passed on. */
        assert_string_equal(elem(r.xml[1], "areaDesc", t, sizeof(t)), "miyun");
        assert_string_equal(elem(r.xml[1], "polygon", t, sizeof(t)), "40.1,116.1 40.2,116.1 40.2,116.2 40.1,116.1");
        assert_null(strstr(r.xml[1], "<circle>"));
        /* The station's own district code, when the registry has one. */
        assert_non_null(strstr(r.xml[1], "<valueName>GB/T 2260</valueName>\n        <value>110116</value>"));
        /* A cell that is not a CAP polygon is left out, not sent; nor is a
         * district code of the wrong length (the unit's district instead). */
        assert_null(strstr(r.xml[2], "<polygon>"));
        assert_non_null(strstr(r.xml[2], "<geocode>\n        <valueName>GB/T 2260</valueName>\n        <value>110118</value>"));
        teardown_rec(&r);
}

static void parameters_carry_value_threshold_rule_and_sensor(void **state) {
        rec r;

        setup(&r, true);
        feed(r.e, "W", 0, "level_m", 151.25);
        feed(r.e, "A", 0, "x", 3.5);
        assert_int_equal(r.n, 2);
        const char *w = r.xml[0];
        assert_non_null(strstr(w, "<status>Exercise</status>"));
        assert_non_null(strstr(w, "<note>演练"));
        assert_non_null(strstr(w, "<valueName>value</valueName>\n      <value>151.25</value>"));
        /* A threshold from a station attribute. */
        assert_non_null(strstr(w, "<valueName>condition</valueName>\n      <value>level_m &gt;= station.guarantee_level</value>"));
        assert_non_null(strstr(w, "<valueName>threshold</valueName>\n      <value>150.5</value>"));
        assert_non_null(strstr(w, "<valueName>sensor</valueName>\n      <value>W</value>"));
        assert_non_null(strstr(w, "<valueName>rule</valueName>\n      <value>river</value>"));
        assert_non_null(strstr(w, "<valueName>预警级别</valueName>\n      <value>橙色预警（II级）</value>"));
        assert_non_null(strstr(w, "<category>Met</category>"));
        assert_non_null(strstr(w, "<headline>北京市密云区发布river橙色预警（水位站）</headline>"));
        /* A constant threshold, and the rule's title without its 预警 in the headline. */
        assert_non_null(strstr(r.xml[1], "<valueName>threshold</valueName>\n      <value>3</value>"));
        assert_non_null(strstr(r.xml[1], "<headline>北京市密云区发布暴雨&amp;&lt;预警&gt;橙色预警"));
        teardown_rec(&r);
}

static void a_threshold_is_given_only_for_a_single_comparison_with_a_station_bound(void **state) {
        rec r;

        setup(&r, false);
        feed(r.e, "W", 0, "level_m", 148.6);   /* blue: bound 150.5 - 1 */
        feed(r.e, "W", 1, "level_m", 150.2);   /* yellow: two comparisons */
        assert_int_equal(r.n, 2);
        assert_non_null(strstr(r.xml[0], "<valueName>threshold</valueName>\n      <value>149.5</value>"));
        assert_non_null(strstr(r.xml[1], "<valueName>condition</valueName>"));
        assert_null(strstr(r.xml[1], "<valueName>threshold</valueName>"));
        teardown_rec(&r);
}

/* The bound CAP's `threshold` and the demo's lines show, and whether the
 * alert's value (the report) is what it bounds. */
static void the_threshold_says_which_quantity_it_bounds(void **state) {
        rec r;
        fh_threshold th = { .bound = -1 };

        setup(&r, false);
        const fh_rule *river = &fh_engine_rules(r.e)->rules[1];
        const fh_station *w = fh_registry_find(fh_engine_registry(r.e), "W", 1);
        assert_string_equal(river->id, "river");
        assert_non_null(w);
        assert_true(fh_rule_threshold(r.e, river, w, FH_LEVEL_ORANGE, &th));
        assert_int_equal(th.op, FH_OP_GE);
        assert_true(th.bound == 150.5);
        assert_true(fh_program_same(&th.quantity, river->report));
        assert_true(fh_rule_threshold(r.e, river, w, FH_LEVEL_BLUE, &th));
        assert_true(th.bound == 149.5);
        assert_false(fh_program_same(&th.quantity, river->report));   /* level_m + 1 */
        /* Two comparisons, and a tier the rule does not have: no threshold, th untouched. */
        assert_false(fh_rule_threshold(r.e, river, w, FH_LEVEL_YELLOW, &th));
        assert_false(fh_rule_threshold(r.e, river, w, FH_LEVEL_RED, &th));
        assert_false(fh_rule_threshold(r.e, river, w, FH_LEVEL_NONE, &th));
        assert_true(th.bound == 149.5);
        teardown_rec(&r);
}

static void config_check_refuses_codes_and_senders_cap_cannot_carry(void **state) {
        fh_cap_config c = FH_CAP_CONFIG_DEFAULT;
        char why[256];

        assert_int_equal(fh_cap_config_check(&c, why, sizeof(why)), 0);
        c.unit = "110118";
        assert_int_equal(fh_cap_config_check(&c, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "14 digits"));
        c.unit = "1101180000000x";
        assert_int_equal(fh_cap_config_check(&c, why, sizeof(why)), -EINVAL);
        c.unit = "11011800000000";
        c.sender = "Miyun, Beijing";
        assert_int_equal(fh_cap_config_check(&c, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "commas"));
        c.sender = "";
        assert_int_equal(fh_cap_config_check(&c, why, sizeof(why)), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(raise_escalate_deescalate_clear_become_alert_update_update_cancel),
                cmocka_unit_test(every_message_references_its_alert_and_its_predecessor),
                cmocka_unit_test(identifiers_follow_the_national_pattern_and_repeat_in_every_run),
                cmocka_unit_test(an_engine_restored_mid_alert_writes_the_same_messages),
                cmocka_unit_test(text_from_registry_and_rules_is_escaped),
                cmocka_unit_test(area_is_the_town_with_a_circle_or_the_registry_polygon),
                cmocka_unit_test(parameters_carry_value_threshold_rule_and_sensor),
                cmocka_unit_test(a_threshold_is_given_only_for_a_single_comparison_with_a_station_bound),
                cmocka_unit_test(the_threshold_says_which_quantity_it_bounds),
                cmocka_unit_test(config_check_refuses_codes_and_senders_cap_cannot_carry),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
