/* Window store: the recent samples of one field of one sensor, and the
 * running aggregates of every window length the sensor's rules read.
 *
 * Samples sit in a ring sorted by timestamp. The aggregates describe the
 * windows ending at `now` (the sensor's latest timestamp): advancing `now`
 * and appending a sample cost O(windows) amortised, independent of how many
 * samples a window holds (running sums, monotonic deques for min/max). A
 * query at any other time, and a late sample, fall back to a scan: both
 * are rare (ticks of age() rules, readings arriving out of order).
 *
 * Sums are exact for values with at most six decimals (kept as integer
 * micro-units), so 16.6 + 16.7 + 16.7 is 50 and `sum(...) >= 50` holds, as
 * an engineer reading the data would expect. Other values use compensated
 * summation. Internal to the engine. */
#ifndef FENGHUO_WINDOW_H
#define FENGHUO_WINDOW_H

#include "fenghuo/common.h"
#include "fenghuo/expr.h"

typedef struct fh_sample {
        int64_t ts;
        double v;
} fh_sample;

typedef struct fh_deque {
        uint64_t *idx;     /* absolute sample indices */
        uint32_t cap;      /* power of two */
        uint32_t head;
        uint32_t len;
} fh_deque;

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
        uint64_t left;     /* absolute index of the oldest sample inside (now - ms, now] */
        uint8_t needs;     /* FH_WIN_* */
        fh_sum sum;
        fh_deque min, max;
} fh_win;

typedef struct fh_store {
        fh_sample *ring;
        uint32_t cap;      /* power of two, 0 before the first sample */
        uint32_t len;
        uint64_t base;     /* absolute index of ring's oldest sample */
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
/* A sample older than now (no sample with ts is held). */
void fh_store_insert_late(fh_store *s, int64_t ts, double v);

/* Replaces the samples with v[0..n) (sorted, all <= now) and sets now:
 * for restoring a snapshot. */
void fh_store_load(fh_store *s, const fh_sample *v, size_t n, int64_t now);

/* Evaluation: op is one of FH_OP_LAST..FH_OP_RATE; w indexes s->win (unused
 * for LAST). Any t is allowed; t == now is the fast path. NaN = missing. */
double fh_store_query(const fh_store *s, fh_opcode op, unsigned w, int64_t t);

size_t fh_store_memory(const fh_store *s);

static inline const fh_sample *fh_store_at(const fh_store *s, uint64_t abs) {
        return &s->ring[abs & (s->cap - 1)];
}

#endif
