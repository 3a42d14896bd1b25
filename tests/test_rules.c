/* Rule files (SPEC §3): schema, every error with its position, duplicate
 * ids across files, message templates and the change hash. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/rules.h"

static const char spec_example[] =
        "rules:\n"
        "  - id: rainstorm                      # required\n"
        "    title: 暴雨预警\n"
        "    kind: rain\n"
        "    match: {region: miyun, basin: [chaobai, \"42\", 7.5]}\n"
        "    levels:\n"
        "      red:    sum(rain_mm, 3h) >= 100\n"
        "      orange: sum(rain_mm, 3h) >= 50\n"
        "      yellow: sum(rain_mm, 6h) >= 50\n"
        "      blue:   sum(rain_mm, 12h) >= 50\n"
        "    report: sum(rain_mm, 3h)\n"
        "    for: 0s\n"
        "    clear_after: 30m\n"
        "    message: \"{station.name}站3小时降雨{value}毫米，达到暴雨{level_cn}预警标准\"\n";

/* Parses one file into a fresh set; returns the parse result. */
static int parse1(fh_ruleset **rs, const char *file, const char *text, fh_diags *d) {
        assert_int_equal(fh_ruleset_new(rs), 0);
        return fh_ruleset_parse(*rs, file, text, strlen(text), d);
}

/* All diagnostics, sorted, one per line. */
static const char *diags_text(fh_diags *d) {
        static char out[16384];
        size_t o = 0;

        fh_diags_sort(d);
        out[0] = 0;
        for (size_t i = 0; i < d->n; i++) {
                if (i)
                        out[o++] = '\n';
                o += fh_diag_format(&d->v[i], out + o, sizeof(out) - o);
                assert_true(o < sizeof(out));
        }
        return out;
}

/* Parses text as one file that must fail; returns its diagnostics. */
static const char *errors_of(const char *text) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;
        const char *s;

        assert_int_equal(parse1(&rs, "r.yaml", text, &d), -EINVAL);
        s = diags_text(&d);
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
        return s;
}

static const fh_rule *only_rule(const char *text, fh_ruleset **rs) {
        fh_diags d = FH_DIAGS_NULL;

        if (parse1(rs, "r.yaml", text, &d) != 0)
                fail_msg("unexpected errors:\n%s", diags_text(&d));
        assert_int_equal(fh_ruleset_finish(*rs, &d), 0);
        assert_int_equal(d.n, 0);
        assert_int_equal((*rs)->n_rules, 1);
        return &(*rs)->rules[0];
}

/* ---- valid files ------------------------------------------------------- */

static void test_spec_example_parses_into_one_complete_rule(void **state) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule(spec_example, &rs);
        const fh_template *t;

        (void) state;
        assert_string_equal(r->id, "rainstorm");
        assert_string_equal(r->title, "暴雨预警");
        assert_int_equal(r->kind, FH_KIND_RAIN);
        assert_string_equal(r->file, "r.yaml");
        assert_int_equal(r->line, 2);
        assert_int_equal(r->col, 9);

        assert_int_equal(r->n_match, 2);
        assert_string_equal(r->match[0].attr, "region");
        assert_int_equal(r->match[0].n_values, 1);
        assert_false(r->match[0].values[0].is_number);
        assert_string_equal(r->match[0].values[0].str, "miyun");
        assert_string_equal(r->match[1].attr, "basin");
        assert_int_equal(r->match[1].n_values, 3);
        assert_false(r->match[1].values[1].is_number);   /* quoted: text */
        assert_string_equal(r->match[1].values[1].str, "42");
        assert_true(r->match[1].values[2].is_number);
        assert_true(r->match[1].values[2].num == 7.5);

        assert_string_equal(r->levels[FH_LEVEL_RED]->source, "sum(rain_mm, 3h) >= 100");
        assert_string_equal(r->levels[FH_LEVEL_BLUE]->source, "sum(rain_mm, 12h) >= 50");
        assert_null(r->levels[FH_LEVEL_NONE]);
        assert_string_equal(r->report->source, "sum(rain_mm, 3h)");
        assert_int_equal(r->report->type, FH_TYPE_NUMBER);
        assert_int_equal(r->for_ms, 0);
        assert_int_equal(r->clear_after_ms, 30 * 60000);
        assert_false(r->uses_age);

        t = r->message;
        assert_non_null(t);
        assert_int_equal(t->n_parts, 6);
        assert_int_equal(t->parts[0].kind, FH_TPL_STATION);
        assert_string_equal(t->parts[0].text, "name");
        assert_int_equal(t->parts[1].kind, FH_TPL_TEXT);
        assert_string_equal(t->parts[1].text, "站3小时降雨");
        assert_int_equal(t->parts[1].len, strlen("站3小时降雨"));
        assert_int_equal(t->parts[2].kind, FH_TPL_VALUE);
        assert_int_equal(t->parts[4].kind, FH_TPL_LEVEL_CN);

        assert_int_equal(rs->syms.n_fields, 1);
        assert_int_equal(rs->syms.n_windows, 3);
        fh_ruleset_free(rs);
}

static void test_empty_file_and_empty_list_have_no_rules(void **state) {
        static const char *const texts[] = {
                "", "# nothing yet\n", "rules: []\n", "rules:\n", "---\n", "\xef\xbb\xbfrules: []\n",
        };

        (void) state;
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                fh_ruleset *rs;
                fh_diags d = FH_DIAGS_NULL;

                assert_int_equal(parse1(&rs, "r.yaml", texts[i], &d), 0);
                assert_int_equal(fh_ruleset_finish(rs, &d), 0);
                assert_int_equal(rs->n_rules, 0);
                assert_int_equal(d.n, 0);
                fh_ruleset_free(rs);
        }
}

static void test_optional_keys_take_their_defaults(void **state) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule("rules:\n- id: lvl\n  kind: water_level\n  levels: {red: level_m > 1}\n", &rs);

        (void) state;
        assert_null(r->title);
        assert_int_equal(r->n_match, 0);
        assert_null(r->report);
        assert_null(r->message);
        assert_int_equal(r->for_ms, 0);
        assert_int_equal(r->clear_after_ms, 0);
        assert_non_null(r->levels[FH_LEVEL_RED]);
        assert_null(r->levels[FH_LEVEL_ORANGE]);
        fh_ruleset_free(rs);
}

static void test_durations_accept_units_and_a_plain_zero(void **state) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule("rules:\n- id: a\n  kind: bridge\n  levels: {red: x > 1}\n"
                                     "  for: 0\n  clear_after: \"2h\"\n", &rs);

        (void) state;
        assert_int_equal(r->for_ms, 0);
        assert_int_equal(r->clear_after_ms, 2 * 3600000);
        fh_ruleset_free(rs);
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: bridge\n  levels: {red: x > 1}\n"
                                      "  for: 5x\n  clear_after: [1]\n"),
                            "r.yaml:5:8: 'for' must be a duration like 0s, 30m, 2h or 1d, got '5x'\n"
                            "r.yaml:6:16: 'clear_after' must be a duration like 0s, 30m, 2h or 1d, got a list");
}

static void test_uses_age_is_set_by_a_level_or_the_report(void **state) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule("rules:\n- id: silent\n  kind: rain\n"
                                     "  levels: {blue: age() > 3600}\n", &rs);

        (void) state;
        assert_true(r->uses_age);
        fh_ruleset_free(rs);
        r = only_rule("rules:\n- id: silent\n  kind: rain\n  levels: {blue: rain_mm > 1}\n  report: age()\n", &rs);
        assert_true(r->uses_age);
        fh_ruleset_free(rs);
}

static void test_finish_sorts_rules_by_id_in_byte_order(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;
        const char *a = "rules:\n- {id: zeta, kind: rain, levels: {red: x > 1}}\n"
                        "- {id: alpha_2, kind: rain, levels: {red: x > 1}}\n";
        const char *b = "rules:\n- {id: alpha, kind: rain, levels: {red: x > 1}}\n"
                        "- {id: alpha_10, kind: rain, levels: {red: x > 1}}\n";

        (void) state;
        assert_int_equal(parse1(&rs, "a.yaml", a, &d), 0);
        assert_int_equal(fh_ruleset_parse(rs, "b.yaml", b, strlen(b), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(rs->n_rules, 4);
        assert_true(rs->finished);
        assert_string_equal(rs->rules[0].id, "alpha");
        assert_string_equal(rs->rules[1].id, "alpha_10");
        assert_string_equal(rs->rules[2].id, "alpha_2");
        assert_string_equal(rs->rules[3].id, "zeta");
        assert_string_equal(fh_ruleset_find(rs, "alpha_2")->file, "a.yaml");
        assert_null(fh_ruleset_find(rs, "alpha_3"));
        fh_ruleset_free(rs);
}

/* ---- errors ------------------------------------------------------------ */

static void test_unknown_key_suggests_the_closest_key(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n  - id: a\n    kind: rain\n    lvels:\n      red: x > 1\n"),
                            "r.yaml:2:5: a rule needs 'levels'\n"
                            "r.yaml:4:5: unknown key 'lvels' (did you mean 'levels'?)");
        assert_string_equal(errors_of("rule:\n  - id: a\n"),
                            "r.yaml:1:1: unknown key 'rule' (did you mean 'rules'?)");
        assert_string_equal(errors_of("rules: []\nsettings: {}\n"),
                            "r.yaml:2:1: unknown key 'settings': a rule file has only 'rules:' and 'fields:'");
}

static void test_every_error_of_a_file_is_reported(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n"
                                      "  - id: Bad-Id\n"
                                      "    kind: rian\n"
                                      "    levels:\n"
                                      "      red: sum(rain_mm, 3h)\n"
                                      "      purple: x > 1\n"
                                      "  - id: good\n"
                                      "    kind: rain\n"
                                      "    levels: {red: x > 1}\n"
                                      "  - id: second\n"
                                      "    kind: rain\n"
                                      "    levels: {}\n"
                                      "    report: rain_mm > 1 and y\n"
                                      "    match: {Region: x, basin: [], lat: {a: 1}}\n"
                                      "    title: [x]\n"
                                      "    id: again\n"),
                            "r.yaml:2:9: rule id 'Bad-Id' is not valid: use lowercase letters, digits and '_', starting with a letter\n"
                            "r.yaml:3:11: unknown kind 'rian' (did you mean 'rain'?)\n"
                            "r.yaml:5:12: a level condition must be true/false (a comparison), got a number\n"
                            "r.yaml:6:7: unknown level 'purple': levels are red, orange, yellow, blue\n"
                            "r.yaml:12:13: 'levels' needs at least one of red, orange, yellow, blue\n"
                            "r.yaml:13:13: a report must be a number, got true/false\n"
                            "r.yaml:13:29: 'and' needs true/false operands, got a number\n"
                            "r.yaml:14:13: match attribute 'Region' is not a column name (lowercase letters, digits and '_', starting with a letter, at most 64)\n"
                            "r.yaml:14:31: the match list for 'basin' is empty\n"
                            "r.yaml:14:40: the match value for 'lat' must be a value or a list of values, got a mapping\n"
                            "r.yaml:15:12: 'title' must be text, got a list\n"
                            "r.yaml:16:5: duplicate key 'id'");
}

static void test_a_file_with_errors_still_adds_its_good_rules(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(parse1(&rs, "r.yaml", "rules:\n- {id: good, kind: rain, levels: {red: x > 1}}\n"
                                               "- {id: bad, kind: rain, levels: {red: x}}\n", &d), -EINVAL);
        assert_int_equal(d.n, 1);
        assert_int_equal(rs->n_rules, 1);
        assert_string_equal(rs->rules[0].id, "good");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

static void test_missing_required_keys_point_at_the_rule(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n  - title: x\n"),
                            "r.yaml:2:5: a rule needs an 'id'\n"
                            "r.yaml:2:5: a rule needs a 'kind' (rain, water_level, landslide or bridge)\n"
                            "r.yaml:2:5: a rule needs 'levels'");
        assert_string_equal(errors_of("rules:\n  - just text\n"),
                            "r.yaml:2:5: a rule must be a mapping with id, kind and levels, got text");
        assert_string_equal(errors_of("- id: x\n"),
                            "r.yaml:1:1: a rule file must be a mapping with the key 'rules:' (or 'fields:'), got a list");
        assert_string_equal(errors_of("rules: {id: x}\n"), "r.yaml:1:8: 'rules' must be a list of rules, got a mapping");
}

static void test_duplicate_keys_in_a_mapping_are_errors(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  kind: rain\n"
                                      "  levels: {red: x > 1, red: x > 2}\n"
                                      "  match: {region: a, region: b}\n"),
                            "r.yaml:4:3: duplicate key 'kind'\n"
                            "r.yaml:5:24: duplicate level 'red'\n"
                            "r.yaml:6:22: duplicate match attribute 'region'");
        assert_string_equal(errors_of("rules: []\nrules: []\n"), "r.yaml:2:1: duplicate key 'rules'");
}

static void test_duplicate_id_across_files_points_at_the_second_definition(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;
        const char *a = "rules:\n  - id: flood\n    kind: water_level\n    levels: {red: level_m > 1}\n";
        const char *b = "# other basin\nrules:\n  - id: other\n    kind: rain\n    levels: {red: x > 1}\n"
                        "  - id: flood\n    kind: water_level\n    levels: {red: level_m > 2}\n";

        (void) state;
        assert_int_equal(parse1(&rs, "a.yaml", a, &d), 0);
        assert_int_equal(fh_ruleset_parse(rs, "b.yaml", b, strlen(b), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), -EINVAL);
        assert_string_equal(diags_text(&d), "b.yaml:6:9: duplicate rule id 'flood' (first defined at a.yaml:2)");
        /* The first definition stays; the set is still usable. */
        assert_int_equal(rs->n_rules, 2);
        assert_string_equal(fh_ruleset_find(rs, "flood")->file, "a.yaml");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

static void test_duplicate_id_within_one_file_is_reported_by_parse(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(parse1(&rs, "r.yaml", "rules:\n- {id: x, kind: rain, levels: {red: a > 1}}\n"
                                               "- {id: y, kind: rain, levels: {red: a > 1}}\n"
                                               "- {id: x, kind: rain, levels: {red: a > 2}}\n"
                                               "- {id: x, kind: rian, levels: {red: a > 2}}\n", &d), -EINVAL);
        assert_string_equal(diags_text(&d),
                            "r.yaml:4:8: duplicate rule id 'x' (first defined at r.yaml:2)\n"
                            "r.yaml:5:8: duplicate rule id 'x' (first defined at r.yaml:2)\n"
                            "r.yaml:5:17: unknown kind 'rian' (did you mean 'rain'?)");
        fh_diags_clear(&d);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(rs->n_rules, 2);
        assert_string_equal(fh_ruleset_find(rs, "x")->levels[FH_LEVEL_RED]->source, "a > 1");
        fh_ruleset_free(rs);
}

static void test_expression_columns_count_from_the_scalar_in_the_file(void **state) {
        (void) state;
        /* plain, double-quoted, single-quoted, flow, after multi-byte text */
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  levels:\n"
                                      "    red: sum(rain_mm, 3h) > 3h\n"
                                      "    orange: \"summ(rain_mm, 3h) > 1\"\n"
                                      "    yellow: 'x > 1 and y'\n"
                                      "  title: 暴雨\n"
                                      "- {id: b, title: 暴雨, kind: rain, levels: {red: x >}}\n"),
                            "r.yaml:5:29: a duration like '3h' is only allowed as a window length\n"
                            "r.yaml:6:14: unknown function 'summ' (did you mean 'sum'?)\n"
                            "r.yaml:7:24: 'and' needs true/false operands, got a number\n"
                            "r.yaml:9:55: expected a value, got the end of the expression");
}

static void test_expression_columns_in_a_literal_block_follow_its_lines(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  levels:\n"
                                      "    red: |\n"
                                      "      sum(rain_mm, 3h) > 100\n"
                                      "        and foo(x)\n"),
                            "r.yaml:7:13: unknown function 'foo'");
        /* Folded text loses its line breaks: the error points at its start. */
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  levels:\n"
                                      "    red: >\n"
                                      "      sum(rain_mm, 3h) > 100\n"
                                      "        and foo(x)\n"),
                            "r.yaml:6:7: unknown function 'foo'");
}

static void test_message_placeholder_errors_point_at_their_column(void **state) {
        fh_ruleset *rs;
        const fh_rule *r;

        (void) state;
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  levels: {red: x > 1}\n"
                                      "  message: \"{station.name}: {vlaue} {nope} {station} } {{ok}} {level\"\n"),
                            "r.yaml:5:29: unknown placeholder '{vlaue}' (did you mean '{value}'?)\n"
                            "r.yaml:5:37: unknown placeholder '{nope}'\n"
                            "r.yaml:5:44: unknown placeholder '{station}' (write '{station.<column>}', like '{station.name}')\n"
                            "r.yaml:5:54: unmatched '}' in message (write '}}' for a literal brace)\n"
                            "r.yaml:5:63: unterminated '{' in message (write '{{' for a literal brace)");
        assert_string_equal(errors_of("rules:\n- id: a\n  kind: rain\n  levels: {red: x > 1}\n"
                                      "  message: 测站{station.Name}\n"),
                            "r.yaml:5:18: '{station.Name}' needs a column name after 'station.' (lowercase letters, digits and '_')");

        r = only_rule("rules:\n- id: a\n  kind: rain\n  levels: {red: x > 1}\n"
                      "  message: \"{{{sensor}}} {ts}{title} {level}\"\n", &rs);
        assert_int_equal(r->message->n_parts, 7);
        assert_string_equal(r->message->parts[0].text, "{");
        assert_int_equal(r->message->parts[1].kind, FH_TPL_SENSOR);
        assert_string_equal(r->message->parts[2].text, "} ");
        assert_int_equal(r->message->parts[3].kind, FH_TPL_TS);
        assert_int_equal(r->message->parts[4].kind, FH_TPL_TITLE);
        assert_int_equal(r->message->parts[5].kind, FH_TPL_TEXT);
        assert_int_equal(r->message->parts[6].kind, FH_TPL_LEVEL);
        fh_ruleset_free(rs);
}

static void test_yaml_syntax_error_reports_libyaml_problem_and_position(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n  - id: a\n   kind: rain\n"),
                            "r.yaml:3:4: invalid YAML: did not find expected '-' indicator (while parsing a block collection at line 2)");
        assert_string_equal(errors_of("rules: [\n"),
                            "r.yaml:2:1: invalid YAML: did not find expected node content (while parsing a flow node at line 2)");
        assert_string_equal(errors_of("rules: []\n\xff\n"),
                            "r.yaml:2:1: invalid YAML: invalid leading UTF-8 octet (#FF)");
        assert_string_equal(errors_of("rules: []\n---\nrules: []\n"),
                            "r.yaml:3:1: a rule file holds one YAML document; this is a second one");
}

static void test_kind_and_level_names_get_suggestions(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n- {id: a, kind: waterlevel, levels: {rde: x > 1, none: x > 2}}\n"),
                            "r.yaml:2:17: unknown kind 'waterlevel' (did you mean 'water_level'?)\n"
                            "r.yaml:2:38: unknown level 'rde' (did you mean 'red'?)\n"
                            "r.yaml:2:50: unknown level 'none': levels are red, orange, yellow, blue");
}

static void test_rule_id_must_be_a_short_identifier(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules:\n- {id: a234567890123456789012345678901234567890123456789012345678901234x,"
                                      " kind: rain, levels: {red: x > 1}}\n"),
                            "r.yaml:2:8: rule id 'a234567890123456789012345678901234567890...' is longer than 64 characters");
        assert_string_equal(errors_of("rules:\n- {id: \"a\\0b\", kind: rain, levels: {red: x > 1}}\n"),
                            "r.yaml:2:8: 'id' contains a NUL character");
}

static void test_match_numbers_are_plain_scalars_that_parse_fully(void **state) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule("rules:\n- id: a\n  kind: rain\n  levels: {red: x > 1}\n"
                                     "  match: {v: [12, '12', 1e3, 12abc, -0.5, .inf, nan, 0x10x]}\n", &rs);
        const fh_match_value *v = r->match[0].values;

        (void) state;
        assert_int_equal(r->match[0].n_values, 8);
        assert_true(v[0].is_number && v[0].num == 12);
        assert_false(v[1].is_number);
        assert_true(v[2].is_number && v[2].num == 1000);
        assert_false(v[3].is_number);
        assert_true(v[4].is_number && v[4].num == -0.5);
        assert_false(v[5].is_number);
        assert_false(v[6].is_number);
        assert_false(v[7].is_number);
        assert_string_equal(v[3].str, "12abc");
        fh_ruleset_free(rs);
}

/* ---- hash -------------------------------------------------------------- */

static uint64_t hash_of(const char *text) {
        fh_ruleset *rs;
        const fh_rule *r = only_rule(text, &rs);
        uint64_t h = r->hash;

        fh_ruleset_free(rs);
        return h;
}

static void test_identical_rules_hash_the_same_and_a_changed_threshold_does_not(void **state) {
        const char *base = "rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n";

        (void) state;
        assert_true(hash_of(base) == hash_of(base));
        assert_true(hash_of(base) == hash_of("# moved\nrules:\n\n  - kind: rain\n    id: a\n    for: 10m\n"
                                             "    levels:\n      red: sum(rain_mm, 3h) >= 100\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 90\"}\n  for: 10m\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {orange: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 5m\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: bridge\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n  title: t\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n  match: {r: x}\n"));
        assert_true(hash_of(base) != hash_of("rules:\n- id: a\n  kind: rain\n  levels: {red: \"sum(rain_mm, 3h) >= 100\"}\n  for: 10m\n  message: hi\n"));
}

/* ---- caps -------------------------------------------------------------- */

static void test_too_many_errors_stop_the_file_with_a_note(void **state) {
        char *text = malloc(64 * 1024);
        size_t o = 0;
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        o += (size_t) sprintf(text + o, "rules:\n");
        for (int i = 0; i < 1000; i++)
                o += (size_t) sprintf(text + o, "- {id: r%d, kind: x}\n", i);
        assert_int_equal(parse1(&rs, "r.yaml", text, &d), -EINVAL);
        assert_true(d.n_errors <= 202);
        assert_string_equal(d.v[d.n - 1].msg, "too many errors, giving up on this file");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
        free(text);
}

static void test_aliases_cannot_make_the_loader_loop(void **state) {
        (void) state;
        assert_string_equal(errors_of("rules: &a\n- *a\n"),
                            "r.yaml:1:8: a rule must be a mapping with id, kind and levels, got a list");
        assert_string_equal(errors_of("rules:\n- &r {id: a, kind: rain, levels: {red: x > 1}}\n- *r\n"),
                            "r.yaml:2:11: duplicate rule id 'a' (first defined at r.yaml:2)");
}

/* ---- declared fields --------------------------------------------------- */

static const char fields_yaml[] =
        "fields:\n"
        "  rain:\n"
        "    rain_mm: mm\n"
        "  bridge:\n"
        "    strain_ue: µε\n"
        "    count: ~\n";

/* Rules then declarations, in this order as `fenghuo check` reads rules/
 * (bridge.yaml, fields.yaml, rain.yaml): errors come from finish. */
static int load2(fh_ruleset **rs, const char *rules, fh_diags *d) {
        assert_int_equal(parse1(rs, "a.yaml", rules, d), 0);
        assert_int_equal(fh_ruleset_parse(*rs, "fields.yaml", fields_yaml, strlen(fields_yaml), d), 0);
        return fh_ruleset_finish(*rs, d);
}

static void test_misspelt_field_is_refused_at_its_place_with_a_suggestion(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(load2(&rs, "rules:\n  - id: storm\n    kind: rain\n    levels:\n"
                                    "      red: sum(rain_mn, 3h) >= 100\n"
                                    "      blue: rain_mm > 1 and humidity > 3\n", &d), -EINVAL);
        assert_string_equal(diags_text(&d),
                            "a.yaml:5:16: unknown field 'rain_mn' for kind rain (did you mean 'rain_mm'?)\n"
                            "a.yaml:6:29: unknown field 'humidity': kind rain declares no such field (see 'fields:')");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

static void test_a_field_of_another_kind_is_unknown_too(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(load2(&rs, "rules:\n  - id: b\n    kind: bridge\n    levels:\n      red: rain_mm > 1\n", &d),
                         -EINVAL);
        assert_string_equal(diags_text(&d),
                            "a.yaml:5:12: unknown field 'rain_mm': kind bridge declares no such field (see 'fields:')");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

static void test_kinds_without_declarations_are_not_checked(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        /* water_level has no entry: old rule sets keep loading. */
        assert_int_equal(load2(&rs, "rules:\n  - id: w\n    kind: water_level\n    levels:\n      red: levle_m > 1\n", &d),
                         0);
        assert_int_equal(d.n, 0);
        assert_false(rs->declared[FH_KIND_WATER_LEVEL]);
        assert_true(rs->declared[FH_KIND_RAIN]);
        fh_ruleset_free(rs);
}

static void test_unit_renders_the_declared_unit_of_the_report_field(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(load2(&rs, "rules:\n"
                                    "  - id: s\n    kind: bridge\n    levels:\n      red: abs(strain_ue) > 1\n"
                                    "    report: abs(last(strain_ue))\n    message: \"{value}{unit}\"\n"
                                    "  - id: c\n    kind: bridge\n    levels:\n      red: count > 1\n"
                                    "    report: count\n    message: \"{value}{unit}\"\n", &d), 0);
        assert_int_equal(d.n, 0);
        assert_string_equal(fh_ruleset_find(rs, "s")->unit, "µε");
        assert_string_equal(fh_ruleset_find(rs, "c")->unit, "");
        fh_ruleset_free(rs);

        /* A rate is per its window; a ratio has no unit fenghuo could name. */
        assert_int_equal(load2(&rs, "rules:\n"
                                    "  - id: r1\n    kind: rain\n    levels:\n      red: rain_mm > 1\n"
                                    "    report: rate(rain_mm, 1h)\n"
                                    "  - id: r2\n    kind: rain\n    levels:\n      red: rain_mm > 1\n"
                                    "    report: -rate(rain_mm, 90m)\n"
                                    "  - id: r3\n    kind: rain\n    levels:\n      red: rain_mm > 1\n"
                                    "    report: sum(rain_mm, 1h) / 2\n", &d), 0);
        assert_string_equal(fh_ruleset_find(rs, "r1")->unit, "mm/h");
        assert_string_equal(fh_ruleset_find(rs, "r2")->unit, "mm/90m");
        assert_null(fh_ruleset_find(rs, "r3")->unit);
        fh_ruleset_free(rs);
}

static void test_unit_without_a_unit_to_show_is_an_error(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_int_equal(load2(&rs, "rules:\n"
                                    "  - id: a\n    kind: rain\n    levels:\n      red: age() > 1\n"
                                    "    report: age()\n    message: \"x {unit}\"\n"
                                    "  - id: b\n    kind: bridge\n    levels:\n      red: strain_ue > count\n"
                                    "    report: strain_ue - count\n    message: \"{value} {unit}\"\n"
                                    "  - id: c\n    kind: landslide\n    levels:\n      red: d > 1\n"
                                    "    report: d\n    message: \"{unit}\"\n"
                                    "  - id: d\n    kind: rain\n    levels:\n      red: rain_mm > 1\n"
                                    "    report: atan_deg(rain_mm)\n    message: \"{unit}\"\n", &d), -EINVAL);
        assert_string_equal(diags_text(&d),
                            "a.yaml:7:17: '{unit}' has no unit to show: its report is not one field's value "
                            "(a field, last, sum, avg, min, max, delta or rate of it, abs or minus)\n"
                            "a.yaml:13:23: '{unit}' has no unit to show: its report reads more than one value\n"
                            "a.yaml:19:15: '{unit}' has no unit to show: no 'fields:' declares its kind's fields\n"
                            "a.yaml:25:15: '{unit}' has no unit to show: its report is not one field's value "
                            "(a field, last, sum, avg, min, max, delta or rate of it, abs or minus)");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

static void test_bad_declarations_are_reported_at_their_place(void **state) {
        fh_ruleset *rs;
        fh_diags d = FH_DIAGS_NULL;

        (void) state;
        assert_string_equal(errors_of("fields:\n  rian:\n    rain_mm: mm\n"
                                      "  rain:\n    Rain: mm\n    level: [m]\n"
                                      "  bridge: strain_ue\n"),
                            "r.yaml:2:3: unknown kind 'rian' (did you mean 'rain'?)\n"
                            "r.yaml:5:5: field name 'Rain' is not valid: at most 32 lowercase letters, digits and '_', "
                            "starting with a letter\n"
                            "r.yaml:6:12: a unit must be text, got a list\n"
                            "r.yaml:7:11: the fields of kind bridge must map each field name to its unit, "
                            "like 'rain_mm: mm', got text");
        assert_string_equal(errors_of("fields: []\n"), "r.yaml:1:9: 'fields' must map each station kind to its fields, got a list");
        /* Declared twice, in two files. */
        assert_int_equal(parse1(&rs, "f.yaml", fields_yaml, &d), 0);
        assert_int_equal(fh_ruleset_parse(rs, "g.yaml", "fields:\n  rain:\n    rain_mm: cm\n", 31, &d), -EINVAL);
        assert_string_equal(diags_text(&d), "g.yaml:3:5: field 'rain_mm' of kind rain is declared twice (first at f.yaml:3)");
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spec_example_parses_into_one_complete_rule),
                cmocka_unit_test(test_empty_file_and_empty_list_have_no_rules),
                cmocka_unit_test(test_optional_keys_take_their_defaults),
                cmocka_unit_test(test_durations_accept_units_and_a_plain_zero),
                cmocka_unit_test(test_uses_age_is_set_by_a_level_or_the_report),
                cmocka_unit_test(test_finish_sorts_rules_by_id_in_byte_order),
                cmocka_unit_test(test_unknown_key_suggests_the_closest_key),
                cmocka_unit_test(test_every_error_of_a_file_is_reported),
                cmocka_unit_test(test_a_file_with_errors_still_adds_its_good_rules),
                cmocka_unit_test(test_missing_required_keys_point_at_the_rule),
                cmocka_unit_test(test_duplicate_keys_in_a_mapping_are_errors),
                cmocka_unit_test(test_duplicate_id_across_files_points_at_the_second_definition),
                cmocka_unit_test(test_duplicate_id_within_one_file_is_reported_by_parse),
                cmocka_unit_test(test_expression_columns_count_from_the_scalar_in_the_file),
                cmocka_unit_test(test_expression_columns_in_a_literal_block_follow_its_lines),
                cmocka_unit_test(test_message_placeholder_errors_point_at_their_column),
                cmocka_unit_test(test_yaml_syntax_error_reports_libyaml_problem_and_position),
                cmocka_unit_test(test_kind_and_level_names_get_suggestions),
                cmocka_unit_test(test_rule_id_must_be_a_short_identifier),
                cmocka_unit_test(test_match_numbers_are_plain_scalars_that_parse_fully),
                cmocka_unit_test(test_identical_rules_hash_the_same_and_a_changed_threshold_does_not),
                cmocka_unit_test(test_too_many_errors_stop_the_file_with_a_note),
                cmocka_unit_test(test_aliases_cannot_make_the_loader_loop),
                cmocka_unit_test(test_misspelt_field_is_refused_at_its_place_with_a_suggestion),
                cmocka_unit_test(test_a_field_of_another_kind_is_unknown_too),
                cmocka_unit_test(test_kinds_without_declarations_are_not_checked),
                cmocka_unit_test(test_unit_renders_the_declared_unit_of_the_report_field),
                cmocka_unit_test(test_unit_without_a_unit_to_show_is_an_error),
                cmocka_unit_test(test_bad_declarations_are_reported_at_their_place),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
