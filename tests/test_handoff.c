/* The record that moves a partition's state between instances
 * (src/daemon/handoff.c): what one encodes the other decodes, and a record
 * that is not one is refused; and the chunks it travels in, as a reader of
 * a compacted state topic finds them: in any order, complete or not, of
 * one hand-over or of several. Reading the state topic is covered by the
 * recovery suite. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* A record of len bytes, each byte depending on seed and position. */
static char *record(size_t len, unsigned seed) {
        char *p = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
                p[i] = (char) ((i * 2654435761u + seed) >> 7);
        return p;
}

static void add(fh_handoff_asm *a, uint64_t gen, size_t index, const char *rec, size_t len) {
        fh_buf c = FH_BUF_NULL;
        fh_handoff_chunk_encode(&c, gen, index, rec, len, fh_handoff_record_sum(rec, len));
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len), 0);
        fh_buf_free(&c);
}

static void assert_result(fh_handoff_asm *a, const char *want, size_t len, uint64_t want_gen) {
        const void *p;
        size_t n;
        uint64_t gen;
        assert_int_equal(fh_handoff_asm_result(a, &p, &n, &gen), 0);
        assert_int_equal(n, len);
        assert_int_equal(gen, want_gen);
        assert_memory_equal(p, want, len);
}

static void every_chunk_fits_a_default_kafka_message(void **state) {
        size_t len = 5 * FH_HANDOFF_CHUNK + 17;
        char *rec = record(len, 1);
        (void) state;

        assert_int_equal(fh_handoff_chunk_count(len), 6);
        assert_int_equal(fh_handoff_chunk_count(FH_HANDOFF_CHUNK), 1);
        assert_int_equal(fh_handoff_chunk_count(0), 1);
        for (size_t i = 0; i < 6; i++) {
                fh_buf c = FH_BUF_NULL;
                char key[128];
                fh_handoff_chunk_encode(&c, 7, i, rec, len, fh_handoff_record_sum(rec, len));
                /* Producer message.max.bytes defaults to 1,000,000, key and
                 * record overhead included. */
                assert_true(c.len + 200 < 1000000);
                fh_handoff_chunk_key(key, sizeof(key), "g|in|3", i);
                char want[32];
                snprintf(want, sizeof(want), "g|in|3|%zu", i);
                assert_string_equal(key, want);
                fh_buf_free(&c);
        }
        free(rec);
}

static void chunks_in_any_order_make_the_record(void **state) {
        size_t len = 3 * FH_HANDOFF_CHUNK + 1000;
        char *rec = record(len, 2);
        fh_handoff_asm *a = fh_handoff_asm_new();
        (void) state;

        add(a, 5, 3, rec, len);
        add(a, 5, 1, rec, len);
        add(a, 5, 0, rec, len);
        assert_int_equal(fh_handoff_asm_result(a, &(const void *) { NULL }, &(size_t) { 0 }, NULL), -ENOENT);
        add(a, 5, 1, rec, len);         /* a chunk read twice changes nothing */
        add(a, 5, 2, rec, len);
        assert_result(a, rec, len, 5);
        fh_handoff_asm_free(a);
        free(rec);
}

static void an_empty_record_is_one_chunk(void **state) {
        fh_handoff_asm *a = fh_handoff_asm_new();
        (void) state;

        add(a, 1, 0, "", 0);
        assert_result(a, "", 0, 1);
        fh_handoff_asm_free(a);
}

static void an_incomplete_newer_hand_over_leaves_the_older_complete_one(void **state) {
        size_t l1 = 2 * FH_HANDOFF_CHUNK + 5, l2 = 4 * FH_HANDOFF_CHUNK;
        char *r1 = record(l1, 3), *r2 = record(l2, 4);
        fh_handoff_asm *a = fh_handoff_asm_new();
        (void) state;

        for (size_t i = 0; i < 3; i++)
                add(a, 10, i, r1, l1);
        /* The writer of generation 11 died after three of its four chunks. */
        for (size_t i = 0; i < 3; i++)
                add(a, 11, i, r2, l2);
        assert_result(a, r1, l1, 10);
        add(a, 11, 3, r2, l2);
        assert_result(a, r2, l2, 11);
        fh_handoff_asm_free(a);
        free(r1);
        free(r2);
}

/* What compaction leaves after a long hand-over (generation 1, five
 * chunks) and a shorter later one (generation 2, two chunks): chunks 0-1 of
 * generation 2 and chunks 2-4 of generation 1. */
static void after_compaction_the_last_complete_hand_over_wins_and_stale_tails_are_ignored(void **state) {
        size_t l1 = 5 * FH_HANDOFF_CHUNK, l2 = FH_HANDOFF_CHUNK + 9;
        char *r1 = record(l1, 5), *r2 = record(l2, 6);
        fh_handoff_asm *a = fh_handoff_asm_new();
        (void) state;

        for (size_t i = 0; i < 2; i++)
                add(a, 2, i, r2, l2);
        for (size_t i = 2; i < 5; i++)
                add(a, 1, i, r1, l1);
        assert_result(a, r2, l2, 2);
        fh_handoff_asm_free(a);
        free(r1);
        free(r2);
}

static void chunks_of_two_records_under_one_generation_never_mix(void **state) {
        size_t len = 2 * FH_HANDOFF_CHUNK;
        char *r1 = record(len, 7), *r2 = record(len, 8);
        fh_handoff_asm *a = fh_handoff_asm_new();
        fh_buf c = FH_BUF_NULL;
        (void) state;

        add(a, 3, 0, r1, len);
        fh_handoff_chunk_encode(&c, 3, 1, r2, len, fh_handoff_record_sum(r2, len));
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len), -EBADMSG);
        /* The generation is spoilt: not even its right chunk mends it. */
        fh_handoff_chunk_encode(&c, 3, 1, r1, len, fh_handoff_record_sum(r1, len));
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len), -EBADMSG);
        fh_buf_free(&c);
        assert_int_equal(fh_handoff_asm_result(a, &(const void *) { NULL }, &(size_t) { 0 }, NULL), -ENOENT);
        fh_handoff_asm_free(a);
        free(r1);
        free(r2);
}

static void damaged_chunks_are_refused(void **state) {
        size_t len = FH_HANDOFF_CHUNK + 100;
        char *rec = record(len, 9);
        fh_handoff_asm *a = fh_handoff_asm_new();
        fh_buf c = FH_BUF_NULL;
        (void) state;

        fh_handoff_chunk_encode(&c, 4, 1, rec, len, fh_handoff_record_sum(rec, len));
        /* Cut short. */
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len - 1), -EBADMSG);
        /* Not a chunk at all, or only a header's start. */
        assert_int_equal(fh_handoff_asm_add(a, "FHHAND01xxxxxxxx", 16), -EBADMSG);
        assert_int_equal(fh_handoff_asm_add(a, c.data, 20), -EBADMSG);
        /* Index past the count. */
        c.data[16] = 9;
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len), -EBADMSG);
        c.data[16] = 1;
        /* A flipped payload byte: complete, but the checksum says no. */
        c.data[c.len - 1] ^= 1;
        assert_int_equal(fh_handoff_asm_add(a, c.data, c.len), 0);
        add(a, 4, 0, rec, len);
        assert_int_equal(fh_handoff_asm_result(a, &(const void *) { NULL }, &(size_t) { 0 }, NULL), -ENOENT);
        fh_buf_free(&c);
        fh_handoff_asm_free(a);
        free(rec);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(key_names_group_topic_and_partition),
                cmocka_unit_test(decode_returns_what_encode_wrote),
                cmocka_unit_test(every_truncation_and_extension_is_refused),
                cmocka_unit_test(foreign_record_and_absurd_counts_are_refused),
                cmocka_unit_test(every_chunk_fits_a_default_kafka_message),
                cmocka_unit_test(chunks_in_any_order_make_the_record),
                cmocka_unit_test(an_empty_record_is_one_chunk),
                cmocka_unit_test(an_incomplete_newer_hand_over_leaves_the_older_complete_one),
                cmocka_unit_test(after_compaction_the_last_complete_hand_over_wins_and_stale_tails_are_ignored),
                cmocka_unit_test(chunks_of_two_records_under_one_generation_never_mix),
                cmocka_unit_test(damaged_chunks_are_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
