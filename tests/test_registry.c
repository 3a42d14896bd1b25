/* The station registry: CSV reading, attributes, errors, lookup, order. */
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

#include "fenghuo/buf.h"
#include "fenghuo/registry.h"

#define HDR "id,kind,name,basin,warning_level\n"

static fh_registry *parse_len_ok(const char *text, size_t len) {
        fh_diags d = FH_DIAGS_NULL;
        fh_registry *r = NULL;
        int rc = fh_registry_parse("s.csv", text, len, &r, &d);

        for (size_t i = 0; i < d.n; i++) {
                char line[512];

                fh_diag_format(&d.v[i], line, sizeof(line));
                print_error("unexpected: %s\n", line);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(d.n, 0);
        assert_non_null(r);
        fh_diags_clear(&d);
        return r;
}

static fh_registry *parse_ok(const char *text) {
        return parse_len_ok(text, strlen(text));
}

/* Every diagnostic as `fenghuo check` prints it, one per line. */
static char *parse_len_err(const char *text, size_t len) {
        fh_diags d = FH_DIAGS_NULL;
        fh_registry *r = (fh_registry *)(uintptr_t)0x1;
        fh_buf out = FH_BUF_NULL;
        int rc = fh_registry_parse("s.csv", text, len, &r, &d);

        assert_int_equal(rc, -EINVAL);
        assert_ptr_equal(r, (fh_registry *)(uintptr_t)0x1);  /* untouched on failure */
        assert_true(d.n_errors > 0);
        for (size_t i = 0; i < d.n; i++) {
                char line[512];

                fh_diag_format(&d.v[i], line, sizeof(line));
                fh_buf_puts(&out, line);
                fh_buf_putc(&out, '\n');
        }
        fh_diags_clear(&d);
        return out.data;
}

static char *parse_err(const char *text) {
        return parse_len_err(text, strlen(text));
}

static void assert_errors(const char *text, const char *expected) {
        char *got = parse_err(text);

        assert_string_equal(got, expected);
        free(got);
}

static const fh_attr *attr(const fh_registry *r, const char *id, const char *col) {
        const fh_station *s = fh_registry_find(r, id, strlen(id));

        assert_non_null(s);
        return fh_station_attr(s, fh_registry_column(r, col, strlen(col)));
}

static void a_small_registry_keeps_its_columns_in_file_order(void **state) {
        fh_registry *r = parse_ok("name,id,kind,lat\n"
                                  "石城镇黄峪口,MY-RG-0001,rain,40.55\n"
                                  "潮河古北口水文站,MY-WL-0001,water_level,40.69\n");
        const fh_station *s;

        assert_int_equal(r->n_columns, 4);
        assert_string_equal(r->columns[0], "name");
        assert_string_equal(r->columns[1], "id");
        assert_string_equal(r->columns[2], "kind");
        assert_string_equal(r->columns[3], "lat");
        assert_int_equal(r->n_stations, 2);
        s = fh_registry_find(r, "MY-WL-0001", 10);
        assert_non_null(s);
        assert_string_equal(s->id, "MY-WL-0001");
        assert_int_equal(s->id_len, 10);
        assert_int_equal(s->kind, FH_KIND_WATER_LEVEL);
        assert_string_equal(s->name, "潮河古北口水文站");
        assert_int_equal(s->name_len, strlen("潮河古北口水文站"));
        assert_int_equal(fh_registry_column(r, "lat", 3), 3);
        assert_int_equal(fh_registry_column(r, "la", 2), -1);
        assert_int_equal(fh_registry_column(r, "latitude", 8), -1);
        assert_int_equal(fh_registry_column(r, "name", 4), 0);
        assert_null(fh_station_attr(s, -1));
        fh_registry_free(r);
}

static void quoted_cells_keep_commas_newlines_and_doubled_quotes(void **state) {
        fh_registry *r = parse_ok(HDR
                                  "\"MY-RG-0001\",rain,\"白河, 张家坟\",baihe,\n"
                                  "MY-RG-0002,rain,\"two\nlines\",\"say \"\"hi\"\"\",\"\"\n"
                                  "MY-RG-0003,rain,\"\"\"\",x,\"12.5\"\n");

        assert_int_equal(r->n_stations, 3);
        assert_string_equal(fh_registry_find(r, "MY-RG-0001", 10)->name, "白河, 张家坟");
        assert_string_equal(fh_registry_find(r, "MY-RG-0002", 10)->name, "two\nlines");
        assert_string_equal(attr(r, "MY-RG-0002", "basin")->str, "say \"hi\"");
        assert_null(attr(r, "MY-RG-0002", "warning_level"));   /* "" is empty too */
        assert_string_equal(fh_registry_find(r, "MY-RG-0003", 10)->name, "\"");
        assert_true(attr(r, "MY-RG-0003", "warning_level")->is_number);  /* quoting is transport only */
        assert_true(attr(r, "MY-RG-0003", "warning_level")->num == 12.5);
        fh_registry_free(r);
}

static void crlf_line_ends_read_like_lf(void **state) {
        fh_registry *r = parse_ok("id,kind,name,basin\r\n"
                                  "A,rain,a,\"x\r\ny\"\r\n"
                                  "B,bridge,b,chaohe\r\n");

        assert_int_equal(r->n_stations, 2);
        assert_string_equal(attr(r, "B", "basin")->str, "chaohe");
        assert_int_equal(attr(r, "B", "basin")->len, 6);
        assert_string_equal(attr(r, "A", "basin")->str, "x\r\ny");  /* inside quotes, kept as written */
        assert_int_equal(fh_registry_find(r, "B", 1)->kind, FH_KIND_BRIDGE);
        fh_registry_free(r);
}

static void a_utf8_bom_is_ignored_and_columns_count_from_after_it(void **state) {
        fh_registry *r = parse_ok("\xEF\xBB\xBFid,kind,name\nA,rain,a\n");
        char *err;

        assert_string_equal(r->columns[0], "id");
        assert_non_null(fh_registry_find(r, "A", 1));
        fh_registry_free(r);

        err = parse_err("\xEF\xBB\xBFid,kind,name\nA,rain,\n");
        assert_string_equal(err, "s.csv:2:8: empty name\n");
        free(err);
}

static void the_final_newline_and_blank_final_lines_are_optional(void **state) {
        const char *texts[] = {
                "id,kind,name\nA,rain,a",
                "id,kind,name\nA,rain,a\n",
                "id,kind,name\nA,rain,a\n\n",
                "id,kind,name\r\nA,rain,a\r\n\r\n",
                "id,kind,name\nA,rain,a\n\n\n",
        };

        for (size_t i = 0; i < FH_ARRAY_SIZE(texts); i++) {
                fh_registry *r = parse_ok(texts[i]);

                assert_int_equal(r->n_stations, 1);
                assert_string_equal(r->stations[0].name, "a");
                fh_registry_free(r);
        }
}

static void a_header_without_rows_is_an_empty_registry(void **state) {
        fh_registry *r = parse_ok("id,kind,name\n");

        assert_int_equal(r->n_stations, 0);
        assert_null(fh_registry_find(r, "A", 1));
        fh_registry_free(r);
}

static void a_cell_is_a_number_only_when_all_of_it_is_a_finite_decimal(void **state) {
        static const struct {
                const char *cell;
                bool number;
                double value;
        } cases[] = {
                { "1e3", true, 1000 },
                { "-2.5", true, -2.5 },
                { "+7", true, 7 },
                { ".5", true, 0.5 },
                { "5.", true, 5 },
                { "0012", true, 12 },
                { "1.5E-2", true, 0.015 },
                { "12abc", false, 0 },
                { " 5", false, 0 },
                { "5 ", false, 0 },
                { "nan", false, 0 },
                { "NaN", false, 0 },
                { "inf", false, 0 },
                { "-infinity", false, 0 },
                { "0x10", false, 0 },
                { "1e999", false, 0 },
                { "1e", false, 0 },
                { ".", false, 0 },
                { "-", false, 0 },
                { "1,5", false, 0 },   /* quoted below, so one cell */
                { "１２", false, 0 },  /* full-width digits are text */
        };

        for (size_t i = 0; i < FH_ARRAY_SIZE(cases); i++) {
                char text[256];
                fh_registry *r;
                const fh_attr *a;

                snprintf(text, sizeof(text), "id,kind,name,v\nA,rain,a,\"%s\"\n", cases[i].cell);
                r = parse_ok(text);
                a = attr(r, "A", "v");
                assert_non_null(a);
                assert_true(a->present);
                assert_string_equal(a->str, cases[i].cell);
                if (a->is_number != cases[i].number)
                        fail_msg("'%s' should %sbe a number", cases[i].cell, cases[i].number ? "" : "not ");
                if (cases[i].number)
                        assert_true(a->num == cases[i].value);
                fh_registry_free(r);
        }
}

static void empty_cells_are_absent_attributes(void **state) {
        fh_registry *r = parse_ok("id,kind,name,a,b,c\nA,rain,x,,\"\",0\n");
        const fh_station *s = fh_registry_find(r, "A", 1);

        assert_null(fh_station_attr(s, fh_registry_column(r, "a", 1)));
        assert_null(fh_station_attr(s, fh_registry_column(r, "b", 1)));
        assert_false(s->attrs[3].present);
        assert_int_equal(s->attrs[3].len, 0);
        assert_non_null(fh_station_attr(s, fh_registry_column(r, "c", 1)));  /* 0 is a value */
        assert_null(fh_station_attr(s, fh_registry_column(r, "nope", 4)));
        fh_registry_free(r);
}

static void id_kind_and_name_are_also_text_attributes(void **state) {
        fh_registry *r = parse_ok("id,kind,name\n0012,landslide,404\n");
        const fh_attr *a;

        a = attr(r, "0012", "id");
        assert_string_equal(a->str, "0012");
        assert_false(a->is_number);   /* an id that looks numeric is still a name */
        a = attr(r, "0012", "kind");
        assert_string_equal(a->str, "landslide");
        assert_false(a->is_number);
        a = attr(r, "0012", "name");
        assert_string_equal(a->str, "404");
        assert_false(a->is_number);
        fh_registry_free(r);
}

static void stations_sort_by_id_in_byte_order(void **state) {
        fh_registry *r = parse_ok("id,kind,name\n"
                                  "MY-wl-1,water_level,c\n"
                                  "MY-RG-0010,rain,b\n"
                                  "my-a,rain,e\n"
                                  "MY-WL-1,water_level,d\n"
                                  "MY-RG-0002,rain,a\n"
                                  "MY-RG-0002.1,rain,a2\n");
        static const char *order[] = { "MY-RG-0002", "MY-RG-0002.1", "MY-RG-0010", "MY-WL-1", "MY-wl-1", "my-a" };

        assert_int_equal(r->n_stations, FH_ARRAY_SIZE(order));
        for (size_t i = 0; i < FH_ARRAY_SIZE(order); i++) {
                assert_string_equal(r->stations[i].id, order[i]);
                assert_int_equal(r->stations[i].index, i);
                assert_ptr_equal(fh_registry_find(r, order[i], strlen(order[i])), &r->stations[i]);
        }
        /* Attributes travel with their station through the sort. */
        assert_string_equal(attr(r, "my-a", "name")->str, "e");
        assert_string_equal(r->stations[3].name, "d");
        fh_registry_free(r);
}

static void find_misses_absent_ids_and_near_misses(void **state) {
        fh_registry *r = parse_ok("id,kind,name\nMY-RG-0001,rain,a\nMY-RG-0002,rain,b\n");
        char longid[80];

        assert_null(fh_registry_find(r, "MY-RG-0003", 10));
        assert_null(fh_registry_find(r, "MY-RG-000", 9));
        assert_null(fh_registry_find(r, "MY-RG-00011", 11));
        assert_null(fh_registry_find(r, "my-rg-0001", 10));
        assert_null(fh_registry_find(r, "", 0));
        assert_null(fh_registry_find(r, NULL, 0));
        assert_null(fh_registry_find(NULL, "MY-RG-0001", 10));
        memset(longid, 'A', sizeof(longid));
        assert_null(fh_registry_find(r, longid, sizeof(longid)));
        /* The length decides, not a NUL: a prefix of a longer buffer hits. */
        assert_non_null(fh_registry_find(r, "MY-RG-0001xyz", 10));
        fh_registry_free(r);
}

static void a_64_character_id_is_the_longest_allowed(void **state) {
        char text[256], id[66];
        fh_registry *r;
        char *err;

        memset(id, 'a', 64);
        id[64] = '\0';
        snprintf(text, sizeof(text), "id,kind,name\n%s,rain,x\n", id);
        r = parse_ok(text);
        assert_non_null(fh_registry_find(r, id, 64));
        fh_registry_free(r);

        id[64] = 'a';
        id[65] = '\0';
        snprintf(text, sizeof(text), "id,kind,name\n%s,rain,x\n", id);
        err = parse_err(text);
        assert_string_equal(err, "s.csv:2:1: invalid id 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' "
                                 "(1-64 characters of A-Z a-z 0-9 . _ : -)\n");
        free(err);
}

static void an_empty_text_has_no_header_row(void **state) {
        assert_errors("", "s.csv:1:1: missing header row (id,kind,name,...)\n");
        assert_errors("\n\n", "s.csv:1:1: missing header row (id,kind,name,...)\n");
        assert_errors("\xEF\xBB\xBF", "s.csv:1:1: missing header row (id,kind,name,...)\n");
        assert_errors("\nid,kind,name\nA,rain,a\n", "s.csv:1:1: missing header row (id,kind,name,...)\n");
}

static void every_missing_required_column_is_reported(void **state) {
        assert_errors("id,lat\nA,1\n",
                      "s.csv:1:1: missing required column 'kind'\n"
                      "s.csv:1:1: missing required column 'name'\n");
}

static void a_column_name_that_is_not_an_identifier_is_reported_at_its_column(void **state) {
        assert_errors("id,kind,name,Lat,water level,,2x,水位\n",
                      "s.csv:1:14: column name 'Lat' is not an identifier ([a-z][a-z0-9_]*)\n"
                      "s.csv:1:18: column name 'water level' is not an identifier ([a-z][a-z0-9_]*)\n"
                      "s.csv:1:30: column name '' is not an identifier ([a-z][a-z0-9_]*)\n"
                      "s.csv:1:31: column name '2x' is not an identifier ([a-z][a-z0-9_]*)\n"
                      "s.csv:1:34: column name '水位' is not an identifier ([a-z][a-z0-9_]*)\n");
}

static void a_duplicate_column_names_its_first_position(void **state) {
        assert_errors("id,kind,name,lat,\"lat\"\nA,rain,a,1,2\n",
                      "s.csv:1:18: duplicate column 'lat' (first at 1:14)\n");
        assert_errors("id,kind,name,id\n",
                      "s.csv:1:14: duplicate column 'id' (first at 1:1)\n");
}

static void a_row_with_the_wrong_number_of_cells_is_reported_at_its_line(void **state) {
        assert_errors("id,kind,name\nA,rain\nB,rain,b,extra\nC,rain,c\n",
                      "s.csv:2:1: row has 2 cells, the header has 3\n"
                      "s.csv:3:1: row has 4 cells, the header has 3\n");
}

static void an_empty_line_between_rows_is_an_error(void **state) {
        assert_errors("id,kind,name\nA,rain,a\n\nB,rain,b\n",
                      "s.csv:3:1: empty line (a row needs 3 cells)\n");
        assert_errors("id,kind,name\r\n\r\nB,rain,b\r\n",
                      "s.csv:2:1: empty line (a row needs 3 cells)\n");
}

static void an_unterminated_quote_is_reported_at_the_cell_start(void **state) {
        assert_errors("id,kind,name\nA,rain,a\nB,rain,\"b\nC,rain,c\n",
                      "s.csv:3:8: unterminated quoted cell\n");
        assert_errors("id,kind,\"name\n", "s.csv:1:9: unterminated quoted cell\n");
}

static void quotes_must_enclose_a_whole_cell(void **state) {
        assert_errors("id,kind,name\nA,rain,\"a\"b\nB,rain,b\"c\nC,rain,\"c\" \n",
                      "s.csv:2:8: text after the closing quote of a quoted cell\n"
                      "s.csv:3:8: quote inside an unquoted cell (quote the whole cell and double the quote)\n"
                      "s.csv:4:8: text after the closing quote of a quoted cell\n");
}

static void a_bad_id_is_reported_with_its_text(void **state) {
        assert_errors("id,kind,name\nMY RG 1,rain,a\n,rain,b\nMY/RG,rain,c\n石城,rain,d\n",
                      "s.csv:2:1: invalid id 'MY RG 1' (1-64 characters of A-Z a-z 0-9 . _ : -)\n"
                      "s.csv:3:1: empty id\n"
                      "s.csv:4:1: invalid id 'MY/RG' (1-64 characters of A-Z a-z 0-9 . _ : -)\n"
                      "s.csv:5:1: invalid id '石城' (1-64 characters of A-Z a-z 0-9 . _ : -)\n");
}

static void a_duplicate_id_names_the_line_of_the_first(void **state) {
        assert_errors("name,kind,id\na,rain,MY-RG-0001\nb,rain,MY-RG-0002\nc,rain,MY-RG-0001\nd,rain,MY-RG-0001\n",
                      "s.csv:4:8: duplicate id 'MY-RG-0001' (first on line 2)\n"
                      "s.csv:5:8: duplicate id 'MY-RG-0001' (first on line 2)\n");
}

static void a_duplicate_id_counts_from_a_row_that_had_other_errors(void **state) {
        assert_errors("id,kind,name\nA,snow,a\nA,rain,b\n",
                      "s.csv:2:3: unknown kind 'snow' (rain, water_level, landslide or bridge)\n"
                      "s.csv:3:1: duplicate id 'A' (first on line 2)\n");
}

static void an_unknown_or_empty_kind_is_reported(void **state) {
        assert_errors("id,kind,name\nA,Rain,a\nB,,b\nC,water-level,c\n",
                      "s.csv:2:3: unknown kind 'Rain' (rain, water_level, landslide or bridge)\n"
                      "s.csv:3:3: empty kind (rain, water_level, landslide or bridge)\n"
                      "s.csv:4:3: unknown kind 'water-level' (rain, water_level, landslide or bridge)\n");
}

static void an_empty_name_is_reported(void **state) {
        assert_errors("id,kind,name\nA,rain,\nB,rain,\"\"\n",
                      "s.csv:2:8: empty name\n"
                      "s.csv:3:8: empty name\n");
}

static void a_cell_must_be_valid_utf8_without_nul(void **state) {
        static const char text[] = "id,kind,name,x\nA,rain,\xC3\x28,1\nB,rain,b,\xED\xA0\x80\nC,rain,c,a\0b\n"
                                   "D,rain,d,\xC0\xAF\nE,rain,e,\xF4\x90\x80\x80\nF,rain,f,\xE6\xB0\n";
        char *err = parse_len_err(text, sizeof(text) - 1);

        assert_string_equal(err,
                            "s.csv:2:8: cell is not valid UTF-8\n"
                            "s.csv:3:10: cell is not valid UTF-8\n"
                            "s.csv:4:10: cell contains a NUL byte\n"
                            "s.csv:5:10: cell is not valid UTF-8\n"
                            "s.csv:6:10: cell is not valid UTF-8\n"
                            "s.csv:7:10: cell is not valid UTF-8\n");
        free(err);
}

static void a_cell_longer_than_the_cap_is_reported(void **state) {
        fh_buf b = FH_BUF_NULL;
        fh_registry *r;
        char *err;

        fh_buf_puts(&b, "id,kind,name,note\nA,rain,a,");
        for (int i = 0; i < FH_REGISTRY_CELL_MAX; i++)
                fh_buf_putc(&b, 'x');
        fh_buf_putc(&b, '\n');
        r = parse_ok(b.data);   /* exactly the cap is fine */
        assert_int_equal(attr(r, "A", "note")->len, FH_REGISTRY_CELL_MAX);
        fh_registry_free(r);

        b.len--;
        fh_buf_puts(&b, "y\n");
        err = parse_err(b.data);
        assert_string_equal(err, "s.csv:2:10: cell longer than 1024 bytes\n");
        free(err);
        fh_buf_free(&b);
}

static void more_columns_than_the_cap_is_reported(void **state) {
        fh_buf b = FH_BUF_NULL;
        char *err, want[128];

        fh_buf_puts(&b, "id,kind,name");
        for (int i = 4; i <= FH_REGISTRY_COLUMNS_MAX; i++)
                fh_buf_printf(&b, ",c%d", i);
        fh_buf_putc(&b, '\n');
        fh_registry_free(parse_ok(b.data));  /* exactly the cap is fine */

        b.len--;
        fh_buf_puts(&b, ",one_more\n");
        err = parse_err(b.data);
        /* Reported at the first column past the cap. */
        snprintf(want, sizeof(want), "s.csv:1:%zu: more than 128 columns\n", b.len - strlen("one_more\n") + 1);
        assert_string_equal(err, want);
        free(err);
        fh_buf_free(&b);
}

static void errors_in_many_rows_are_all_reported_in_file_order(void **state) {
        /* A quoted cell spanning lines moves the line count for what follows. */
        assert_errors("id,kind,name,note\n"
                      "A,rain,a,\"line one\nline two\"\n"
                      "B,flood,b,\n"
                      "C,rain,,x\n"
                      "A,bridge,\"dup\",1\n",
                      "s.csv:4:3: unknown kind 'flood' (rain, water_level, landslide or bridge)\n"
                      "s.csv:5:8: empty name\n"
                      "s.csv:6:1: duplicate id 'A' (first on line 2)\n");
}

static void a_flood_of_errors_stops_after_one_hundred(void **state) {
        fh_buf b = FH_BUF_NULL;
        char *err;
        size_t lines = 0;
        const char *last;

        fh_buf_puts(&b, "id,kind,name\n");
        for (int i = 0; i < 5000; i++)
                fh_buf_puts(&b, "A B,rain,a\n");
        err = parse_err(b.data);
        for (const char *p = err; *p; p++)
                lines += *p == '\n';
        assert_int_equal(lines, 101);
        last = strstr(err, "s.csv:101:1: too many errors (100), giving up on this file\n");
        assert_non_null(last);
        free(err);
        fh_buf_free(&b);
}

static void error_messages_show_cells_short_and_on_one_line(void **state) {
        assert_errors("id,kind,name\nA,\"ra\nin\",a\n",
                      "s.csv:2:3: unknown kind 'ra?in' (rain, water_level, landslide or bridge)\n");
        assert_errors("id,kind,name\nA,降雨降雨降雨降雨降雨降雨降雨降雨,a\n",
                      "s.csv:2:3: unknown kind '降雨降雨降雨降雨降雨降雨降...' "
                      "(rain, water_level, landslide or bridge)\n");
}

static void a_sample_of_the_miyun_shape_reads(void **state) {
        fh_registry *r = parse_ok(
                "id,kind,name,region,town,basin,lat,lon,warning_level,guarantee_level,historic_max\n"
                "MY-WL-0003,water_level,密云水库白河主坝,miyun,溪翁庄镇,reservoir,40.4876,116.8561,155,157.5,157.5\n"
                "MY-RG-0001,rain,石城镇黄峪口,miyun,石城镇,baihe,40.5580,116.7998,,,\n");
        const fh_station *s = fh_registry_find(r, "MY-WL-0003", 10);

        assert_int_equal(s->index, 1);
        assert_true(attr(r, "MY-WL-0003", "guarantee_level")->num == 157.5);
        assert_string_equal(attr(r, "MY-WL-0003", "basin")->str, "reservoir");
        assert_null(attr(r, "MY-RG-0001", "warning_level"));
        assert_string_equal(attr(r, "MY-RG-0001", "town")->str, "石城镇");
        fh_registry_free(r);
}

/* The sample registry shipped in stations/: the source tree is found from
 * this file's own path, as the compiler was given it. */
static char *read_miyun(size_t *ret_len) {
        char path[4096];
        const char *slash = strrchr(__FILE__, '/');
        FILE *f;
        char *text;
        long n;

        snprintf(path, sizeof(path), "%.*s/../stations/miyun.csv",
                 slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
        f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n > 0);
        rewind(f);
        text = fh_malloc((size_t)n);
        assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *ret_len = (size_t)n;
        return text;
}

static void the_miyun_sample_registry_is_valid_and_plausible(void **state) {
        size_t len, by_kind[FH_KIND__MAX] = { 0 };
        char *text = read_miyun(&len);
        fh_registry *r = parse_len_ok(text, len);
        int region = fh_registry_column(r, "region", 6), basin = fh_registry_column(r, "basin", 5);
        int lat = fh_registry_column(r, "lat", 3), lon = fh_registry_column(r, "lon", 3);
        int warn = fh_registry_column(r, "warning_level", 13);
        int guar = fh_registry_column(r, "guarantee_level", 15);
        int hist = fh_registry_column(r, "historic_max", 12);
        int creep = fh_registry_column(r, "creep_rate_mm_d", 15);
        int defl = fh_registry_column(r, "deflection_limit_mm", 19);

        assert_true(region >= 0 && basin >= 0 && lat >= 0 && lon >= 0);
        assert_true(warn >= 0 && guar >= 0 && hist >= 0 && creep >= 0 && defl >= 0);
        for (size_t i = 0; i < r->n_stations; i++) {
                const fh_station *s = &r->stations[i];
                const fh_attr *a;

                by_kind[s->kind]++;
                assert_string_equal(fh_station_attr(s, region)->str, "miyun");
                a = fh_station_attr(s, basin);
                assert_non_null(a);
                assert_true(fh_is_identifier(a->str, a->len));
                a = fh_station_attr(s, lat);
                assert_true(a && a->is_number && a->num >= 40.2 && a->num <= 40.7);
                a = fh_station_attr(s, lon);
                assert_true(a && a->is_number && a->num >= 116.6 && a->num <= 117.5);
                if (s->kind == FH_KIND_WATER_LEVEL) {
                        assert_true(fh_station_attr(s, warn)->num < fh_station_attr(s, guar)->num);
                        assert_true(fh_station_attr(s, guar)->num < fh_station_attr(s, hist)->num);
                } else
                        assert_null(fh_station_attr(s, warn));
                assert_int_equal(fh_station_attr(s, creep) != NULL, s->kind == FH_KIND_LANDSLIDE);
                assert_int_equal(fh_station_attr(s, defl) != NULL, s->kind == FH_KIND_BRIDGE);
        }
        assert_true(by_kind[FH_KIND_RAIN] >= 30);
        assert_true(by_kind[FH_KIND_WATER_LEVEL] >= 10);
        assert_true(by_kind[FH_KIND_LANDSLIDE] >= 6);
        assert_true(by_kind[FH_KIND_BRIDGE] >= 4);
        assert_string_equal(fh_registry_find(r, "MY-RG-0001", 10)->name, "石城镇黄峪口");
        fh_registry_free(r);
        free(text);
}

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void a_generated_registry_of_100000_stations_loads_and_finds_each(void **state) {
        static const char *kinds[] = { "rain", "water_level", "landslide", "bridge" };
        static const char *prefix[] = { "RG", "WL", "LS", "BR" };
        enum { N = 100000 };
        fh_buf b = FH_BUF_NULL;
        fh_registry *r;
        double t0, t1;
        int wl;
        char id[32];

        fh_buf_puts(&b, "id,kind,name,region,town,basin,lat,lon,warning_level,guarantee_level\n");
        /* Written in a scrambled order so the sort has work to do. */
        for (unsigned i = 0; i < N; i++) {
                unsigned k = (unsigned)(((uint64_t)i * 48271u) % N);

                fh_buf_printf(&b, "MY-%s-%06u,%s,\"站点 %u\",miyun,镇%u,basin%u,%.4f,%.4f,%s,%s\n",
                              prefix[k % 4], k, kinds[k % 4], k, k % 17, k % 9,
                              40.2 + (k % 5000) / 10000.0, 116.6 + (k % 9000) / 10000.0,
                              k % 4 == 1 ? "150.5" : "", k % 4 == 1 ? "152" : "");
        }
        t0 = now_s();
        r = parse_len_ok(b.data, b.len);
        t1 = now_s();
        print_message("parsed %d stations (%zu bytes) in %.1f ms\n", N, b.len, (t1 - t0) * 1e3);

        assert_int_equal(r->n_stations, N);
        wl = fh_registry_column(r, "warning_level", 13);
        for (size_t i = 1; i < r->n_stations; i++)
                assert_true(strcmp(r->stations[i - 1].id, r->stations[i].id) < 0);
        t0 = now_s();
        for (unsigned k = 0; k < N; k++) {
                const fh_station *s;
                int n = snprintf(id, sizeof(id), "MY-%s-%06u", prefix[k % 4], k);

                s = fh_registry_find(r, id, (size_t)n);
                assert_non_null(s);
                assert_int_equal(s->kind, (fh_kind)(k % 4));
                assert_ptr_equal(s, &r->stations[s->index]);
                assert_int_equal(fh_station_attr(s, wl) != NULL, k % 4 == 1);
                /* Same number, wrong kind prefix: a miss. */
                n = snprintf(id, sizeof(id), "MY-%s-%06u", prefix[(k + 1) % 4], k);
                assert_null(fh_registry_find(r, id, (size_t)n));
        }
        t1 = now_s();
        print_message("%d hits and %d misses in %.1f ms\n", N, N, (t1 - t0) * 1e3);
        fh_registry_free(r);
        fh_buf_free(&b);
}

static void free_accepts_null(void **state) {
        assert_null(fh_registry_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(a_small_registry_keeps_its_columns_in_file_order),
                cmocka_unit_test(quoted_cells_keep_commas_newlines_and_doubled_quotes),
                cmocka_unit_test(crlf_line_ends_read_like_lf),
                cmocka_unit_test(a_utf8_bom_is_ignored_and_columns_count_from_after_it),
                cmocka_unit_test(the_final_newline_and_blank_final_lines_are_optional),
                cmocka_unit_test(a_header_without_rows_is_an_empty_registry),
                cmocka_unit_test(a_cell_is_a_number_only_when_all_of_it_is_a_finite_decimal),
                cmocka_unit_test(empty_cells_are_absent_attributes),
                cmocka_unit_test(id_kind_and_name_are_also_text_attributes),
                cmocka_unit_test(stations_sort_by_id_in_byte_order),
                cmocka_unit_test(find_misses_absent_ids_and_near_misses),
                cmocka_unit_test(a_64_character_id_is_the_longest_allowed),
                cmocka_unit_test(an_empty_text_has_no_header_row),
                cmocka_unit_test(every_missing_required_column_is_reported),
                cmocka_unit_test(a_column_name_that_is_not_an_identifier_is_reported_at_its_column),
                cmocka_unit_test(a_duplicate_column_names_its_first_position),
                cmocka_unit_test(a_row_with_the_wrong_number_of_cells_is_reported_at_its_line),
                cmocka_unit_test(an_empty_line_between_rows_is_an_error),
                cmocka_unit_test(an_unterminated_quote_is_reported_at_the_cell_start),
                cmocka_unit_test(quotes_must_enclose_a_whole_cell),
                cmocka_unit_test(a_bad_id_is_reported_with_its_text),
                cmocka_unit_test(a_duplicate_id_names_the_line_of_the_first),
                cmocka_unit_test(a_duplicate_id_counts_from_a_row_that_had_other_errors),
                cmocka_unit_test(an_unknown_or_empty_kind_is_reported),
                cmocka_unit_test(an_empty_name_is_reported),
                cmocka_unit_test(a_cell_must_be_valid_utf8_without_nul),
                cmocka_unit_test(a_cell_longer_than_the_cap_is_reported),
                cmocka_unit_test(more_columns_than_the_cap_is_reported),
                cmocka_unit_test(errors_in_many_rows_are_all_reported_in_file_order),
                cmocka_unit_test(a_flood_of_errors_stops_after_one_hundred),
                cmocka_unit_test(error_messages_show_cells_short_and_on_one_line),
                cmocka_unit_test(a_sample_of_the_miyun_shape_reads),
                cmocka_unit_test(the_miyun_sample_registry_is_valid_and_plausible),
                cmocka_unit_test(a_generated_registry_of_100000_stations_loads_and_finds_each),
                cmocka_unit_test(free_accepts_null),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
