/* Scenario generator for tests, the demo and benchmarks: a storm crossing
 * the district, rivers rising behind it with lag, a slope accelerating, a
 * bridge vibrating, a gauge going silent, plus a share of bad input.
 * Seeded and reproducible: the same options give the same bytes. No I/O:
 * lines go to a callback. */
#ifndef FENGHUO_SIMULATE_H
#define FENGHUO_SIMULATE_H

#include "fenghuo/common.h"
#include "fenghuo/registry.h"

typedef struct fh_sim_options {
        uint64_t seed;
        int64_t start_ms;        /* first timestamp */
        int64_t duration_ms;     /* how long the scenario lasts */
        int64_t step_ms;         /* reading interval for every station */
        double bad_share;        /* 0..1: share of lines that are bad input */
        int tz_offset_min;       /* offset written into RFC 3339 timestamps */
        double storm_scale;      /* 1.0 = a storm reaching red in its core */
} fh_sim_options;

/* Called once per line, without the newline; the line is valid until return.
 * Return non-zero to stop. */
typedef int (*fh_sim_line_fn)(void *userdata, const char *line, size_t len);

/* Generates readings for every station of reg, in timestamp order (stations
 * in id order within one timestamp). Returns 0, what fn returned, or
 * -EINVAL for impossible options (step <= 0, negative duration, times
 * outside years 0001-9999, bad_share outside 0..1; above 0.99 it is
 * capped). */
int fh_simulate(const fh_registry *reg, const fh_sim_options *opt, fh_sim_line_fn fn, void *userdata);

/* Writes a synthetic registry of n stations as CSV text (for benchmarks at
 * any scale), kinds mixed like a real district (mostly rain gauges).
 * *ret_text is NUL-terminated; the caller frees it with free(). */
void fh_simulate_registry(size_t n, uint64_t seed, char **ret_text, size_t *ret_len);

#endif
