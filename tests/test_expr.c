/* Rule expressions: parsing, type checking, positions of errors, and the
 * evaluator's handling of missing values (SPEC §3.1). */
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

#include "fenghuo/expr.h"

/* ---- a fake world ------------------------------------------------------ */

/* Values are looked up by a name the test writes: "rain_mm" for last(),
 * "sum(rain_mm,10800000)" for a window, "station.lat" for an attribute. */
typedef struct kv {
        const char *name;
        double v;
} kv;

typedef struct world {
        const fh_symbols *syms;
        const kv *vals;
        size_t n_vals;
        double age;
        unsigned calls;
        fh_opcode last_op;
        unsigned last_window;
} world;

static const char *op_name(fh_opcode op) {
        switch (op) {
        case FH_OP_SUM: return "sum";
        case FH_OP_AVG: return "avg";
        case FH_OP_MIN: return "min";
        case FH_OP_MAX: return "max";
        case FH_OP_COUNT: return "count";
        case FH_OP_DELTA: return "delta";
        case FH_OP_RATE: return "rate";
        default: return "last";
        }
}

static double lookup(const world *w, const char *name) {
        for (size_t i = 0; i < w->n_vals; i++)
                if (strcmp(w->vals[i].name, name) == 0)
                        return w->vals[i].v;
        return NAN;
}

static double world_field(void *ctx, fh_opcode op, unsigned field, unsigned window) {
        world *w = ctx;
        char name[128];

        w->calls++;
        w->last_op = op;
        w->last_window = window;
        assert_true(field < w->syms->n_fields);
        if (op == FH_OP_LAST) {
                assert_int_equal(window, 0);
                snprintf(name, sizeof(name), "%s", w->syms->fields[field]);
        } else {
                assert_true(window < w->syms->n_windows);
                assert_int_equal(w->syms->windows[window].field, field);
                snprintf(name, sizeof(name), "%s(%s,%lld)", op_name(op), w->syms->fields[field],
                         (long long) w->syms->windows[window].ms);
        }
        return lookup(w, name);
}

static double world_station(void *ctx, unsigned attr) {
        world *w = ctx;
        char name[128];

        assert_true(attr < w->syms->n_attrs);
        snprintf(name, sizeof(name), "station.%s", w->syms->attrs[attr]);
        return lookup(w, name);
}

static double world_age(void *ctx) {
        world *w = ctx;
        return w->age;
}

static const kv default_vals[] = {
        { "rain_mm", 4.5 },
        { "level_m", 12.0 },
        { "sum(rain_mm,10800000)", 63.5 },
        { "max(level_m,3600000)", 13.25 },
        { "rate(disp_mm,86400000)", 2.0 },
        { "count(rain_mm,600000)", 0 },
        { "station.warning_level", 12.5 },
        /* "missing" is never defined: NaN */
};

static const fh_srcpos test_pos = { "r.yaml", 5, 12 };

/* Compiles src (which must be valid) and evaluates it in the default world. */
static double eval_in(const char *src, fh_type want, const kv *vals, size_t n_vals) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *p = NULL;
        world w;
        fh_eval_env env;
        double v;
        int r;

        r = fh_expr_compile(src, strlen(src), want, &test_pos, &syms, &p, &d);
        if (r < 0)
                fail_msg("'%s' did not compile: %s", src, d.n ? d.v[0].msg : "?");
        assert_int_equal(d.n, 0);
        w = (world) { .syms = &syms, .vals = vals, .n_vals = n_vals, .age = 90 };
        env = (fh_eval_env) { world_field, world_station, world_age, &w };
        v = fh_program_eval(p, &env);
        fh_program_free(p);
        fh_symbols_clear(&syms);
        fh_diags_clear(&d);
        return v;
}

static double num(const char *src) {
        return eval_in(src, FH_TYPE_NUMBER, default_vals, sizeof(default_vals) / sizeof(default_vals[0]));
}

static double cond(const char *src) {
        return eval_in(src, FH_TYPE_BOOL, default_vals, sizeof(default_vals) / sizeof(default_vals[0]));
}

/* Compiles src, which must fail; returns all diagnostics joined by '\n'. */
static char *errors_of(const char *src, size_t len, fh_type want) {
        static char out[8192];
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *p = NULL;
        size_t o = 0;

        if (fh_expr_compile(src, len, want, &test_pos, &syms, &p, &d) == 0)
                fail_msg("'%.60s' compiled but should not", src);
        assert_null(p);
        assert_true(d.n > 0);
        out[0] = 0;
        for (size_t i = 0; i < d.n; i++) {
                if (i)
                        out[o++] = '\n';
                o += fh_diag_format(&d.v[i], out + o, sizeof(out) - o);
                assert_true(o < sizeof(out));
        }
        /* A failed compile leaves no names behind. */
        assert_int_equal(syms.n_fields, 0);
        assert_int_equal(syms.n_windows, 0);
        fh_symbols_clear(&syms);
        fh_diags_clear(&d);
        return out;
}

static char *err(const char *src, fh_type want) {
        return errors_of(src, strlen(src), want);
}

/* ---- precedence and associativity -------------------------------------- */

static void test_multiplication_binds_tighter_than_addition(void **state) {
        (void) state;
        assert_true(num("1 + 2 * 3") == 7);
        assert_true(num("(1 + 2) * 3") == 9);
        assert_true(num("2 * 3 + 1") == 7);
        assert_true(num("8 - 6 / 2") == 5);
}

static void test_subtraction_and_division_are_left_associative(void **state) {
        (void) state;
        assert_true(num("10 - 4 - 3") == 3);
        assert_true(num("64 / 4 / 2") == 8);
        assert_true(num("10 - (4 - 3)") == 9);
}

static void test_unary_minus_binds_tightest_and_nests(void **state) {
        (void) state;
        assert_true(num("-2 * 3") == -6);
        assert_true(num("- - 2") == 2);
        assert_true(num("2 - -1") == 3);
        assert_true(num("-rain_mm") == -4.5);
        assert_true(num("-(1 + 2)") == -3);
}

static void test_and_binds_tighter_than_or_and_not_tighter_than_and(void **state) {
        (void) state;
        assert_true(cond("1 == 1 or 1 == 1 and 1 == 2") == 1);
        assert_true(cond("(1 == 1 or 1 == 1) and 1 == 2") == 0);
        assert_true(cond("not 1 == 1 or 1 == 1") == 1);
        assert_true(cond("not (1 == 1 or 1 == 1)") == 0);
        assert_true(cond("not not 1 == 1") == 1);
}

static void test_arithmetic_binds_tighter_than_comparison(void **state) {
        (void) state;
        assert_true(cond("1 + 2 >= 3") == 1);
        assert_true(cond("1 + 2 > 3") == 0);
        assert_true(cond("rain_mm * 2 == 9") == 1);
}

static void test_numbers_accept_fractions_and_exponents(void **state) {
        (void) state;
        assert_true(num("1.5") == 1.5);
        assert_true(num("2e3") == 2000);
        assert_true(num("2.5E-1") == 0.25);
        assert_true(num(".5") == 0.5);
}

/* ---- names and functions ----------------------------------------------- */

static void test_bare_name_is_the_latest_value_of_that_field(void **state) {
        (void) state;
        assert_true(num("rain_mm") == 4.5);
        assert_true(num("last(rain_mm)") == 4.5);
        assert_true(isnan(num("missing")));
}

static void test_window_functions_ask_for_their_field_and_window(void **state) {
        (void) state;
        assert_true(num("sum(rain_mm, 3h)") == 63.5);
        assert_true(num("sum(rain_mm, 180m)") == 63.5);
        assert_true(num("sum(rain_mm,10800s)") == 63.5);
        assert_true(num("max(level_m, 1h)") == 13.25);
        assert_true(num("rate(disp_mm, 1d)") == 2);
        assert_true(num("count(rain_mm, 10m)") == 0);
        assert_true(isnan(num("avg(rain_mm, 3h)")));
}

static void test_station_attribute_reads_the_registry_column(void **state) {
        (void) state;
        assert_true(cond("level_m < station.warning_level") == 1);
        assert_true(isnan(num("station.lat")));
}

static void test_math_functions_compute_abs_sqrt_and_degrees(void **state) {
        (void) state;
        assert_true(num("abs(-3)") == 3);
        assert_true(num("abs(rain_mm - 10)") == 5.5);
        assert_true(num("sqrt(16)") == 4);
        assert_true(fabs(num("atan_deg(1)") - 45) < 1e-12);
        assert_true(fabs(num("atan_deg(-1)") + 45) < 1e-12);
        assert_true(num("age()") == 90);
}

static void test_compile_interns_fields_and_windows_once(void **state) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *a = NULL, *b = NULL;
        const char *sa = "sum(rain_mm, 3h) >= 50 and last(rain_mm) > 0";
        const char *sb = "sum(rain_mm, 180m) + sum(rain_mm, 6h) + station.lat + station.lat";

        (void) state;
        assert_int_equal(fh_expr_compile(sa, strlen(sa), FH_TYPE_BOOL, &test_pos, &syms, &a, &d), 0);
        assert_int_equal(fh_expr_compile(sb, strlen(sb), FH_TYPE_NUMBER, &test_pos, &syms, &b, &d), 0);
        assert_int_equal(syms.n_fields, 1);
        assert_string_equal(syms.fields[0], "rain_mm");
        assert_int_equal(syms.n_windows, 2);
        assert_int_equal(syms.windows[0].ms, 3 * 3600000);
        assert_int_equal(syms.windows[1].ms, 6 * 3600000);
        assert_int_equal(syms.n_attrs, 1);
        assert_string_equal(syms.attrs[0], "lat");
        assert_int_equal(a->type, FH_TYPE_BOOL);
        assert_int_equal(b->type, FH_TYPE_NUMBER);
        assert_string_equal(a->source, sa);
        assert_false(a->uses_age);
        /* Postfix: sum, 50, >=, last, 0, >, and. */
        assert_int_equal(a->n, 7);
        assert_int_equal(a->code[0].op, FH_OP_SUM);
        assert_int_equal(a->code[0].arg, 0);
        assert_int_equal(a->code[6].op, FH_OP_AND);
        assert_int_equal(b->code[0].arg, 0);
        assert_int_equal(b->code[1].arg, 1);
        assert_int_equal(d.n, 0);
        fh_program_free(a);
        fh_program_free(b);
        fh_symbols_clear(&syms);
}

static void test_age_sets_uses_age(void **state) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *p = NULL;
        const char *s = "age() > 600 or rain_mm > 1";

        (void) state;
        assert_int_equal(fh_expr_compile(s, strlen(s), FH_TYPE_BOOL, &test_pos, &syms, &p, &d), 0);
        assert_true(p->uses_age);
        fh_program_free(p);
        fh_symbols_clear(&syms);
}

static void test_compares_split_each_comparison_into_its_operands(void **state) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *p = NULL, *rep = NULL;
        const char *s = "level_m >= station.warning_level - 0.5 and not (rate(disp_mm, 1d) > 0.3 or 1 < 2)";
        const char *r = "last(level_m)";
        fh_compare c[4];
        world w = { .syms = &syms, .vals = default_vals, .n_vals = FH_ARRAY_SIZE(default_vals) };
        fh_eval_env env = { world_field, world_station, world_age, &w };

        (void) state;
        assert_int_equal(fh_expr_compile(s, strlen(s), FH_TYPE_BOOL, &test_pos, &syms, &p, &d), 0);
        assert_int_equal(fh_expr_compile(r, strlen(r), FH_TYPE_NUMBER, &test_pos, &syms, &rep, &d), 0);
        assert_int_equal(fh_program_compares(p, c, 4), 3);
        assert_int_equal(c[0].op, FH_OP_GE);
        assert_true(fh_program_same(&c[0].left, rep));
        assert_false(fh_program_same(&c[0].right, rep));
        assert_true(fh_program_eval(&c[0].left, &env) == 12.0);
        assert_true(fh_program_eval(&c[0].right, &env) == 12.0);
        assert_int_equal(c[1].op, FH_OP_GT);
        assert_true(fh_program_eval(&c[1].left, &env) == 2.0);
        assert_true(fh_program_eval(&c[1].right, &env) == 0.3);
        assert_int_equal(c[2].op, FH_OP_LT);
        /* Only as many as asked for are stored; all are counted. */
        assert_int_equal(fh_program_compares(p, c, 1), 3);
        assert_int_equal(fh_program_compares(rep, c, 4), 0);
        fh_program_free(p);
        fh_program_free(rep);
        fh_symbols_clear(&syms);
}

static void test_max_stack_is_the_depth_the_program_needs(void **state) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        fh_program *p = NULL;

        (void) state;
        assert_int_equal(fh_expr_compile("1 + 2 + 3 + 4", 13, FH_TYPE_NUMBER, &test_pos, &syms, &p, &d), 0);
        assert_int_equal(p->max_stack, 2);
        p = fh_program_free(p);
        assert_int_equal(fh_expr_compile("1 + (2 + (3 + 4))", 17, FH_TYPE_NUMBER, &test_pos, &syms, &p, &d), 0);
        assert_int_equal(p->max_stack, 4);
        assert_null(fh_program_free(p));
        fh_symbols_clear(&syms);
}

/* ---- missing values ---------------------------------------------------- */

static void test_arithmetic_with_a_missing_value_is_missing(void **state) {
        (void) state;
        assert_true(isnan(num("missing + 1")));
        assert_true(isnan(num("1 - missing")));
        assert_true(isnan(num("missing * 0")));
        assert_true(isnan(num("-missing")));
        assert_true(isnan(num("abs(missing)")));
        assert_true(isnan(num("sqrt(missing)")));
        assert_true(isnan(num("atan_deg(missing)")));
        assert_true(isnan(num("sum(rain_mm, 3h) + station.lat")));
}

static void test_division_by_zero_is_missing(void **state) {
        (void) state;
        assert_true(isnan(num("1 / 0")));
        assert_true(isnan(num("0 / 0")));
        assert_true(isnan(num("-1 / 0")));
        assert_true(isnan(num("rain_mm / (level_m - 12)")));
        assert_true(cond("1 / 0 > 0") == 0);
        assert_true(cond("1 / 0 <= 0") == 0);
}

static void test_sqrt_of_a_negative_is_missing(void **state) {
        (void) state;
        assert_true(isnan(num("sqrt(-1)")));
        assert_true(isnan(num("sqrt(0 - rain_mm)")));
        assert_true(num("sqrt(0)") == 0);
}

static void test_every_comparison_with_a_missing_value_is_false(void **state) {
        (void) state;
        assert_true(cond("missing > 1") == 0);
        assert_true(cond("missing >= 1") == 0);
        assert_true(cond("missing < 1") == 0);
        assert_true(cond("missing <= 1") == 0);
        assert_true(cond("missing == missing") == 0);
        assert_true(cond("missing != 1") == 0);
        assert_true(cond("1 != missing") == 0);
        assert_true(cond("missing != missing") == 0);
        assert_true(cond("1 != 2") == 1);
        assert_true(cond("2 != 2") == 0);
}

static void test_not_and_or_are_two_valued_logic_over_comparisons(void **state) {
        (void) state;
        assert_true(cond("not missing > 1") == 1);
        assert_true(cond("missing > 1 or rain_mm > 1") == 1);
        assert_true(cond("missing > 1 and rain_mm > 1") == 0);
        assert_true(cond("1 < 2 and 2 < 3") == 1);
        assert_true(cond("1 > 2 or 2 > 3") == 0);
        assert_true(cond("not 1 < 2") == 0);
}

/* ---- errors ------------------------------------------------------------ */

static void test_and_with_a_number_operand_is_a_type_error_at_the_operand(void **state) {
        (void) state;
        assert_string_equal(err("rain_mm and 1 > 0", FH_TYPE_BOOL),
                            "r.yaml:5:12: 'and' needs true/false operands, got a number");
        assert_string_equal(err("1 > 0 or rain_mm", FH_TYPE_BOOL),
                            "r.yaml:5:21: 'or' needs true/false operands, got a number");
        assert_string_equal(err("not rain_mm", FH_TYPE_BOOL),
                            "r.yaml:5:16: 'not' needs a true/false operand, got a number");
}

static void test_comparison_and_arithmetic_need_numbers(void **state) {
        (void) state;
        assert_string_equal(err("(1 < 2) > 0", FH_TYPE_BOOL),
                            "r.yaml:5:12: '>' needs number operands, got true/false");
        assert_string_equal(err("rain_mm + (1 < 2)", FH_TYPE_NUMBER),
                            "r.yaml:5:22: '+' needs number operands, got true/false");
        assert_string_equal(err("-(1 < 2)", FH_TYPE_NUMBER),
                            "r.yaml:5:13: '-' needs a number operand, got true/false");
        assert_string_equal(err("abs(1 < 2)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: 'abs' needs a number, got true/false");
}

static void test_level_must_be_boolean_and_report_a_number(void **state) {
        (void) state;
        assert_string_equal(err("sum(rain_mm, 3h)", FH_TYPE_BOOL),
                            "r.yaml:5:12: a level condition must be true/false (a comparison), got a number");
        assert_string_equal(err("sum(rain_mm, 3h) > 1", FH_TYPE_NUMBER),
                            "r.yaml:5:12: a report must be a number, got true/false");
}

static void test_type_errors_in_separate_subexpressions_are_all_reported(void **state) {
        (void) state;
        assert_string_equal(err("(rain_mm and 1 > 0) or (level_m + (1 < 2) > 0) or not 3", FH_TYPE_BOOL),
                            "r.yaml:5:13: 'and' needs true/false operands, got a number\n"
                            "r.yaml:5:46: '+' needs number operands, got true/false\n"
                            "r.yaml:5:66: 'not' needs a true/false operand, got a number");
}

static void test_chained_comparisons_are_rejected(void **state) {
        (void) state;
        assert_string_equal(err("1 < rain_mm < 5", FH_TYPE_BOOL),
                            "r.yaml:5:24: comparisons cannot be chained: write 'a < b and b < c'");
}

static void test_durations_are_only_allowed_as_window_length(void **state) {
        (void) state;
        assert_string_equal(err("3h > 1", FH_TYPE_BOOL),
                            "r.yaml:5:12: a duration like '3h' is only allowed as a window length");
        assert_string_equal(err("sum(rain_mm, 3h) > 30m", FH_TYPE_BOOL),
                            "r.yaml:5:31: a duration like '30m' is only allowed as a window length");
        assert_string_equal(err("abs(3h)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: a duration like '3h' is only allowed as a window length");
        assert_string_equal(err("last(rain_mm, 3h)", FH_TYPE_NUMBER),
                            "r.yaml:5:12: 'last' takes one field name, like last(rain_mm)");
        assert_string_equal(err("sum(3h, rain_mm)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: the first argument of 'sum' must be a field name, like rain_mm\n"
                            "r.yaml:5:20: the second argument of 'sum' must be a window length, like 3h");
}

static void test_window_length_must_be_a_positive_whole_duration(void **state) {
        (void) state;
        assert_string_equal(err("sum(rain_mm, 0h)", FH_TYPE_NUMBER),
                            "r.yaml:5:25: window length must be positive");
        assert_string_equal(err("sum(rain_mm, 3)", FH_TYPE_NUMBER),
                            "r.yaml:5:25: the second argument of 'sum' must be a window length, like 3h");
        assert_string_equal(err("sum(rain_mm, 1.5h)", FH_TYPE_NUMBER),
                            "r.yaml:5:25: window length '1.5h' must be a whole number, like 90m");
        assert_string_equal(err("sum(rain_mm, 3hours)", FH_TYPE_NUMBER),
                            "r.yaml:5:25: '3hours' is not a number (a window length is a whole number followed by s, m, h or d)");
        assert_string_equal(err("sum(rain_mm, 99999999999d)", FH_TYPE_NUMBER),
                            "r.yaml:5:25: window length '99999999999d' is too long");
}

static void test_unknown_function_suggests_the_closest_name(void **state) {
        (void) state;
        assert_string_equal(err("summ(rain_mm, 3h) > 1", FH_TYPE_BOOL),
                            "r.yaml:5:12: unknown function 'summ' (did you mean 'sum'?)");
        assert_string_equal(err("atan(x)", FH_TYPE_NUMBER),
                            "r.yaml:5:12: unknown function 'atan'");
        assert_string_equal(err("1 + cnt(x, 1h)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: unknown function 'cnt' (did you mean 'count'?)");
}

static void test_wrong_argument_count_or_kind_points_at_the_call(void **state) {
        (void) state;
        assert_string_equal(err("1 + sum(rain_mm)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: 'sum' takes a field and a window length, like sum(rain_mm, 3h)");
        assert_string_equal(err("age(rain_mm)", FH_TYPE_NUMBER),
                            "r.yaml:5:12: 'age' takes no arguments: write age()");
        assert_string_equal(err("sqrt(1, 2)", FH_TYPE_NUMBER),
                            "r.yaml:5:12: 'sqrt' takes one number, like sqrt(x), got 2 arguments");
        assert_string_equal(err("sum(rain_mm + 1, 3h)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: the first argument of 'sum' must be a field name, like rain_mm");
        assert_string_equal(err("sum(and, 3h)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: 'and' is a keyword, not a field name");
        assert_string_equal(err("max(station.lat, 1h)", FH_TYPE_NUMBER),
                            "r.yaml:5:16: the first argument of 'max' must be a field name, like rain_mm");
}

static void test_keywords_and_bad_names_are_not_field_names(void **state) {
        (void) state;
        assert_string_equal(err("or > 1", FH_TYPE_BOOL), "r.yaml:5:12: expected a value, got 'or'");
        assert_string_equal(err("Rain_mm > 1", FH_TYPE_BOOL),
                            "r.yaml:5:12: 'Rain_mm' is not a valid name (use lowercase letters, digits and '_', starting with a letter)");
        assert_string_equal(err("station.Lat > 1", FH_TYPE_BOOL),
                            "r.yaml:5:20: 'Lat' is not a valid name (use lowercase letters, digits and '_', starting with a letter)");
        assert_string_equal(err("station. > 1", FH_TYPE_BOOL),
                            "r.yaml:5:12: expected an attribute name after 'station.'");
        assert_string_equal(err("a_field_name_that_is_much_too_long_x > 1", FH_TYPE_BOOL),
                            "r.yaml:5:12: field name 'a_field_name_that_is...' is longer than 32 characters");
}

static void test_syntax_errors_say_what_was_expected(void **state) {
        (void) state;
        assert_string_equal(err("", FH_TYPE_BOOL), "r.yaml:5:12: empty expression");
        assert_string_equal(err("   ", FH_TYPE_BOOL), "r.yaml:5:12: empty expression");
        assert_string_equal(err("rain_mm >", FH_TYPE_BOOL),
                            "r.yaml:5:21: expected a value, got the end of the expression");
        assert_string_equal(err("(rain_mm > 1", FH_TYPE_BOOL),
                            "r.yaml:5:24: expected ')' to close the '(' at column 12, got the end of the expression");
        assert_string_equal(err("rain_mm > 1)", FH_TYPE_BOOL), "r.yaml:5:23: unmatched ')'");
        assert_string_equal(err("rain_mm > 1 level_m", FH_TYPE_BOOL),
                            "r.yaml:5:24: expected an operator or the end of the expression, got 'level_m'");
        assert_string_equal(err("rain_mm = 1", FH_TYPE_BOOL), "r.yaml:5:20: unexpected '=' (did you mean '=='?)");
        assert_string_equal(err("rain_mm > 1 && level_m > 1", FH_TYPE_BOOL), "r.yaml:5:24: unexpected '&' (use 'and')");
        assert_string_equal(err("rain_mm > 1e999", FH_TYPE_BOOL), "r.yaml:5:22: number '1e999' is out of range");
        assert_string_equal(err("rain_mm ＞ 1", FH_TYPE_BOOL), "r.yaml:5:20: unexpected '＞'");
        assert_string_equal(errors_of("rain_mm >\0 1", 12, FH_TYPE_BOOL), "r.yaml:5:21: unexpected byte 0x00");
        assert_string_equal(err("sum(rain_mm 3h)", FH_TYPE_NUMBER),
                            "r.yaml:5:24: expected ',' or ')', got '3h'");
}

static void test_errors_on_later_lines_of_a_multiline_text_count_lines(void **state) {
        (void) state;
        assert_string_equal(err("rain_mm > 1 and\nlevel_m", FH_TYPE_BOOL),
                            "r.yaml:6:12: 'and' needs true/false operands, got a number");
}

static void test_deep_nesting_is_rejected_without_crashing(void **state) {
        size_t n = 100000;
        char *s = malloc(2 * n + 2);
        char *e;

        (void) state;
        memset(s, '(', n);
        s[n] = '1';
        memset(s + n + 1, ')', n);
        s[2 * n + 1] = 0;
        e = err(s, FH_TYPE_NUMBER);
        assert_non_null(strstr(e, "expression too long"));

        /* Within the length cap, but nested deeper than the parser allows. */
        memset(s, '(', 2000);
        s[2000] = '1';
        memset(s + 2001, ')', 2000);
        s[4001] = 0;
        assert_string_equal(err(s, FH_TYPE_NUMBER), "r.yaml:5:76: expression too complex (nested more than 64 deep)");
        for (size_t i = 0; i < 2000; i++)
                s[i] = (i & 1) ? ' ' : '-';
        assert_non_null(strstr(err(s, FH_TYPE_NUMBER), "expression too complex"));
        for (size_t i = 0; i < 4000; i += 4)
                memcpy(s + i, "not ", 4);
        memcpy(s + 4000, "1>0", 4);
        assert_non_null(strstr(err(s, FH_TYPE_BOOL), "expression too complex"));
        free(s);
}

static void test_expression_with_too_many_parts_is_rejected(void **state) {
        char s[2048] = "";

        (void) state;
        for (int i = 0; i < 300; i++)
                strcat(s, i ? "+1" : "1");
        assert_string_equal(err(s, FH_TYPE_NUMBER), "r.yaml:5:267: expression too complex (more than 256 parts)");
}

static void test_rule_set_caps_the_number_of_distinct_fields(void **state) {
        fh_symbols syms = { 0 };
        fh_diags d = FH_DIAGS_NULL;
        char src[64];
        int i, r = 0;

        (void) state;
        for (i = 0; i < 2000 && r == 0; i++) {
                fh_program *p = NULL;

                snprintf(src, sizeof(src), "f%d + 1", i);
                r = fh_expr_compile(src, strlen(src), FH_TYPE_NUMBER, &test_pos, &syms, &p, &d);
                fh_program_free(p);
        }
        assert_int_equal(r, -EINVAL);
        assert_int_equal(i, 1025);
        assert_int_equal(syms.n_fields, 1024);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.v[0].msg, "too many different field names in all rules (more than 1024)");
        fh_diags_clear(&d);
        fh_symbols_clear(&syms);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_multiplication_binds_tighter_than_addition),
                cmocka_unit_test(test_subtraction_and_division_are_left_associative),
                cmocka_unit_test(test_unary_minus_binds_tightest_and_nests),
                cmocka_unit_test(test_and_binds_tighter_than_or_and_not_tighter_than_and),
                cmocka_unit_test(test_arithmetic_binds_tighter_than_comparison),
                cmocka_unit_test(test_numbers_accept_fractions_and_exponents),
                cmocka_unit_test(test_bare_name_is_the_latest_value_of_that_field),
                cmocka_unit_test(test_window_functions_ask_for_their_field_and_window),
                cmocka_unit_test(test_station_attribute_reads_the_registry_column),
                cmocka_unit_test(test_math_functions_compute_abs_sqrt_and_degrees),
                cmocka_unit_test(test_compile_interns_fields_and_windows_once),
                cmocka_unit_test(test_age_sets_uses_age),
                cmocka_unit_test(test_compares_split_each_comparison_into_its_operands),
                cmocka_unit_test(test_max_stack_is_the_depth_the_program_needs),
                cmocka_unit_test(test_arithmetic_with_a_missing_value_is_missing),
                cmocka_unit_test(test_division_by_zero_is_missing),
                cmocka_unit_test(test_sqrt_of_a_negative_is_missing),
                cmocka_unit_test(test_every_comparison_with_a_missing_value_is_false),
                cmocka_unit_test(test_not_and_or_are_two_valued_logic_over_comparisons),
                cmocka_unit_test(test_and_with_a_number_operand_is_a_type_error_at_the_operand),
                cmocka_unit_test(test_comparison_and_arithmetic_need_numbers),
                cmocka_unit_test(test_level_must_be_boolean_and_report_a_number),
                cmocka_unit_test(test_type_errors_in_separate_subexpressions_are_all_reported),
                cmocka_unit_test(test_chained_comparisons_are_rejected),
                cmocka_unit_test(test_durations_are_only_allowed_as_window_length),
                cmocka_unit_test(test_window_length_must_be_a_positive_whole_duration),
                cmocka_unit_test(test_unknown_function_suggests_the_closest_name),
                cmocka_unit_test(test_wrong_argument_count_or_kind_points_at_the_call),
                cmocka_unit_test(test_keywords_and_bad_names_are_not_field_names),
                cmocka_unit_test(test_syntax_errors_say_what_was_expected),
                cmocka_unit_test(test_errors_on_later_lines_of_a_multiline_text_count_lines),
                cmocka_unit_test(test_deep_nesting_is_rejected_without_crashing),
                cmocka_unit_test(test_expression_with_too_many_parts_is_rejected),
                cmocka_unit_test(test_rule_set_caps_the_number_of_distinct_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
