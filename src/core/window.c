#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "window.h"

/* Values within this magnitude are summed exactly in micro-units: 9.2e18 /
 * 1e12 leaves room for over nine million samples in one window. */
#define MICRO_LIMIT 1e6

static inline bool to_micro(double v, int64_t *ret) {
        if (!(fabs(v) < MICRO_LIMIT))
                return false;
        int64_t m = llround(v * 1e6);
        if ((double) m / 1e6 != v)
                return false;
        *ret = m;
        return true;
}

static inline void sum_add(fh_sum *s, double v, int sign) {
        int64_t m;
        double x = sign > 0 ? v : -v;

        if (to_micro(v, &m))
                s->micro += sign > 0 ? m : -m;
        else
                s->n_inexact += sign > 0 ? 1 : (uint32_t) -1;
        /* Neumaier: keeps the low bits that a plain running sum loses when
         * values enter and leave for months. */
        double t = s->s + x;
        if (fabs(s->s) >= fabs(x))
                s->c += (s->s - t) + x;
        else
                s->c += (x - t) + s->s;
        s->s = t;
}

static inline double sum_value(const fh_sum *s) {
        if (s->n_inexact == 0)
                return (double) s->micro / 1e6;
        return s->s + s->c;
}

static void sum_clear(fh_sum *s) {
        *s = (fh_sum) { 0 };
}

/* ---- deque of absolute indices ---- */

static void dq_push_back(fh_deque *d, uint64_t i) {
        if (d->len == d->cap) {
                uint32_t ncap = d->cap ? d->cap * 2 : 8;
                uint64_t *n = fh_malloc(ncap * sizeof(*n));
                for (uint32_t k = 0; k < d->len; k++)
                        n[k] = d->idx[(d->head + k) & (d->cap - 1)];
                free(d->idx);
                d->idx = n;
                d->cap = ncap;
                d->head = 0;
        }
        d->idx[(d->head + d->len) & (d->cap - 1)] = i;
        d->len++;
}

static inline uint64_t dq_front(const fh_deque *d) {
        return d->idx[d->head & (d->cap - 1)];
}

static inline uint64_t dq_back(const fh_deque *d) {
        return d->idx[(d->head + d->len - 1) & (d->cap - 1)];
}

static inline void dq_pop_front(fh_deque *d) {
        d->head = (d->head + 1) & (d->cap - 1);
        d->len--;
}

static inline void dq_pop_back(fh_deque *d) {
        d->len--;
}

static void dq_clear(fh_deque *d) {
        d->head = 0;
        d->len = 0;
}

/* ---- store ---- */

void fh_store_init(fh_store *s, uint16_t field, const int64_t *win_ms, const uint8_t *needs, size_t n_win) {
        *s = (fh_store) { .field = field, .now = FH_TIME_NONE, .n_win = (uint16_t) n_win };
        s->win = n_win ? fh_calloc(n_win, sizeof(*s->win)) : NULL;
        for (size_t i = 0; i < n_win; i++) {
                s->win[i].ms = win_ms[i];
                s->win[i].needs = needs[i];
                if (win_ms[i] > s->keep_ms)
                        s->keep_ms = win_ms[i];
        }
}

void fh_store_done(fh_store *s) {
        for (size_t i = 0; i < s->n_win; i++) {
                free(s->win[i].min.idx);
                free(s->win[i].max.idx);
        }
        free(s->win);
        free(s->ring);
        *s = (fh_store) { 0 };
}

void fh_store_reset(fh_store *s) {
        s->len = 0;
        s->base = 0;
        s->now = FH_TIME_NONE;
        for (size_t i = 0; i < s->n_win; i++) {
                fh_win *w = &s->win[i];
                w->left = 0;
                sum_clear(&w->sum);
                dq_clear(&w->min);
                dq_clear(&w->max);
        }
}

static inline uint64_t store_end(const fh_store *s) {
        return s->base + s->len;
}

static void ring_grow(fh_store *s) {
        uint32_t ncap = s->cap ? s->cap * 2 : 4;
        fh_sample *n = fh_malloc(ncap * sizeof(*n));

        /* Keep absolute index i at slot i & (ncap-1), so deques stay valid. */
        for (uint64_t i = s->base; i < store_end(s); i++)
                n[i & (ncap - 1)] = *fh_store_at(s, i);
        free(s->ring);
        s->ring = n;
        s->cap = ncap;
}

static void win_evict_to(fh_store *s, fh_win *w, int64_t t) {
        int64_t lo = t - w->ms;
        uint64_t end = store_end(s);

        while (w->left < end) {
                const fh_sample *x = fh_store_at(s, w->left);
                if (x->ts > lo)
                        break;
                if (w->needs & FH_WIN_SUM)
                        sum_add(&w->sum, x->v, -1);
                w->left++;
        }
        while (w->min.len && dq_front(&w->min) < w->left)
                dq_pop_front(&w->min);
        while (w->max.len && dq_front(&w->max) < w->left)
                dq_pop_front(&w->max);
        if (w->left == end && (w->needs & FH_WIN_SUM))
                sum_clear(&w->sum);   /* an empty window sums to exactly 0 */
}

static void store_trim(fh_store *s) {
        /* The newest sample always stays: last(f) needs it whatever the
         * windows are. Every window's left edge is past what goes. */
        while (s->len > 1 && fh_store_at(s, s->base)->ts <= s->now - s->keep_ms) {
                s->base++;
                s->len--;
        }
}

void fh_store_advance(fh_store *s, int64_t t) {
        if (s->now != FH_TIME_NONE && t <= s->now)
                return;
        s->now = t;
        for (size_t i = 0; i < s->n_win; i++)
                win_evict_to(s, &s->win[i], t);
        store_trim(s);
}

static void win_push(fh_store *s, fh_win *w, uint64_t i, double v) {
        if (w->needs & FH_WIN_SUM)
                sum_add(&w->sum, v, +1);
        if (w->needs & FH_WIN_MIN) {
                while (w->min.len && fh_store_at(s, dq_back(&w->min))->v >= v)
                        dq_pop_back(&w->min);
                dq_push_back(&w->min, i);
        }
        if (w->needs & FH_WIN_MAX) {
                while (w->max.len && fh_store_at(s, dq_back(&w->max))->v <= v)
                        dq_pop_back(&w->max);
                dq_push_back(&w->max, i);
        }
}

void fh_store_push(fh_store *s, int64_t ts, double v) {
        if (s->len == s->cap)
                ring_grow(s);
        uint64_t i = store_end(s);
        s->ring[i & (s->cap - 1)] = (fh_sample) { ts, v };
        s->len++;
        if (s->len == 1)
                s->base = i;
        /* ts == now: the sample is inside every window. */
        for (size_t k = 0; k < s->n_win; k++)
                win_push(s, &s->win[k], i, v);
}

/* Rebuilds every window from the samples: for late samples and restores. */
static void store_rebuild(fh_store *s) {
        uint64_t end = store_end(s);

        for (size_t k = 0; k < s->n_win; k++) {
                fh_win *w = &s->win[k];
                sum_clear(&w->sum);
                dq_clear(&w->min);
                dq_clear(&w->max);
                w->left = s->base;
                int64_t lo = s->now - w->ms;
                while (w->left < end && fh_store_at(s, w->left)->ts <= lo)
                        w->left++;
                for (uint64_t i = w->left; i < end; i++)
                        win_push(s, w, i, fh_store_at(s, i)->v);
        }
}

void fh_store_insert_late(fh_store *s, int64_t ts, double v) {
        if (s->len > 0 && ts <= s->now - s->keep_ms)
                return;   /* outside every window and not the newest: no effect */
        if (s->len == s->cap)
                ring_grow(s);

        /* Insertion in the middle: shift the newer samples one slot right. */
        uint64_t i = store_end(s);
        while (i > s->base && fh_store_at(s, i - 1)->ts > ts) {
                s->ring[i & (s->cap - 1)] = *fh_store_at(s, i - 1);
                i--;
        }
        s->ring[i & (s->cap - 1)] = (fh_sample) { ts, v };
        s->len++;
        if (s->now == FH_TIME_NONE)
                s->now = ts;
        store_rebuild(s);
}

void fh_store_load(fh_store *s, const fh_sample *v, size_t n, int64_t now) {
        size_t from = 0;

        fh_store_reset(s);
        s->now = now;
        while (from + 1 < n && v[from].ts <= now - s->keep_ms)
                from++;
        while (s->cap < n - from)
                ring_grow(s);
        for (size_t i = from; i < n; i++)
                s->ring[(i - from) & (s->cap - 1)] = v[i];
        s->base = 0;
        s->len = (uint32_t) (n - from);
        store_rebuild(s);
}

/* ---- queries ---- */

typedef struct span {
        uint64_t a, b;     /* samples [a, b) are in the window */
} span;

static span window_span(const fh_store *s, const fh_win *w, int64_t t) {
        uint64_t end = store_end(s);
        span r;

        if (t == s->now) {
                r.a = w->left;
                r.b = end;
                return r;
        }
        int64_t lo = t - w->ms;
        r.a = s->base;
        while (r.a < end && fh_store_at(s, r.a)->ts <= lo)
                r.a++;
        r.b = end;
        while (r.b > r.a && fh_store_at(s, r.b - 1)->ts > t)
                r.b--;
        return r;
}

static double span_sum(const fh_store *s, span sp) {
        fh_sum acc = { 0 };
        for (uint64_t i = sp.a; i < sp.b; i++)
                sum_add(&acc, fh_store_at(s, i)->v, +1);
        return sum_value(&acc);
}

static double span_extreme(const fh_store *s, span sp, bool want_min) {
        double m = fh_store_at(s, sp.a)->v;
        for (uint64_t i = sp.a + 1; i < sp.b; i++) {
                double v = fh_store_at(s, i)->v;
                if (want_min ? v < m : v > m)
                        m = v;
        }
        return m;
}

static double diff_exact(double last, double first) {
        int64_t ml, mf;
        if (to_micro(last, &ml) && to_micro(first, &mf))
                return (double) (ml - mf) / 1e6;
        return last - first;
}

double fh_store_query(const fh_store *s, fh_opcode op, unsigned wi, int64_t t) {
        if (op == FH_OP_LAST) {
                uint64_t i = store_end(s);
                while (i > s->base && fh_store_at(s, i - 1)->ts > t)
                        i--;
                return i > s->base ? fh_store_at(s, i - 1)->v : NAN;
        }

        const fh_win *w = &s->win[wi];
        bool fast = t == s->now;
        span sp = window_span(s, w, t);
        uint64_t n = sp.b - sp.a;

        switch (op) {
        case FH_OP_COUNT:
                return (double) n;
        case FH_OP_SUM:
                if (n == 0)
                        return 0;
                return fast ? sum_value(&w->sum) : span_sum(s, sp);
        case FH_OP_AVG:
                if (n == 0)
                        return NAN;
                return (fast ? sum_value(&w->sum) : span_sum(s, sp)) / (double) n;
        case FH_OP_MIN:
                if (n == 0)
                        return NAN;
                return fast ? fh_store_at(s, dq_front(&w->min))->v : span_extreme(s, sp, true);
        case FH_OP_MAX:
                if (n == 0)
                        return NAN;
                return fast ? fh_store_at(s, dq_front(&w->max))->v : span_extreme(s, sp, false);
        case FH_OP_DELTA:
                if (n == 0)
                        return NAN;
                return diff_exact(fh_store_at(s, sp.b - 1)->v, fh_store_at(s, sp.a)->v);
        case FH_OP_RATE: {
                if (n < 2)
                        return NAN;
                const fh_sample *f = fh_store_at(s, sp.a), *l = fh_store_at(s, sp.b - 1);
                if (l->ts <= f->ts)
                        return NAN;
                return diff_exact(l->v, f->v) * ((double) w->ms / (double) (l->ts - f->ts));
        }
        default:
                return NAN;
        }
}

size_t fh_store_memory(const fh_store *s) {
        size_t m = sizeof(*s) + s->cap * sizeof(fh_sample) + s->n_win * sizeof(fh_win);
        for (size_t i = 0; i < s->n_win; i++)
                m += (s->win[i].min.cap + s->win[i].max.cap) * sizeof(uint64_t);
        return m;
}
