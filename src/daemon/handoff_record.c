#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff_record.h"

#define HANDOFF_MAGIC "FHHAND01"

void fh_handoff_key(char *buf, size_t n, const char *group, const char *topic, int32_t partition) {
        snprintf(buf, n, "%s|%s|%d", group, topic, partition);
}

void fh_handoff_encode(fh_buf *out, int64_t position, const fh_offsets *wm, const void *snap, size_t snap_len) {
        fh_buf_append(out, HANDOFF_MAGIC, 8);
        fh_buf_u64(out, (uint64_t) position);
        fh_buf_u32(out, (uint32_t) wm->n);
        for (size_t i = 0; i < wm->n; i++) {
                fh_buf_str(out, wm->v[i].topic, strlen(wm->v[i].topic));
                fh_buf_u32(out, (uint32_t) wm->v[i].partition);
                fh_buf_u64(out, (uint64_t) wm->v[i].offset);
        }
        fh_buf_u64(out, snap_len);
        fh_buf_append(out, snap, snap_len);
}

int fh_handoff_decode(const void *p, size_t n, int64_t *ret_position, fh_offsets *ret_wm,
                      const void **ret_snap, size_t *ret_snap_len) {
        fh_rd rd = { p, n, 8 };
        uint64_t pos, len;
        uint32_t k;
        fh_offsets wm = { 0 };

        if (n < 8 || memcmp(p, HANDOFF_MAGIC, 8) != 0)
                return -EBADMSG;
        if (fh_rd_u64(&rd, &pos) < 0 || fh_rd_u32(&rd, &k) < 0 || k > 100000)
                return -EBADMSG;
        for (uint32_t i = 0; i < k; i++) {
                const char *t;
                size_t tl;
                uint32_t part;
                uint64_t off;
                if (fh_rd_str(&rd, &t, &tl) < 0 || fh_rd_u32(&rd, &part) < 0 || fh_rd_u64(&rd, &off) < 0) {
                        fh_offsets_clear(&wm);
                        return -EBADMSG;
                }
                char *topic = fh_strndup(t, tl);
                fh_offsets_add(&wm, topic, (int32_t) part, (int64_t) off);
                free(topic);
        }
        if (fh_rd_u64(&rd, &len) < 0 || len != rd.n - rd.off) {
                fh_offsets_clear(&wm);
                return -EBADMSG;
        }
        *ret_position = (int64_t) pos;
        *ret_wm = wm;
        *ret_snap = rd.p + rd.off;
        *ret_snap_len = (size_t) len;
        return 0;
}

/* ---- chunks ----
 *
 * A record is cut into chunks of at most FH_HANDOFF_CHUNK bytes, chunk i
 * under the key "<base>|<i>". Compaction keeps the last value of each key,
 * so what survives of a later, shorter hand-over is all of its chunks plus
 * the tail chunks of older, longer ones; every chunk therefore names its
 * hand-over (generation), the chunk count, the whole record's length and
 * checksum, and the reader keeps only a generation it holds completely. */

#define CHUNK_MAGIC "FHHANDC1"
#define CHUNK_HEADER (8 + 8 + 4 + 4 + 8 + 8)

size_t fh_handoff_chunk_count(size_t len) {
        return len == 0 ? 1 : (len + FH_HANDOFF_CHUNK - 1) / FH_HANDOFF_CHUNK;
}

void fh_handoff_chunk_key(char *buf, size_t n, const char *base, size_t index) {
        snprintf(buf, n, "%s|%zu", base, index);
}

uint64_t fh_handoff_record_sum(const void *rec, size_t len) {
        return fh_checksum(rec, len);
}

void fh_handoff_chunk_encode(fh_buf *out, uint64_t generation, size_t index, const void *rec, size_t len,
                             uint64_t sum) {
        size_t count = fh_handoff_chunk_count(len);
        size_t off = index * FH_HANDOFF_CHUNK;
        size_t n = off >= len ? 0 : (len - off < FH_HANDOFF_CHUNK ? len - off : FH_HANDOFF_CHUNK);

        fh_buf_append(out, CHUNK_MAGIC, 8);
        fh_buf_u64(out, generation);
        fh_buf_u32(out, (uint32_t) index);
        fh_buf_u32(out, (uint32_t) count);
        fh_buf_u64(out, len);
        fh_buf_u64(out, sum);
        fh_buf_append(out, (const char *) rec + off, n);
}

typedef struct gen {
        uint64_t generation, len, sum;
        uint32_t count, have;
        char *data;            /* len bytes, filled chunk by chunk */
        bool *got;
} gen;

struct fh_handoff_asm {
        gen *v;
        size_t n;
        fh_buf out;
};

fh_handoff_asm *fh_handoff_asm_new(void) {
        return fh_calloc(1, sizeof(fh_handoff_asm));
}

static void gen_clear(gen *g) {
        free(g->data);
        free(g->got);
}

void fh_handoff_asm_reset(fh_handoff_asm *a) {
        for (size_t i = 0; i < a->n; i++)
                gen_clear(&a->v[i]);
        free(a->v);
        a->v = NULL;
        a->n = 0;
}

fh_handoff_asm *fh_handoff_asm_free(fh_handoff_asm *a) {
        if (!a)
                return NULL;
        fh_handoff_asm_reset(a);
        fh_buf_free(&a->out);
        free(a);
        return NULL;
}

/* The largest hand-over the reader accepts: far above any registry, low
 * enough that a corrupt length cannot make it allocate the machine. */
#define MAX_RECORD ((uint64_t) 4 << 30)

int fh_handoff_asm_add(fh_handoff_asm *a, const void *p, size_t n) {
        fh_rd rd = { p, n, 8 };
        uint64_t generation, len, sum;
        uint32_t index, count;
        gen *g = NULL;

        if (n < CHUNK_HEADER || memcmp(p, CHUNK_MAGIC, 8) != 0)
                return -EBADMSG;
        if (fh_rd_u64(&rd, &generation) < 0 || fh_rd_u32(&rd, &index) < 0 || fh_rd_u32(&rd, &count) < 0 ||
            fh_rd_u64(&rd, &len) < 0 || fh_rd_u64(&rd, &sum) < 0)
                return -EBADMSG;
        if (len > MAX_RECORD || count != fh_handoff_chunk_count((size_t) len) || index >= count)
                return -EBADMSG;
        size_t off = (size_t) index * FH_HANDOFF_CHUNK;
        size_t want = off >= len ? 0 : ((size_t) len - off < FH_HANDOFF_CHUNK ? (size_t) len - off : FH_HANDOFF_CHUNK);
        if (rd.n - rd.off != want)
                return -EBADMSG;

        for (size_t i = 0; i < a->n && !g; i++)
                if (a->v[i].generation == generation)
                        g = &a->v[i];
        if (g && (g->len != len || g->count != count || g->sum != sum))
                /* Two writers chose one generation: neither can be trusted. */
                g->count = 0;
        if (g && g->count == 0)
                return -EBADMSG;
        if (!g) {
                a->v = fh_realloc(a->v, (a->n + 1) * sizeof(*a->v));
                g = &a->v[a->n++];
                *g = (gen) { generation, len, sum, count, 0, fh_malloc((size_t) len + 1),
                             fh_calloc(count, sizeof(bool)) };
        }
        if (!g->got[index]) {
                g->got[index] = true;
                g->have++;
        }
        memcpy(g->data + off, rd.p + rd.off, want);
        return 0;
}

int fh_handoff_asm_result(fh_handoff_asm *a, const void **ret, size_t *ret_len, uint64_t *ret_generation) {
        gen *best = NULL;

        for (size_t i = 0; i < a->n; i++) {
                gen *g = &a->v[i];
                if (g->count == 0 || g->have != g->count || fh_checksum(g->data, (size_t) g->len) != g->sum)
                        continue;
                if (!best || g->generation > best->generation)
                        best = g;
        }
        if (!best)
                return -ENOENT;
        *ret = best->data;
        *ret_len = (size_t) best->len;
        if (ret_generation)
                *ret_generation = best->generation;
        return 0;
}
