#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "window.h"

/* Values within this magnitude are summed exactly in micro-units: 9.2e18 /
 * 1e12 leaves room for over nine million samples in one window. */
#define MICRO_LIMIT 1e6
/* The micro-unit sum wraps (unsigned, so defined) and is exact whenever the
 * true sum fits in an int64; the compensated sum, which tracks the true one
 * closely, tells when it may not, and is the answer then. */
#define MICRO_SUM_LIMIT 4e12

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
                s->micro = (int64_t) (sign > 0 ? (uint64_t) s->micro + (uint64_t) m
                                               : (uint64_t) s->micro - (uint64_t) m);
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
        if (s->n_inexact == 0 && fabs(s->s + s->c) < MICRO_SUM_LIMIT)
                return (double) s->micro / 1e6;
        return s->s + s->c;
}

static void sum_clear(fh_sum *s) {
        *s = (fh_sum) { 0 };
}

/* ---- sorted rings ---- */

static inline fh_sample *ring_slot(fh_ring *r, uint32_t k) {
        return &r->e[(r->head + k) & (r->cap - 1)];
}

static void ring_grow(fh_ring *r) {
        uint32_t ncap = r->cap ? r->cap * 2 : 4;
        fh_sample *n = fh_malloc(ncap * sizeof(*n));

        for (uint32_t k = 0; k < r->len; k++)
                n[k] = *fh_ring_at(r, k);
        free(r->e);
        r->e = n;
        r->cap = ncap;
        r->head = 0;
}

static void ring_push_back(fh_ring *r, fh_sample x) {
        if (r->len == r->cap)
                ring_grow(r);
        *ring_slot(r, r->len++) = x;
}

static inline void ring_pop_front(fh_ring *r, uint32_t n) {
        r->head = (r->head + n) & (r->cap - 1);
        r->len -= n;
}

static inline void ring_clear(fh_ring *r) {
        r->head = 0;
        r->len = 0;
}

/* The number of elements with ts <= t: elements [0, result) are at or
 * before t. */
static uint32_t ring_rank(const fh_ring *r, int64_t t) {
        uint32_t lo = 0, hi = r->len;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (fh_ring_at(r, mid)->ts <= t)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Opens a gap of n slots at position k (0 <= k <= len) by moving whichever
 * side is shorter: a sample older than all others (a stream replayed newest
 * first) moves nothing. The gap's content is undefined. */
static void ring_open(fh_ring *r, uint32_t k, uint32_t n) {
        while (r->len + n > r->cap)
                ring_grow(r);
        if (k < r->len - k) {
                r->head = (r->head - n) & (r->cap - 1);
                for (uint32_t j = 0; j < k; j++)
                        *ring_slot(r, j) = *ring_slot(r, j + n);
        } else {
                for (uint32_t j = r->len; j-- > k;)
                        *ring_slot(r, j + n) = *ring_slot(r, j);
        }
        r->len += n;
}

/* Removes elements [k, k + n), moving the shorter side. */
static void ring_close(fh_ring *r, uint32_t k, uint32_t n) {
        if (k < r->len - k - n) {
                for (uint32_t j = k; j-- > 0;)
                        *ring_slot(r, j + n) = *ring_slot(r, j);
                r->head = (r->head + n) & (r->cap - 1);
        } else {
                for (uint32_t j = k; j + n < r->len; j++)
                        *ring_slot(r, j) = *ring_slot(r, j + n);
        }
        r->len -= n;
}

/* ---- the store's samples ---- */

/* A store whose windows reach further back than this keeps 64-bit times:
 * after a rebase every held time is within keep_ms of base, and 32 bits
 * then leave at least as much again before the next one. */
#define NARROW_KEEP_MS ((int64_t) 1 << 31)

static inline void smp_set(fh_samples *r, uint32_t i, int64_t ts, double v) {
        uint64_t d = (uint64_t) (ts - r->base);
        r->e[i].dt = (uint32_t) d;
        memcpy(r->e[i].v, &v, sizeof(v));
        if (r->hi)
                r->hi[i] = (uint32_t) (d >> 32);
}

static inline void smp_move(fh_samples *r, uint32_t to, uint32_t from) {
        r->e[to] = r->e[from];
        if (r->hi)
                r->hi[to] = r->hi[from];
}

static void smp_resize(fh_samples *r, uint32_t ncap) {
        fh_packed *e = fh_malloc(ncap * sizeof(*e));
        uint32_t *hi = r->wide ? fh_malloc(ncap * sizeof(*hi)) : NULL;

        for (uint32_t k = 0; k < r->len; k++) {
                uint32_t i = fh_samples_slot(r, k);
                e[k] = r->e[i];
                if (hi)
                        hi[k] = r->hi[i];
        }
        free(r->e);
        free(r->hi);
        r->e = e;
        r->hi = hi;
        r->cap = ncap;
        r->head = 0;
}

/* Grows in place where the allocator can (large blocks are remapped, not
 * copied), then mends the wrap: the shorter of the two pieces moves. */
static void smp_grow(fh_samples *r, uint32_t ncap) {
        uint32_t old = r->cap;

        r->e = fh_realloc(r->e, ncap * sizeof(*r->e));
        if (r->wide)
                r->hi = fh_realloc(r->hi, ncap * sizeof(*r->hi));
        if (r->head + r->len > old) {
                uint32_t wrapped = r->head + r->len - old, tail = old - r->head;
                if (wrapped <= tail && wrapped <= ncap - old) {
                        memmove(r->e + old, r->e, wrapped * sizeof(*r->e));
                        if (r->hi)
                                memmove(r->hi + old, r->hi, wrapped * sizeof(*r->hi));
                } else {
                        memmove(r->e + ncap - tail, r->e + r->head, tail * sizeof(*r->e));
                        if (r->hi)
                                memmove(r->hi + ncap - tail, r->hi + r->head, tail * sizeof(*r->hi));
                        r->head = ncap - tail;
                }
        }
        r->cap = ncap;
}

static void smp_free(fh_samples *r) {
        free(r->e);
        free(r->hi);
}

static inline int64_t smp_ts(const fh_samples *r, uint32_t k) {
        return fh_samples_ts(r, fh_samples_slot(r, k));
}

static void smp_pop_front(fh_samples *r, uint32_t n) {
        r->head += n;
        if (r->head >= r->cap)
                r->head -= r->cap;
        r->len -= n;
}

/* The number of samples with ts <= t. */
static uint32_t smp_rank(const fh_samples *r, int64_t t) {
        uint32_t lo = 0, hi = r->len;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (smp_ts(r, mid) <= t)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Gives the samples of s room for one more at ts, which is after
 * now - keep_ms (or any time when none is held): grows the arrays by an
 * eighth, and moves base forward when ts would not fit in 32 bits. */
static void smp_fit(fh_store *s, int64_t ts) {
        fh_samples *r = &s->r;
        int64_t floor = s->now == FH_TIME_NONE ? ts : s->now - s->keep_ms;

        if (r->len == r->cap)
                smp_grow(r, r->cap + r->cap / 8 + 8);
        if (r->len == 0) {
                r->base = ts < floor ? ts : floor;
                return;
        }
        if (r->wide || (uint64_t) (ts - r->base) <= UINT32_MAX)
                return;
        /* What is at or before now - keep_ms is outside every window and,
         * with ts newer, no longer the newest either. */
        uint32_t n = 0;
        while (n < r->len && smp_ts(r, n) <= floor)
                n++;
        smp_pop_front(r, n);
        for (uint32_t k = 0; k < r->len; k++) {
                uint32_t i = fh_samples_slot(r, k);
                r->e[i].dt = (uint32_t) (fh_samples_ts(r, i) - floor);
        }
        r->base = floor;
}

static inline void smp_push_back(fh_store *s, int64_t ts, double v) {
        const fh_samples *r = &s->r;
        if (r->len == r->cap || r->len == 0 || (!r->wide && (uint64_t) (ts - r->base) > UINT32_MAX))
                smp_fit(s, ts);
        smp_set(&s->r, fh_samples_slot(&s->r, s->r.len), ts, v);
        s->r.len++;
}

/* Inserts in time order, moving whichever side is shorter: a sample older
 * than all others (a stream replayed newest first) moves nothing. */
static void smp_insert(fh_store *s, int64_t ts, double v) {
        fh_samples *r = &s->r;

        smp_fit(s, ts);
        uint32_t k = smp_rank(r, ts);
        if (k < r->len - k) {
                r->head = r->head ? r->head - 1 : r->cap - 1;
                for (uint32_t j = 0; j < k; j++)
                        smp_move(r, fh_samples_slot(r, j), fh_samples_slot(r, j + 1));
        } else {
                for (uint32_t j = r->len; j-- > k;)
                        smp_move(r, fh_samples_slot(r, j + 1), fh_samples_slot(r, j));
        }
        smp_set(r, fh_samples_slot(r, k), ts, v);
        r->len++;
}

/* ---- monotonic deques ----
 *
 * The min deque holds, in time order, every sample of the window that is
 * smaller than everything after it (of equal values the later one): values
 * rise from front to back and the front is the window's minimum. The max
 * deque is the mirror image. */

static inline bool beats(bool want_min, double a, double b) {
        return want_min ? a < b : a > b;
}

static void dq_push(fh_ring *d, bool want_min, fh_sample x) {
        while (d->len && !beats(want_min, fh_ring_at(d, d->len - 1)->v, x.v))
                d->len--;
        ring_push_back(d, x);
}

static void dq_evict(fh_ring *d, int64_t lo) {
        uint32_t n = 0;
        while (n < d->len && fh_ring_at(d, n)->ts <= lo)
                n++;
        if (n)
                ring_pop_front(d, n);
}

/* A late sample inside the window. Samples after it keep their place; it
 * joins only if it beats the best of them (the first deque entry after it),
 * and then displaces the entries before it that it beats, which sit right
 * before it. */
static void dq_insert(fh_ring *d, bool want_min, fh_sample x) {
        uint32_t j = ring_rank(d, x.ts);

        if (j < d->len && !beats(want_min, x.v, fh_ring_at(d, j)->v))
                return;
        uint32_t i = j;
        while (i > 0 && !beats(want_min, fh_ring_at(d, i - 1)->v, x.v))
                i--;
        if (i == j) {
                ring_open(d, j, 1);
        } else if (j - i > 1) {
                ring_close(d, i + 1, j - i - 1);
        }
        *ring_slot(d, i) = x;
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
        s->r.wide = s->keep_ms > NARROW_KEEP_MS;
}

void fh_store_done(fh_store *s) {
        for (size_t i = 0; i < s->n_win; i++) {
                free(s->win[i].min.e);
                free(s->win[i].max.e);
        }
        free(s->win);
        smp_free(&s->r);
        *s = (fh_store) { 0 };
}

static void win_clear(fh_win *w) {
        w->n = 0;
        sum_clear(&w->sum);
        ring_clear(&w->min);
        ring_clear(&w->max);
}

void fh_store_reset(fh_store *s) {
        s->r.head = 0;
        s->r.len = 0;
        s->now = FH_TIME_NONE;
        for (size_t i = 0; i < s->n_win; i++)
                win_clear(&s->win[i]);
}

static void win_evict_to(fh_store *s, fh_win *w, int64_t t) {
        int64_t lo = t - w->ms;

        while (w->n > 0) {
                uint32_t i = fh_samples_slot(&s->r, s->r.len - w->n);
                if (fh_samples_ts(&s->r, i) > lo)
                        break;
                if (w->needs & FH_WIN_SUM)
                        sum_add(&w->sum, fh_packed_v(&s->r.e[i]), -1);
                w->n--;
        }
        if (w->needs & FH_WIN_MIN)
                dq_evict(&w->min, lo);
        if (w->needs & FH_WIN_MAX)
                dq_evict(&w->max, lo);
        if (w->n == 0 && (w->needs & FH_WIN_SUM))
                sum_clear(&w->sum);   /* an empty window sums to exactly 0 */
}

static void store_trim(fh_store *s) {
        /* The newest sample always stays: last(f) needs it whatever the
         * windows are. What goes is outside every window. */
        uint32_t n = 0;
        while (n + 1 < s->r.len && smp_ts(&s->r, n) <= s->now - s->keep_ms)
                n++;
        smp_pop_front(&s->r, n);
        /* A window that shrank (samples now arrive less often) gives back
         * what it no longer needs. */
        if (s->r.cap > 64 && s->r.len < s->r.cap / 2)
                smp_resize(&s->r, s->r.len + s->r.len / 8 + 8);
}

void fh_store_advance(fh_store *s, int64_t t) {
        if (s->now != FH_TIME_NONE && t <= s->now)
                return;
        s->now = t;
        for (size_t i = 0; i < s->n_win; i++)
                win_evict_to(s, &s->win[i], t);
        store_trim(s);
}

static void win_add(fh_win *w, fh_sample x, bool late) {
        w->n++;
        if (w->needs & FH_WIN_SUM)
                sum_add(&w->sum, x.v, +1);
        if (w->needs & FH_WIN_MIN)
                (late ? dq_insert : dq_push)(&w->min, true, x);
        if (w->needs & FH_WIN_MAX)
                (late ? dq_insert : dq_push)(&w->max, false, x);
}

void fh_store_push(fh_store *s, int64_t ts, double v) {
        fh_sample x = { ts, v };

        smp_push_back(s, ts, v);
        /* ts == now: the sample is inside every window. */
        for (size_t k = 0; k < s->n_win; k++)
                win_add(&s->win[k], x, false);
}

void fh_store_insert_late(fh_store *s, int64_t ts, double v) {
        fh_sample x = { ts, v };

        if (s->r.len > 0 && ts <= s->now - s->keep_ms)
                return;   /* outside every window and not the newest: no effect */
        if (s->now == FH_TIME_NONE)
                s->now = ts;
        smp_insert(s, ts, v);
        /* Windows are the newest samples: one that starts after ts is
         * unchanged, its count still names the same samples. */
        for (size_t i = 0; i < s->n_win; i++)
                if (ts > s->now - s->win[i].ms)
                        win_add(&s->win[i], x, true);
}

void fh_store_load(fh_store *s, const fh_sample *v, size_t n, int64_t now) {
        size_t from = 0;

        fh_store_reset(s);
        s->now = now;
        while (from + 1 < n && v[from].ts <= now - s->keep_ms)
                from++;
        for (size_t i = from; i < n; i++) {
                smp_push_back(s, v[i].ts, v[i].v);
                for (size_t k = 0; k < s->n_win; k++)
                        if (v[i].ts > now - s->win[k].ms)
                                win_add(&s->win[k], v[i], false);
        }
}

/* ---- queries ---- */

typedef struct span {
        uint32_t a, b;     /* samples [a, b) are in the window */
} span;

static span window_span(const fh_store *s, const fh_win *w, int64_t t) {
        if (t == s->now)
                return (span) { s->r.len - w->n, s->r.len };
        return (span) { smp_rank(&s->r, t - w->ms), smp_rank(&s->r, t) };
}

static double span_sum(const fh_store *s, span sp) {
        fh_sum acc = { 0 };
        for (uint32_t i = sp.a; i < sp.b; i++)
                sum_add(&acc, fh_store_at(s, i).v, +1);
        return sum_value(&acc);
}

static double span_extreme(const fh_store *s, span sp, bool want_min) {
        double m = fh_store_at(s, sp.a).v;
        for (uint32_t i = sp.a + 1; i < sp.b; i++) {
                double v = fh_store_at(s, i).v;
                if (beats(want_min, v, m))
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
                uint32_t i = t >= s->now ? s->r.len : smp_rank(&s->r, t);
                return i > 0 ? fh_store_at(s, i - 1).v : NAN;
        }

        const fh_win *w = &s->win[wi];
        bool fast = t == s->now;
        span sp = window_span(s, w, t);
        uint32_t n = sp.b - sp.a;

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
                return fast ? fh_ring_at(&w->min, 0)->v : span_extreme(s, sp, true);
        case FH_OP_MAX:
                if (n == 0)
                        return NAN;
                return fast ? fh_ring_at(&w->max, 0)->v : span_extreme(s, sp, false);
        case FH_OP_DELTA:
                if (n == 0)
                        return NAN;
                return diff_exact(fh_store_at(s, sp.b - 1).v, fh_store_at(s, sp.a).v);
        case FH_OP_RATE: {
                if (n < 2)
                        return NAN;
                fh_sample f = fh_store_at(s, sp.a), l = fh_store_at(s, sp.b - 1);
                if (l.ts <= f.ts)
                        return NAN;
                return diff_exact(l.v, f.v) * ((double) w->ms / (double) (l.ts - f.ts));
        }
        default:
                return NAN;
        }
}

size_t fh_store_memory(const fh_store *s) {
        size_t m = sizeof(*s) + s->r.cap * (sizeof(*s->r.e) + (s->r.wide ? sizeof(*s->r.hi) : 0)) +
                   s->n_win * sizeof(fh_win);
        for (size_t i = 0; i < s->n_win; i++)
                m += (s->win[i].min.cap + s->win[i].max.cap) * sizeof(fh_sample);
        return m;
}

uint32_t fh_store_len_with(const fh_store *s, int64_t ts) {
        uint32_t len = s->r.len;

        if (len == 0)
                return 1;
        if (ts >= s->now) {
                /* What advancing to ts keeps (the newest always), then ts. */
                uint32_t kept = len - smp_rank(&s->r, ts - s->keep_ms);
                return (kept > 0 ? kept : 1) + 1;
        }
        if (ts <= s->now - s->keep_ms)
                return len;   /* a late sample outside every window is not kept */
        return len + 1;
}
