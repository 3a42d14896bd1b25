/* Time as fenghuo sees it: int64 milliseconds since the Unix epoch (UTC),
 * proleptic Gregorian, years 0001-9999 only, so every value can be written
 * back as RFC 3339. No clock is read here. */
#ifndef FENGHUO_TIMEUTIL_H
#define FENGHUO_TIMEUTIL_H

#include "fenghuo/common.h"

#define FH_TIME_MIN_MS (-62135596800000LL)  /* 0001-01-01T00:00:00Z */
#define FH_TIME_MAX_MS (253402300799999LL)  /* 9999-12-31T23:59:59.999Z */
#define FH_TIME_NONE   INT64_MIN            /* "no time yet" marker */

/* RFC 3339 date-time with a mandatory offset ('Z', 'z' or ±hh:mm); 'T', 't'
 * or one space between date and time; fractional seconds of any length,
 * truncated to milliseconds. Returns 0, or -EINVAL with a reason in
 * *ret_why (a static string) when ret_why is not NULL. */
int fh_time_parse_rfc3339(const char *s, size_t len, int64_t *ret_ms, const char **ret_why);

/* "2023-07-30T14:05:00+08:00", with ".123" only when the milliseconds are
 * not zero; offset 0 still prints "+00:00". buf needs FH_TIME_RFC3339_MAX. */
#define FH_TIME_RFC3339_MAX 40
size_t fh_time_format_rfc3339(int64_t ms, int offset_min, char *buf);

/* "2023-07-30 14:05" in the given offset, for messages people read. */
#define FH_TIME_LOCAL_MAX 24
size_t fh_time_format_local(int64_t ms, int offset_min, char *buf);

/* "<integer>(s|m|h|d)", as in rule files; 0 or -EINVAL (also on overflow
 * beyond 100 years, which no window needs). */
int fh_duration_parse(const char *s, size_t len, int64_t *ret_ms);
/* Shortest form that parses back: 90000 -> "90s", 3600000 -> "1h". */
size_t fh_duration_format(int64_t ms, char *buf, size_t n);

/* "+08:00" / "-03:30" / "Z" -> minutes; 0 or -EINVAL. */
int fh_offset_parse(const char *s, size_t len, int *ret_min);

/* Floor division that is right for negative times too. */
static inline int64_t fh_floor_div(int64_t a, int64_t b) {
        int64_t q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0)))
                q--;
        return q;
}

#endif
