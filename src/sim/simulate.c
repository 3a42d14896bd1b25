/* Scenario generator: a storm cell crossing the district from south-west to
 * north-east, rivers rising behind it, one slope accelerating, one bridge
 * vibrating, one gauge going silent, and a share of bad input.
 *
 * Reproducible to the byte: the only randomness is our own xoshiro256**
 * seeded through splitmix64, and every value is rounded to fixed decimals
 * before it is written, so the last bits of libm's exp()/erf() never show.
 * Two streams: one for the readings, one for the bad input, so that asking
 * for bad lines adds lines without changing any valid one.
 *
 * Hot path: 10,000 stations at one-minute steps is 14.4 M lines a day, so a
 * timestamp is formatted once per step and numbers go through a small
 * fixed-decimal writer instead of printf. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"

#define MS_PER_MIN  60000LL
#define MS_PER_HOUR 3600000LL
#define MS_PER_DAY  86400000LL
#define SQRT_2PI    2.5066282746310002

/* The full scenario is timed for two days; shorter runs compress it. */
#define STORM_CROSSING_H   28.8
#define TRACK_MARGIN       0.15   /* track starts/ends this far outside the box */
#define CORE_SIGMA         0.09   /* convective core, in box units */
#define SHIELD_SIGMA       0.22   /* stratiform shield around it */
#define CORE_3H_MM         125.0  /* core's own 3 h peak at the track centre */
#define SHIELD_TOTAL_MM    70.0   /* shield's whole-passage total there */
#define ENVELOPE_SIGMA     0.30   /* cell grows, peaks mid-district, decays */

#define SILENCE_MAX_MS     (4 * MS_PER_HOUR)
#define RING_LINES         64
#define LINE_SLOT          512    /* a valid line is well under this */
#define LONG_LINE_EVERY    10000  /* at most one over-long line per this many */
#define BAD_SHARE_MAX      0.99

typedef struct rng {
        uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
        uint64_t x = seed;
        for (size_t i = 0; i < 4; i++)
                r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) {
        uint64_t *s = r->s;
        uint64_t result = rotl(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

/* [0, 1) with 53 bits. */
static double rng_unit(rng *r) {
        return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* [0, n); the modulo bias is irrelevant at these sizes. */
static uint64_t rng_below(rng *r, uint64_t n) {
        return n ? rng_next(r) % n : 0;
}

/* A per-station constant in [0, 1) from its id, so a station keeps its
 * character whatever else is in the registry. */
static double hash_unit(const char *s, size_t n, uint64_t salt) {
        uint64_t h = fh_fnv1a(FH_FNV1A_INIT ^ salt, s, n);
        return (double)(splitmix64(&h) >> 11) * 0x1.0p-53;
}

/* ---- writing ---- */

static inline char *put_mem(char *p, const char *s, size_t n) {
        memcpy(p, s, n);
        return p + n;
}

#define PUT_LIT(p, lit) put_mem((p), (lit), sizeof(lit) - 1)

static char *put_uint(char *p, uint64_t v) {
        char tmp[24];
        int n = 0;

        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

static char *put_uint_width(char *p, uint64_t v, int width) {
        char tmp[24];
        int n = 0;

        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n < width)
                tmp[n++] = '0';
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

/* x rounded to dec decimals as an integer; clamped so that absurd registry
 * attributes cannot overflow the conversion. */
static int64_t scaled(double x, int dec) {
        static const double pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
        double v = x * pow10[dec];

        if (!(v == v))
                return 0;
        if (v > 1e15)
                v = 1e15;
        if (v < -1e15)
                v = -1e15;
        return (int64_t)llround(v);
}

/* "-12.30" from (-1230, 2). */
static char *put_fixed(char *p, int64_t v, int dec) {
        static const uint64_t pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
        uint64_t u;

        if (v < 0) {
                *p++ = '-';
                u = (uint64_t)(-(v + 1)) + 1;
        } else
                u = (uint64_t)v;
        p = put_uint(p, u / pow10[dec]);
        if (dec > 0) {
                *p++ = '.';
                p = put_uint_width(p, u % pow10[dec], dec);
        }
        return p;
}

/* ---- the scenario ---- */

typedef enum role {
        ROLE_NONE,
        ROLE_SILENT,       /* the rain gauge that goes quiet */
        ROLE_ACCELERATING, /* the slope that accelerates */
        ROLE_VIBRATING,    /* the bridge that shakes */
} role;

typedef struct fval {
        const char *name;
        size_t name_len;
        int dec;
        int64_t v;
} fval;

typedef struct sstation {
        const fh_station *st;
        double u, v;           /* position in box units */
        double s_track;        /* where along the track it is passed */
        double r_track;        /* distance from the track */
        double exposure;       /* storm total, arbitrary units */
        double basin_u, basin_v;
        double lag_h;
        role role;
        /* rain */
        double bucket;         /* fallen but not yet reported, mm */
        /* water level */
        double base, peak, t_peak_h;
        /* landslide */
        double d0, v0, pulse_mm, pulse_t_h;
        /* bridge */
        double lim_defl, lim_strain, lim_vib, vib_t0_h, vib_gain;
        int64_t late_hi;       /* newest late timestamp sent for this sensor */
} sstation;

typedef struct sim {
        const fh_registry *reg;
        fh_sim_options opt;
        sstation *s;
        size_t n;
        rng val;               /* values of valid readings */
        rng bad;               /* everything about bad lines */

        double wu, wv;         /* box extent in box units */
        double ax, ay, dx, dy; /* track start and direction */
        double track_len2;
        double t0_h, tc_h, hs; /* storm start, crossing time, time scale */
        double core_amp, shield_amp;
        double core_sig_t, shield_sig_t;
        double sigma_rise_h, sigma_fall_h, pulse_sig_h;
        int64_t sil0, sil1;    /* silence window [sil0, sil1) */
        int64_t n_sub;         /* rain integration substeps per step */

        fh_sim_line_fn fn;
        void *userdata;
        char *line;            /* scratch for one line, long ones included */
        size_t line_cap;

        /* recent valid lines for duplicates */
        char ring[RING_LINES][LINE_SLOT];
        uint16_t ring_len[RING_LINES];
        size_t ring_n, ring_next;

        uint64_t lines;
        uint64_t last_long;    /* line number of the last over-long line */
        bool long_sent;
} sim;

static double attr_num(const fh_station *st, int col, double lo, double hi, double dflt) {
        const fh_attr *a = fh_station_attr(st, col);

        if (!a || !a->is_number || !(a->num >= lo && a->num <= hi))
                return dflt;
        return a->num;
}

static int column(const fh_registry *reg, const char *name) {
        return fh_registry_column(reg, name, strlen(name));
}

/* Places every station in a square "box" frame: kilometres from lat/lon,
 * scaled so the larger side is 1; stations without coordinates land at a
 * hashed spot inside the box. */
static void place_stations(sim *m) {
        int c_lat = column(m->reg, "lat"), c_lon = column(m->reg, "lon");
        double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
        double lat_sum = 0;
        size_t n_geo = 0;
        bool *has = fh_calloc(m->n ? m->n : 1, sizeof(bool));
        double *xs = fh_calloc(m->n ? m->n : 1, sizeof(double));
        double *ys = fh_calloc(m->n ? m->n : 1, sizeof(double));

        for (size_t i = 0; i < m->n; i++) {
                double lat = attr_num(m->s[i].st, c_lat, -90, 90, NAN);
                double lon = attr_num(m->s[i].st, c_lon, -180, 180, NAN);
                if (lat == lat && lon == lon) {
                        has[i] = true;
                        lat_sum += lat;
                        n_geo++;
                }
        }
        double coslat = n_geo ? cos(lat_sum / (double)n_geo * M_PI / 180.0) : 1.0;
        for (size_t i = 0; i < m->n; i++) {
                if (!has[i])
                        continue;
                xs[i] = attr_num(m->s[i].st, c_lon, -180, 180, 0) * 111.32 * coslat;
                ys[i] = attr_num(m->s[i].st, c_lat, -90, 90, 0) * 110.57;
                x0 = fmin(x0, xs[i]);
                x1 = fmax(x1, xs[i]);
                y0 = fmin(y0, ys[i]);
                y1 = fmax(y1, ys[i]);
        }
        if (n_geo == 0) {
                x0 = y0 = 0;
                x1 = y1 = 60;
        }
        /* A registry clustered at one point still gets a district to cross. */
        if (x1 - x0 < 10) {
                double c = (x0 + x1) / 2;
                x0 = c - 5;
                x1 = c + 5;
        }
        if (y1 - y0 < 10) {
                double c = (y0 + y1) / 2;
                y0 = c - 5;
                y1 = c + 5;
        }
        double scale = fmax(x1 - x0, y1 - y0);
        m->wu = (x1 - x0) / scale;
        m->wv = (y1 - y0) / scale;
        for (size_t i = 0; i < m->n; i++) {
                sstation *s = &m->s[i];
                if (has[i]) {
                        s->u = (xs[i] - x0) / scale;
                        s->v = (ys[i] - y0) / scale;
                } else {
                        s->u = m->wu * hash_unit(s->st->id, s->st->id_len, 1);
                        s->v = m->wv * hash_unit(s->st->id, s->st->id_len, 2);
                }
        }
        free(has);
        free(xs);
        free(ys);
}

typedef struct basin_ref {
        const char *name;
        size_t len;
        size_t station;
} basin_ref;

static int basin_cmp(const void *a, const void *b) {
        const basin_ref *x = a, *y = b;
        int c = memcmp(x->name, y->name, FH_MIN(x->len, y->len));
        if (c != 0)
                return c;
        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        return x->station < y->station ? -1 : x->station > y->station;
}

/* Stations of one basin drain together: a river gauge leans toward its
 * basin's centroid (gauges of every kind count, rain gauges mostly), and
 * the basin's name sets its lag so a whole river responds alike. Grouped
 * by sorting, so a million-station registry costs n log n, not n^2. */
static void place_basins(sim *m) {
        int c_basin = column(m->reg, "basin");
        basin_ref *refs = fh_calloc(m->n ? m->n : 1, sizeof(basin_ref));
        size_t n_refs = 0;

        for (size_t i = 0; i < m->n; i++) {
                sstation *s = &m->s[i];
                const fh_attr *a = fh_station_attr(s->st, c_basin);
                s->basin_u = s->u;
                s->basin_v = s->v;
                s->lag_h = 2.0 + 4.0 * hash_unit(s->st->id, s->st->id_len, 3);
                if (a)
                        refs[n_refs++] = (basin_ref){ a->str, a->len, i };
        }
        qsort(refs, n_refs, sizeof(basin_ref), basin_cmp);
        for (size_t g = 0; g < n_refs;) {
                size_t e = g;
                double su = 0, sv = 0;
                while (e < n_refs && refs[e].len == refs[g].len &&
                       memcmp(refs[e].name, refs[g].name, refs[g].len) == 0) {
                        su += m->s[refs[e].station].u;
                        sv += m->s[refs[e].station].v;
                        e++;
                }
                double cu = su / (double)(e - g), cv = sv / (double)(e - g);
                double lag = 2.0 + 4.0 * hash_unit(refs[g].name, refs[g].len, 3);
                for (size_t k = g; k < e; k++) {
                        sstation *s = &m->s[refs[k].station];
                        if (s->st->kind != FH_KIND_WATER_LEVEL)
                                continue;
                        s->basin_u = 0.5 * s->u + 0.5 * cu;
                        s->basin_v = 0.5 * s->v + 0.5 * cv;
                        s->lag_h = lag;
                }
                g = e;
        }
        free(refs);
}

static double envelope(double s) {
        double d = (s - 0.5) / ENVELOPE_SIGMA;
        return exp(-0.5 * d * d);
}

/* Where along the track (0 = start, 1 = end) a point is passed, and how far
 * from the track it lies. */
static void track_coords(const sim *m, double u, double v, double *ret_s, double *ret_r) {
        double px = u - m->ax, py = v - m->ay;
        double s = (px * m->dx + py * m->dy) / m->track_len2;
        double rx = px - s * m->dx, ry = py - s * m->dy;
        *ret_s = s;
        *ret_r = sqrt(rx * rx + ry * ry);
}

/* Storm total at a point, up to a constant: what the rivers and slopes
 * respond to. */
static double exposure_at(const sim *m, double u, double v) {
        double s, r;
        track_coords(m, u, v, &s, &r);
        return envelope(s) *
               (m->core_amp * m->core_sig_t * exp(-r * r / (2 * CORE_SIGMA * CORE_SIGMA)) +
                m->shield_amp * m->shield_sig_t * exp(-r * r / (2 * SHIELD_SIGMA * SHIELD_SIGMA)));
}

/* Rain rate (mm/h) at a point and time (hours since start). */
static double rain_rate(const sim *m, const sstation *s, double t_h) {
        double sc = (t_h - m->t0_h) / m->tc_h;
        double cx = m->ax + sc * m->dx, cy = m->ay + sc * m->dy;
        double du = s->u - cx, dv = s->v - cy;
        double d2 = du * du + dv * dv;

        if (d2 > 20 * SHIELD_SIGMA * SHIELD_SIGMA)
                return 0;
        return envelope(sc) *
               (m->core_amp * exp(-d2 / (2 * CORE_SIGMA * CORE_SIGMA)) +
                m->shield_amp * exp(-d2 / (2 * SHIELD_SIGMA * SHIELD_SIGMA)));
}

static double level_at(const sim *m, const sstation *s, double t_h) {
        double x = t_h - s->t_peak_h;
        double sig = x < 0 ? m->sigma_rise_h : m->sigma_fall_h;
        return s->base + (s->peak - s->base) * exp(-0.5 * x * x / (sig * sig));
}

static double displacement_at(const sim *m, const sstation *s, double t_h) {
        double d = s->d0 + s->v0 * t_h / 24.0;
        if (s->pulse_mm > 0)
                d += s->pulse_mm * 0.5 * erfc(-(t_h - s->pulse_t_h) / (m->pulse_sig_h * M_SQRT2));
        return d;
}

/* Vibration boost of the shaking bridge: a raised-cosine episode. */
static double vib_boost(const sim *m, const sstation *s, double t_h) {
        double len = 4.0 * m->hs;
        double x = (t_h - s->vib_t0_h) / len;
        if (s->role != ROLE_VIBRATING || x <= 0 || x >= 1)
                return 0;
        return s->vib_gain * 0.5 * (1 - cos(2 * M_PI * x));
}

static void setup(sim *m) {
        const fh_registry *reg = m->reg;
        double dur_h = (double)m->opt.duration_ms / MS_PER_HOUR;
        double scale = m->opt.storm_scale;
        int c_warn = column(reg, "warning_level");
        int c_guar = column(reg, "guarantee_level");
        int c_creep = column(reg, "creep_rate_mm_d");
        int c_defl = column(reg, "deflection_limit_mm");
        int c_strain = column(reg, "strain_limit_ue");
        int c_vib = column(reg, "vibration_limit_mm_s");

        place_stations(m);

        m->tc_h = fmin(0.6 * dur_h, STORM_CROSSING_H);
        if (m->tc_h <= 0)
                m->tc_h = 1e-3;
        m->hs = m->tc_h / STORM_CROSSING_H;
        m->t0_h = fmin(0.04 * dur_h, 2.0);
        m->ax = -TRACK_MARGIN;
        m->ay = -TRACK_MARGIN;
        m->dx = m->wu + 2 * TRACK_MARGIN;
        m->dy = m->wv + 2 * TRACK_MARGIN;
        m->track_len2 = m->dx * m->dx + m->dy * m->dy;

        /* Amplitudes from the target totals, so the core reaches red in 3 h
         * whatever the crossing speed. */
        double speed = sqrt(m->track_len2) / m->tc_h;
        m->core_sig_t = CORE_SIGMA / speed;
        m->shield_sig_t = SHIELD_SIGMA / speed;
        m->core_amp = scale * CORE_3H_MM /
                      (m->core_sig_t * SQRT_2PI * erf(1.5 / (m->core_sig_t * M_SQRT2)));
        m->shield_amp = scale * SHIELD_TOTAL_MM / (m->shield_sig_t * SQRT_2PI);
        m->sigma_rise_h = 2.5 * m->hs;
        m->sigma_fall_h = 7.0 * m->hs;
        m->pulse_sig_h = 4.0 * m->hs;

        place_basins(m);

        /* Relative exposures do not depend on storm_scale (which scales
         * every amplitude alike); pick the special stations from them. */
        double best_water = 0, best_slope = -1, best_bridge = -1;
        sstation *slope = NULL, *bridge = NULL, *last_rain = NULL;
        for (size_t i = 0; i < m->n; i++) {
                sstation *s = &m->s[i];
                track_coords(m, s->basin_u, s->basin_v, &s->s_track, &s->r_track);
                s->exposure = exposure_at(m, s->basin_u, s->basin_v);
                switch (s->st->kind) {
                case FH_KIND_RAIN:
                        last_rain = s;
                        break;
                case FH_KIND_WATER_LEVEL:
                        best_water = fmax(best_water, s->exposure);
                        break;
                case FH_KIND_LANDSLIDE:
                        if (s->exposure > best_slope) {
                                best_slope = s->exposure;
                                slope = s;
                        }
                        break;
                case FH_KIND_BRIDGE:
                        if (s->exposure > best_bridge) {
                                best_bridge = s->exposure;
                                bridge = s;
                        }
                        break;
                default:
                        break;
                }
        }
        if (last_rain)
                last_rain->role = ROLE_SILENT;
        if (slope)
                slope->role = ROLE_ACCELERATING;
        if (bridge)
                bridge->role = ROLE_VIBRATING;

        for (size_t i = 0; i < m->n; i++) {
                sstation *s = &m->s[i];
                const fh_station *st = s->st;
                double h = hash_unit(st->id, st->id_len, 4);
                double t_pass = m->t0_h + m->tc_h * s->s_track;

                s->late_hi = INT64_MIN;
                switch (st->kind) {
                case FH_KIND_WATER_LEVEL: {
                        double w = attr_num(st, c_warn, -1e5, 1e5, 100.0 + 100.0 * h);
                        double g = attr_num(st, c_guar, -1e5, 1e5, w + 1.0);
                        if (g <= w)
                                g = w + 1.0;
                        double ratio = best_water > 0 ? s->exposure / best_water : 0;
                        s->base = w - 1.5 - 0.5 * h;
                        /* The river nearest the core tops its guarantee
                         * level; the others rise in proportion. */
                        s->peak = s->base + (g + 0.3 - s->base) * ratio * scale;
                        s->t_peak_h = t_pass + s->lag_h * m->hs;
                        break;
                }
                case FH_KIND_LANDSLIDE: {
                        double creep = attr_num(st, c_creep, 1e-3, 1e3, 0.5);
                        s->d0 = 10.0 + 60.0 * h;
                        /* Below the reference rate, so steady creep sits
                         * under 45 degrees instead of on it. */
                        s->v0 = 0.75 * creep;
                        if (s->role == ROLE_ACCELERATING) {
                                /* 90 reference-days of creep in a few hours:
                                 * the one-day rate passes tan(89 deg) = 57. */
                                s->pulse_mm = 90.0 * creep * scale;
                                s->pulse_t_h = t_pass + 6.0 * m->hs;
                        }
                        break;
                }
                case FH_KIND_BRIDGE:
                        s->lim_defl = attr_num(st, c_defl, 1e-3, 1e5, 40.0);
                        s->lim_strain = attr_num(st, c_strain, 1e-3, 1e6, 200.0);
                        s->lim_vib = attr_num(st, c_vib, 1e-3, 1e5, 5.0);
                        s->vib_t0_h = t_pass - 1.0 * m->hs;
                        s->vib_gain = 1.25 * scale;
                        break;
                default:
                        break;
                }
        }

        /* The silent gauge: a few hours from the middle, on the step grid. */
        int64_t step = m->opt.step_ms;
        int64_t len = FH_MIN(SILENCE_MAX_MS, m->opt.duration_ms / 6);
        m->sil0 = m->opt.start_ms + m->opt.duration_ms / 2 / step * step;
        m->sil1 = m->sil0 + len;
        m->n_sub = (step + 10 * MS_PER_MIN - 1) / (10 * MS_PER_MIN);
        if (m->n_sub > 256)
                m->n_sub = 256;
        if (m->n_sub < 1)
                m->n_sub = 1;
}

/* Daily pattern from the local hour: traffic peaks in the afternoon, the
 * deck is warmest mid-afternoon. */
static void daily(const sim *m, int64_t ts, double *ret_traffic, double *ret_temp) {
        int64_t local = ts + (int64_t)m->opt.tz_offset_min * MS_PER_MIN;
        double hour = (double)(local - fh_floor_div(local, MS_PER_DAY) * MS_PER_DAY) / MS_PER_HOUR;
        *ret_traffic = 0.5 - 0.5 * cos(2 * M_PI * (hour - 3.0) / 24.0);
        *ret_temp = sin(2 * M_PI * (hour - 9.0) / 24.0);
}

/* Values of a non-rain station at ts; noise from r. */
static size_t model_values(const sim *m, const sstation *s, int64_t ts, rng *r, fval *out) {
        double t_h = (double)(ts - m->opt.start_ms) / MS_PER_HOUR;

        switch (s->st->kind) {
        case FH_KIND_WATER_LEVEL: {
                double noise = (rng_unit(r) - 0.5) * 0.02;
                out[0] = (fval){ "level_m", 7, 2, scaled(level_at(m, s, t_h) + noise, 2) };
                return 1;
        }
        case FH_KIND_LANDSLIDE:
                /* No noise beyond the 0.01 mm resolution: a rate over a
                 * short early window would turn it into false angles. */
                out[0] = (fval){ "displacement_mm", 15, 2, scaled(displacement_at(m, s, t_h), 2) };
                return 1;
        case FH_KIND_BRIDGE: {
                double traffic, temp;
                daily(m, ts, &traffic, &temp);
                double n1 = rng_unit(r) * 2 - 1, n2 = rng_unit(r) * 2 - 1, n3 = rng_unit(r);
                double defl = s->lim_defl * (0.22 + 0.12 * traffic + 0.02 * n1);
                double strain = s->lim_strain * (0.25 + 0.08 * temp + 0.08 * traffic + 0.03 * n2);
                double vib = s->lim_vib * (0.10 + 0.12 * traffic + 0.04 * n3 + vib_boost(m, s, t_h));
                out[0] = (fval){ "deflection_mm", 13, 2, scaled(defl, 2) };
                out[1] = (fval){ "strain_ue", 9, 1, scaled(strain, 1) };
                out[2] = (fval){ "vibration_mm_s", 14, 2, scaled(vib, 2) };
                return 3;
        }
        default:
                out[0] = (fval){ "rain_mm", 7, 1, 0 };
                return 1;
        }
}

/* Rain since the previous step, reported in whole 0.1 mm tips; the rest
 * stays in the bucket, so light rain is not rounded away at short steps. */
static fval rain_value(sim *m, sstation *s, int64_t ts) {
        double step_h = (double)m->opt.step_ms / MS_PER_HOUR;
        double dt = step_h / (double)m->n_sub;
        double t_h = (double)(ts - m->opt.start_ms) / MS_PER_HOUR;
        double mm = 0;

        for (int64_t k = 0; k < m->n_sub; k++)
                mm += rain_rate(m, s, t_h - step_h + ((double)k + 0.5) * dt) * dt;
        /* Drizzle noise: a few tenths now and then. */
        if (rng_unit(&m->val) < fmin(1.0, 0.4 * step_h))
                mm += 0.1 + 0.2 * rng_unit(&m->val);
        s->bucket += mm;
        double tips = floor(s->bucket * 10.0 + 1e-9);
        if (tips < 0)
                tips = 0;
        if (tips > 1e9)
                tips = 1e9;
        s->bucket -= tips / 10.0;
        return (fval){ "rain_mm", 7, 1, (int64_t)tips };
}

static char *put_values(char *p, const fval *v, size_t n) {
        *p++ = '{';
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        *p++ = ',';
                *p++ = '"';
                p = put_mem(p, v[i].name, v[i].name_len);
                *p++ = '"';
                *p++ = ':';
                p = put_fixed(p, v[i].v, v[i].dec);
        }
        *p++ = '}';
        return p;
}

static char *put_reading(char *p, const char *id, size_t id_len, const char *ts, size_t ts_len,
                         const fval *v, size_t n) {
        p = PUT_LIT(p, "{\"sensor\":\"");
        p = put_mem(p, id, id_len);
        p = PUT_LIT(p, "\",\"ts\":\"");
        p = put_mem(p, ts, ts_len);
        p = PUT_LIT(p, "\",\"values\":");
        p = put_values(p, v, n);
        *p++ = '}';
        return p;
}

static int emit(sim *m, const char *line, size_t len) {
        m->lines++;
        return m->fn(m->userdata, line, len);
}

/* ---- bad input ---- */

typedef enum bad_kind {
        BAD_MALFORMED,
        BAD_MISSING,
        BAD_TIMESTAMP,
        BAD_NONFINITE,
        BAD_STRING,
        BAD_UNKNOWN,
        BAD_TRUNCATED,
        BAD_DUPLICATE,
        BAD_LATE,
        BAD_TOO_LONG,
        BAD__MAX
} bad_kind;

static const char *pick(rng *r, const char *const *v, size_t n) {
        return v[rng_below(r, n)];
}

#define PICK(r, arr) pick((r), (arr), FH_ARRAY_SIZE(arr))

static int bad_duplicate(sim *m) {
        if (m->ring_n == 0)
                return 0;
        size_t k = (m->ring_next + RING_LINES - 1 - rng_below(&m->bad, m->ring_n)) % RING_LINES;
        memcpy(m->line, m->ring[k], m->ring_len[k]);
        return emit(m, m->line, m->ring_len[k]);
}

/* A real late reading: the same sensor, 10-50 minutes back, off the step
 * grid and after every late timestamp already sent for it, so it is never
 * a duplicate. Falls back to a duplicate when no such time exists. */
static int bad_late(sim *m, sstation *s, int64_t now) {
        int64_t step = m->opt.step_ms;
        int64_t lo = FH_MAX(now - 50 * MS_PER_MIN, m->opt.start_ms);
        int64_t hi = now - 10 * MS_PER_MIN;
        char ts[FH_TIME_RFC3339_MAX];
        fval v[3];
        size_t n;

        if (s->late_hi != INT64_MIN && s->late_hi + 1 > lo)
                lo = s->late_hi + 1;
        if (s->role == ROLE_SILENT || lo > hi)
                return bad_duplicate(m);
        int64_t t = lo + (int64_t)rng_below(&m->bad, (uint64_t)(hi - lo + 1));
        if ((t - m->opt.start_ms) % step == 0)
                t++;
        if (t > hi || (t - m->opt.start_ms) % step == 0)
                return bad_duplicate(m);
        s->late_hi = t;
        size_t ts_len = fh_time_format_rfc3339(t, m->opt.tz_offset_min, ts);
        if (s->st->kind == FH_KIND_RAIN) {
                /* An empty interval: the gauge's rain is already counted. */
                v[0] = (fval){ "rain_mm", 7, 1, 0 };
                n = 1;
        } else
                n = model_values(m, s, t, &m->bad, v);
        char *e = put_reading(m->line, s->st->id, s->st->id_len, ts, ts_len, v, n);
        return emit(m, m->line, (size_t)(e - m->line));
}

/* An id the registry does not hold: a real-looking one with a suffix. */
static size_t unknown_id(sim *m, const sstation *s, char *out) {
        static const char *const suffixes[] = { "-NEW", "-B", "X", "-OLD", "-TEST" };
        for (int tries = 0; tries < 8; tries++) {
                const char *suf = PICK(&m->bad, suffixes);
                size_t sl = strlen(suf);
                size_t n = FH_MIN(s->st->id_len, (size_t)FH_SENSOR_ID_MAX - sl);
                memcpy(out, s->st->id, n);
                memcpy(out + n, suf, sl);
                if (!fh_registry_find(m->reg, out, n + sl))
                        return n + sl;
        }
        memcpy(out, "UNREGISTERED-0", 14);
        return 14;
}

static int emit_bad(sim *m, sstation *s, int64_t now, const char *ts, size_t ts_len,
                    const fval *v, size_t nv) {
        static const char *const bad_ts[] = {
                "2023-13-01T00:00:00+08:00", "2023-07-29T25:61:00+08:00",
                "2023-07-29T10:00:00", "2023-02-30T10:00:00+08:00", "yesterday", "",
                "29/07/2023 10:00", "2023-07-29T10:00:00+8", "10000-01-01T00:00:00Z",
        };
        static const char *const bad_ts_raw[] = { "1.5e12", "-99999999999999999", "true", "null", "{}", "99999999999999999999999" };
        static const char *const nonfinite[] = { "NaN", "Infinity", "-Infinity", "1e999", "-1e400", "nan" };
        static const char *const wrong_type[] = { "\"4.5\"", "\"\"", "true", "null", "[1.0]", "{\"v\":1}", "\"NaN\"" };
        static const char *const garbage[] = {
                "<html><body>502 Bad Gateway</body></html>", "\x1b[2K", "{", "}", "[]", "null",
                "{\"sensor\" \"X\"}", "{'sensor':'MY-RG-0001'}", "\xff\xfe{}",
        };
        bad_kind kind;
        char *p = m->line, *e;
        char id[FH_SENSOR_ID_MAX + 8];

        for (;;) {
                kind = (bad_kind)rng_below(&m->bad, BAD__MAX);
                if (kind != BAD_TOO_LONG)
                        break;
                if (!m->long_sent || m->lines - m->last_long >= LONG_LINE_EVERY)
                        break;
        }

        switch (kind) {
        case BAD_MALFORMED: {
                size_t len;
                e = put_reading(p, s->st->id, s->st->id_len, ts, ts_len, v, nv);
                len = (size_t)(e - p);
                switch (rng_below(&m->bad, 5)) {
                case 0: /* a colon lost */
                        memmove(p + 9, p + 10, len - 10);
                        len--;
                        break;
                case 1: /* a trailing comma before the brace */
                        p[len - 1] = ',';
                        p[len++] = '}';
                        break;
                case 2: /* two objects glued */
                        memcpy(p + len, p, len);
                        len *= 2;
                        break;
                case 3: /* invalid UTF-8 inside the sensor string */
                        p[11] = (char)0xc3;
                        p[12] = (char)0x28;
                        break;
                default: {
                        const char *g = PICK(&m->bad, garbage);
                        len = strlen(g);
                        memcpy(p, g, len);
                        break;
                }
                }
                return emit(m, p, len);
        }
        case BAD_MISSING:
                switch (rng_below(&m->bad, 3)) {
                case 0:
                        p = PUT_LIT(p, "{\"ts\":\"");
                        p = put_mem(p, ts, ts_len);
                        p = PUT_LIT(p, "\",\"values\":");
                        p = put_values(p, v, nv);
                        break;
                case 1:
                        p = PUT_LIT(p, "{\"sensor\":\"");
                        p = put_mem(p, s->st->id, s->st->id_len);
                        p = PUT_LIT(p, "\",\"values\":");
                        p = put_values(p, v, nv);
                        break;
                default:
                        p = PUT_LIT(p, "{\"sensor\":\"");
                        p = put_mem(p, s->st->id, s->st->id_len);
                        p = PUT_LIT(p, "\",\"ts\":\"");
                        p = put_mem(p, ts, ts_len);
                        *p++ = '"';
                        break;
                }
                *p++ = '}';
                return emit(m, m->line, (size_t)(p - m->line));
        case BAD_TIMESTAMP:
                p = PUT_LIT(p, "{\"sensor\":\"");
                p = put_mem(p, s->st->id, s->st->id_len);
                if (rng_below(&m->bad, 3) == 0) {
                        const char *t = PICK(&m->bad, bad_ts_raw);
                        p = PUT_LIT(p, "\",\"ts\":");
                        p = put_mem(p, t, strlen(t));
                } else {
                        const char *t = PICK(&m->bad, bad_ts);
                        p = PUT_LIT(p, "\",\"ts\":\"");
                        p = put_mem(p, t, strlen(t));
                        *p++ = '"';
                }
                p = PUT_LIT(p, ",\"values\":");
                p = put_values(p, v, nv);
                *p++ = '}';
                return emit(m, m->line, (size_t)(p - m->line));
        case BAD_NONFINITE:
        case BAD_STRING: {
                const char *lit = kind == BAD_NONFINITE ? PICK(&m->bad, nonfinite) : PICK(&m->bad, wrong_type);
                size_t which = rng_below(&m->bad, nv);
                p = PUT_LIT(p, "{\"sensor\":\"");
                p = put_mem(p, s->st->id, s->st->id_len);
                p = PUT_LIT(p, "\",\"ts\":\"");
                p = put_mem(p, ts, ts_len);
                p = PUT_LIT(p, "\",\"values\":{");
                for (size_t i = 0; i < nv; i++) {
                        if (i > 0)
                                *p++ = ',';
                        *p++ = '"';
                        p = put_mem(p, v[i].name, v[i].name_len);
                        *p++ = '"';
                        *p++ = ':';
                        if (i == which)
                                p = put_mem(p, lit, strlen(lit));
                        else
                                p = put_fixed(p, v[i].v, v[i].dec);
                }
                p = PUT_LIT(p, "}}");
                return emit(m, m->line, (size_t)(p - m->line));
        }
        case BAD_UNKNOWN: {
                size_t n = unknown_id(m, s, id);
                e = put_reading(p, id, n, ts, ts_len, v, nv);
                return emit(m, p, (size_t)(e - p));
        }
        case BAD_TRUNCATED: {
                e = put_reading(p, s->st->id, s->st->id_len, ts, ts_len, v, nv);
                size_t len = (size_t)(e - p);
                return emit(m, p, 1 + (size_t)rng_below(&m->bad, len - 1));
        }
        case BAD_DUPLICATE:
                return bad_duplicate(m);
        case BAD_LATE:
                return bad_late(m, s, now);
        case BAD_TOO_LONG: {
                /* A firmware dumping its debug log into the message. */
                size_t pad = FH_READING_BYTES_MAX + (size_t)rng_below(&m->bad, 4096);
                e = put_reading(p, s->st->id, s->st->id_len, ts, ts_len, v, nv);
                e--; /* reopen the object */
                e = PUT_LIT(e, ",\"debug\":\"");
                memset(e, 'x', pad);
                e += pad;
                e = PUT_LIT(e, "\"}");
                m->long_sent = true;
                m->last_long = m->lines;
                return emit(m, p, (size_t)(e - p));
        }
        default:
                return 0;
        }
}

static void remember(sim *m, const char *line, size_t len) {
        if (len > LINE_SLOT)
                return;
        memcpy(m->ring[m->ring_next], line, len);
        m->ring_len[m->ring_next] = (uint16_t)len;
        m->ring_next = (m->ring_next + 1) % RING_LINES;
        if (m->ring_n < RING_LINES)
                m->ring_n++;
}

static int check_options(const fh_registry *reg, const fh_sim_options *opt) {
        if (!reg || !opt)
                return -EINVAL;
        if (opt->step_ms <= 0 || opt->duration_ms < 0 || opt->duration_ms > 100 * 366 * MS_PER_DAY)
                return -EINVAL;
        if (opt->start_ms < FH_TIME_MIN_MS + MS_PER_HOUR || opt->start_ms > FH_TIME_MAX_MS - opt->duration_ms)
                return -EINVAL;
        if (!(opt->bad_share >= 0 && opt->bad_share <= 1) || !(opt->storm_scale >= 0 && opt->storm_scale <= 1000))
                return -EINVAL;
        if (opt->tz_offset_min < -24 * 60 || opt->tz_offset_min > 24 * 60)
                return -EINVAL;
        return 0;
}

int fh_simulate(const fh_registry *reg, const fh_sim_options *opt, fh_sim_line_fn fn, void *userdata) {
        int r = check_options(reg, opt);
        if (r < 0 || !fn)
                return r < 0 ? r : -EINVAL;

        sim *m = fh_calloc(1, sizeof(sim));
        m->reg = reg;
        m->opt = *opt;
        m->fn = fn;
        m->userdata = userdata;
        m->n = reg->n_stations;
        m->s = fh_calloc(m->n ? m->n : 1, sizeof(sstation));
        for (size_t i = 0; i < m->n; i++)
                m->s[i].st = &reg->stations[i];
        rng_seed(&m->val, opt->seed);
        rng_seed(&m->bad, opt->seed ^ 0x6261645f6c696e65ULL);
        m->line_cap = FH_READING_BYTES_MAX + 8192;
        m->line = fh_malloc(m->line_cap);
        setup(m);

        double bad = fmin(opt->bad_share, BAD_SHARE_MAX);
        int64_t step = opt->step_ms;
        int64_t end = opt->start_ms + opt->duration_ms;
        char ts[FH_TIME_RFC3339_MAX];

        for (int64_t t = opt->start_ms; t < end && r == 0; t += step) {
                size_t ts_len = fh_time_format_rfc3339(t, opt->tz_offset_min, ts);
                bool silent_now = t >= m->sil0 && t < m->sil1;

                for (size_t i = 0; i < m->n && r == 0; i++) {
                        sstation *s = &m->s[i];
                        fval v[3];
                        size_t nv;

                        if (s->st->kind == FH_KIND_RAIN) {
                                v[0] = rain_value(m, s, t);
                                nv = 1;
                                if (s->role == ROLE_SILENT && silent_now) {
                                        /* Down, not buffering: that rain is lost. */
                                        s->bucket = 0;
                                        continue;
                                }
                        } else
                                nv = model_values(m, s, t, &m->val, v);

                        char *e = put_reading(m->line, s->st->id, s->st->id_len, ts, ts_len, v, nv);
                        size_t len = (size_t)(e - m->line);
                        if (bad > 0)
                                remember(m, m->line, len);
                        r = emit(m, m->line, len);
                        /* Geometric count of bad lines after each valid one:
                         * mean bad/(1-bad), so bad lines make up `bad` of
                         * all lines. */
                        while (r == 0 && bad > 0 && rng_unit(&m->bad) < bad)
                                r = emit_bad(m, s, t, ts, ts_len, v, nv);
                }
        }

        free(m->line);
        free(m->s);
        free(m);
        return r;
}

/* ---- synthetic registry ---- */

static const char *const towns[] = {
        "石城镇", "古北口镇", "太师屯镇", "高岭镇", "不老屯镇", "冯家峪镇", "新城子镇", "大城子镇",
        "北庄镇", "穆家峪镇", "溪翁庄镇", "西田各庄镇", "河南寨镇", "巨各庄镇", "东邵渠镇",
        "十里堡镇", "檀营乡",
};

static const char *basin_for(double u, double v) {
        if (v >= 0.5)
                return u >= 0.5 ? "chaohe" : "baihe";
        return u >= 0.5 ? "andamuhe" : "qingshuihe";
}

static void put_num_csv(fh_buf *b, double x, int dec) {
        char tmp[40];
        char *e = put_fixed(tmp, scaled(x, dec), dec);
        fh_buf_append(b, tmp, (size_t)(e - tmp));
}

void fh_simulate_registry(size_t n, uint64_t seed, char **ret_text, size_t *ret_len) {
        static const struct {
                const char *code;
                const char *kind;
                const char *suffix;
                unsigned percent;
        } kinds[] = {
                /* id order: BR < LS < RG < WL */
                { "BR", "bridge", "号桥", 5 },
                { "LS", "landslide", "号隐患点", 10 },
                { "RG", "rain", "号", 70 },
                { "WL", "water_level", "号水位", 15 },
        };
        size_t count[4], width = 6, rest = n;
        fh_buf b = FH_BUF_NULL;
        rng r;

        if (n > FH_REGISTRY_STATIONS_MAX)
                n = rest = FH_REGISTRY_STATIONS_MAX;
        for (size_t k = n; k >= 1000000; k /= 10)
                width++;
        for (size_t i = 0; i < 4; i++) {
                if (i == 2)
                        continue;
                count[i] = n * kinds[i].percent / 100;
                /* Small registries still get one of each kind. */
                if (count[i] == 0 && n >= 4)
                        count[i] = 1;
                rest -= count[i];
        }
        count[2] = rest;
        rng_seed(&r, seed);

        fh_buf_puts(&b, "id,kind,name,region,town,basin,lat,lon,warning_level,guarantee_level,"
                        "historic_max,creep_rate_mm_d,deflection_limit_mm,strain_limit_ue,"
                        "vibration_limit_mm_s\n");
        for (size_t k = 0; k < 4; k++) {
                for (size_t i = 1; i <= count[k]; i++) {
                        char idbuf[32], *e;
                        /* Miyun's inhabited part: the reservoir and the
                         * valleys around it. */
                        double u = rng_unit(&r), v = rng_unit(&r);
                        double lat = 40.20 + 0.55 * v, lon = 116.75 + 0.60 * u;
                        const char *town = towns[rng_below(&r, FH_ARRAY_SIZE(towns))];

                        e = put_mem(idbuf, "MY-", 3);
                        e = put_mem(e, kinds[k].code, 2);
                        *e++ = '-';
                        e = put_uint_width(e, i, (int)width);
                        fh_buf_append(&b, idbuf, (size_t)(e - idbuf));
                        fh_buf_putc(&b, ',');
                        fh_buf_puts(&b, kinds[k].kind);
                        fh_buf_putc(&b, ',');
                        fh_buf_puts(&b, town);
                        e = put_uint(idbuf, i);
                        fh_buf_append(&b, idbuf, (size_t)(e - idbuf));
                        fh_buf_puts(&b, kinds[k].suffix);
                        fh_buf_puts(&b, ",miyun,");
                        fh_buf_puts(&b, town);
                        fh_buf_putc(&b, ',');
                        fh_buf_puts(&b, basin_for(u, v));
                        fh_buf_putc(&b, ',');
                        put_num_csv(&b, lat, 4);
                        fh_buf_putc(&b, ',');
                        put_num_csv(&b, lon, 4);
                        fh_buf_putc(&b, ',');
                        if (k == 3) {
                                /* Higher up the valleys to the north. */
                                double w = 80.0 + 150.0 * v + 20.0 * rng_unit(&r);
                                double g = w + 0.8 + 1.2 * rng_unit(&r);
                                double h = g + 0.3 + 1.2 * rng_unit(&r);
                                put_num_csv(&b, w, 2);
                                fh_buf_putc(&b, ',');
                                put_num_csv(&b, g, 2);
                                fh_buf_putc(&b, ',');
                                put_num_csv(&b, h, 2);
                                fh_buf_putc(&b, ',');
                        } else
                                fh_buf_puts(&b, ",,,");
                        if (k == 1)
                                put_num_csv(&b, 0.1 + 1.4 * rng_unit(&r), 2);
                        fh_buf_putc(&b, ',');
                        if (k == 0) {
                                put_num_csv(&b, 20.0 + 40.0 * rng_unit(&r), 1);
                                fh_buf_putc(&b, ',');
                                put_num_csv(&b, 150.0 + 250.0 * rng_unit(&r), 0);
                                fh_buf_putc(&b, ',');
                                put_num_csv(&b, 3.0 + 7.0 * rng_unit(&r), 1);
                        } else
                                fh_buf_puts(&b, ",,");
                        fh_buf_putc(&b, '\n');
                }
        }
        *ret_text = b.data;
        *ret_len = b.len;
}
