/* Window store: the recent samples of one field of one sensor, and the
 * running aggregates of every window length the sensor's rules read.
 *
 * Samples sit in a ring sorted by timestamp, all at or before `now` (the
 * sensor's latest timestamp), so the window (now - d, now] is always the
 * newest `n` samples: a window is a count, not an index into the ring. The
 * aggregates describe the windows ending at `now`: advancing `now` and
 * appending a sample cost O(windows) amortised, independent of how many
 * samples a window holds (running sums, monotonic deques for min/max).
 *
 * A late sample costs a binary search, an insertion that moves the shorter
 * side of the ring (none for a stream replayed newest first), and per
 * window O(1) for sum/count plus a binary search in the min/max deques:
 * never a rebuild. A query at any other time than `now` (ticks of age()
 * rules) finds its span by binary search and scans it.
 *
 * Sums are exact for values with at most six decimals (kept as integer
 * micro-units), so 16.6 + 16.7 + 16.7 is 50 and `sum(...) >= 50` holds, as
 * an engineer reading the data would expect. Other values use compensated
 * summation. Internal to the engine. */
#ifndef FENGHUO_WINDOW_H
#define FENGHUO_WINDOW_H

#include <string.h>

#include "fenghuo/common.h"
#include "fenghuo/expr.h"

typedef struct fh_sample {
        int64_t ts;
        double v;
} fh_sample;

/* A ring of samples sorted by timestamp: the store's samples, and the
 * min/max deques (which hold copies, so inserting a late sample into the
 * store's ring never invalidates them). */
typedef struct fh_ring {
        fh_sample *e;
        uint32_t cap;      /* power of two, 0 before the first element */
        uint32_t head;     /* slot of element 0, the oldest */
        uint32_t len;
} fh_ring;

typedef struct fh_sum {
        int64_t micro;     /* exact part, in 1e-6 units */
        uint32_t n_inexact;
        double s, c;       /* Neumaier sum of every value (used when n_inexact > 0) */
} fh_sum;

enum {
        FH_WIN_SUM = 1 << 0,
        FH_WIN_MIN = 1 << 1,
        FH_WIN_MAX = 1 << 2,
};

typedef struct fh_win {
        int64_t ms;
        uint32_t n;        /* samples inside (now - ms, now]: the newest n */
        uint8_t needs;     /* FH_WIN_* */
        fh_sum sum;
        fh_ring min, max;  /* monotonic deques: front is the extreme */
} fh_win;

/* One held sample in 12 bytes: the time as 32 bits after the ring's
 * `base`, the value's 64 bits in two 32-bit halves (the struct's alignment
 * is 4, so they pack; fh_packed_v reads them with memcpy). Time and value
 * share a cache line, which the window edges read together. */
typedef struct fh_packed {
        uint32_t dt;
        uint32_t v[2];
} fh_packed;

/* The store's samples, oldest first. The base moves forward when a time
 * would not fit in 32 bits; stores whose windows are longer than 2^31 ms
 * (24.8 days) keep 32 more bits of time each in `hi`. The capacity is not
 * a power of two: it grows by an eighth, so a full window wastes at most
 * that. */
_Static_assert(sizeof(fh_packed) == 12, "a held sample is 12 bytes");

typedef struct fh_samples {
        fh_packed *e;
        uint32_t *hi;      /* NULL unless wide */
        int64_t base;
        uint32_t cap, head, len;
        bool wide;
} fh_samples;

typedef struct fh_store {
        fh_samples r;      /* samples, oldest first */
        int64_t now;       /* FH_TIME_NONE until the first advance */
        int64_t keep_ms;   /* longest window: older samples are let go */
        uint16_t field;
        /* Up to the rule set's 4096 windows can read one field, so 16 bits. */
        uint16_t n_win;
        fh_win *win;
} fh_store;

/* wins: lengths (ms > 0, distinct) and what each needs. */
void fh_store_init(fh_store *s, uint16_t field, const int64_t *win_ms, const uint8_t *needs, size_t n_win);
void fh_store_done(fh_store *s);
/* Drops all samples, keeps the layout. */
void fh_store_reset(fh_store *s);

/* Moves the windows' end to t (t >= now). */
void fh_store_advance(fh_store *s, int64_t t);
/* Appends a sample at ts == now, after fh_store_advance(ts). */
void fh_store_push(fh_store *s, int64_t ts, double v);
/* A sample older than now (no sample with ts is held): O(log n) plus
 * moving the shorter side of the ring, O(1) per window. */
void fh_store_insert_late(fh_store *s, int64_t ts, double v);

/* Replaces the samples with v[0..n) (sorted, all <= now) and sets now:
 * for restoring a snapshot. */
void fh_store_load(fh_store *s, const fh_sample *v, size_t n, int64_t now);

/* Evaluation: op is one of FH_OP_LAST..FH_OP_RATE; w indexes s->win (unused
 * for LAST). Any t is allowed; t == now is the fast path. NaN = missing. */
double fh_store_query(const fh_store *s, fh_opcode op, unsigned w, int64_t t);

size_t fh_store_memory(const fh_store *s);
/* How many samples the store would hold with a sample at ts added (pushed
 * after advancing to ts, or inserted late): for capping a store before
 * anything changes. */
uint32_t fh_store_len_with(const fh_store *s, int64_t ts);

static inline const fh_sample *fh_ring_at(const fh_ring *r, uint32_t k) {
        return &r->e[(r->head + k) & (r->cap - 1)];
}

static inline uint32_t fh_samples_slot(const fh_samples *r, uint32_t k) {
        uint32_t i = r->head + k;
        return i >= r->cap ? i - r->cap : i;
}

static inline double fh_packed_v(const fh_packed *p) {
        double v;
        memcpy(&v, p->v, sizeof(v));
        return v;
}

static inline int64_t fh_samples_ts(const fh_samples *r, uint32_t slot) {
        uint64_t d = r->e[slot].dt;
        if (r->hi)
                d |= (uint64_t) r->hi[slot] << 32;
        return r->base + (int64_t) d;
}

/* k-th sample held, 0 = oldest, k < s->r.len. */
static inline fh_sample fh_store_at(const fh_store *s, uint32_t k) {
        uint32_t i = fh_samples_slot(&s->r, k);
        return (fh_sample) { fh_samples_ts(&s->r, i), fh_packed_v(&s->r.e[i]) };
}

#endif
