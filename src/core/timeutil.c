/* Calendar arithmetic for fenghuo's one time type, int64 ms since the epoch.
 *
 * Everything is done by hand on the proleptic Gregorian calendar: timegm()
 * and friends would read the process's timezone state, and the engine must
 * give the same answer on every machine. */
#include <errno.h>
#include <string.h>

#include "fenghuo/timeutil.h"

#define MS_PER_SEC  INT64_C(1000)
#define MS_PER_MIN  INT64_C(60000)
#define MS_PER_HOUR INT64_C(3600000)
#define MS_PER_DAY  INT64_C(86400000)

/* Days from 0001-01-01 to 1970-01-01. */
#define DAYS_0001_TO_EPOCH INT64_C(719162)
#define DAYS_PER_400Y      INT64_C(146097)

/* An offset has two digits of hours, and RFC 3339 needs the result to read
 * back, so offsets handed to the formatters are held to ±23:59. */
#define OFFSET_MIN_MAX (23 * 60 + 59)

/* 100 years of 365.25 days: longer than any window, short enough that
 * adding it to any valid time cannot overflow. */
#define DURATION_MAX_MS (INT64_C(36525) * MS_PER_DAY)

static const uint16_t days_before_month[2][13] = {
        { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365 },
        { 0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366 },
};

static bool is_leap(int64_t y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m) {
        int leap = is_leap(y);
        return days_before_month[leap][m] - days_before_month[leap][m - 1];
}

/* y >= 1, m 1..12, d 1..31: days since 1970-01-01. */
static int64_t days_from_civil(int64_t y, int m, int d) {
        int64_t py = y - 1;
        int64_t n = py * 365 + py / 4 - py / 100 + py / 400;

        n += days_before_month[is_leap(y)][m - 1] + d - 1;
        return n - DAYS_0001_TO_EPOCH;
}

/* Inverse of days_from_civil for any day count the formatters can see
 * (including a little before year 1 once an offset is applied): counted in
 * 400-year cycles from 0001-01-01, whose last year (400) is the leap one,
 * as is the last year of each 4-year cycle. */
static void civil_from_days(int64_t z, int64_t *ret_y, int *ret_m, int *ret_d) {
        int64_t n = z + DAYS_0001_TO_EPOCH;
        int64_t c400 = fh_floor_div(n, DAYS_PER_400Y);
        int64_t r = n - c400 * DAYS_PER_400Y;
        int64_t c100, c4, c1, y;
        int leap, m;

        c100 = r / 36524;
        if (c100 == 4)          /* the last day of a leap year 400 */
                c100 = 3;
        r -= c100 * 36524;
        c4 = r / 1461;
        r -= c4 * 1461;
        c1 = r / 365;
        if (c1 == 4)            /* the last day of a leap year 4 */
                c1 = 3;
        r -= c1 * 365;

        y = 1 + 400 * c400 + 100 * c100 + 4 * c4 + c1;
        leap = is_leap(y);
        for (m = 1; m < 12 && r >= days_before_month[leap][m]; m++)
                ;
        *ret_y = y;
        *ret_m = m;
        *ret_d = (int)(r - days_before_month[leap][m - 1]) + 1;
}

static int digit(char c) {
        return (c >= '0' && c <= '9') ? c - '0' : -1;
}

/* n decimal digits at s, or -1 if any is not a digit. */
static int digits(const char *s, int n) {
        int v = 0;

        for (int i = 0; i < n; i++) {
                int d = digit(s[i]);
                if (d < 0)
                        return -1;
                v = v * 10 + d;
        }
        return v;
}

static int fail(const char **ret_why, const char *why) {
        if (ret_why)
                *ret_why = why;
        return -EINVAL;
}

/* Parses "+hh:mm", "-hh:mm", "Z" or "z" that fill s[0..len) exactly. */
static int parse_offset(const char *s, size_t len, int *ret_min, const char **ret_why) {
        int sign, h, m;

        if (len >= 1 && (s[0] == 'Z' || s[0] == 'z')) {
                if (len > 1)
                        return fail(ret_why, "unexpected characters after the offset");
                *ret_min = 0;
                return 0;
        }
        if (len == 0 || (s[0] != '+' && s[0] != '-'))
                return fail(ret_why, "missing offset (Z, +hh:mm or -hh:mm)");
        sign = s[0] == '-' ? -1 : 1;
        if (len < 6 || s[3] != ':' || (h = digits(s + 1, 2)) < 0 || (m = digits(s + 4, 2)) < 0)
                return fail(ret_why, "expected the offset as +hh:mm or -hh:mm");
        if (len > 6)
                return fail(ret_why, "unexpected characters after the offset");
        if (h > 23)
                return fail(ret_why, "offset hour out of range");
        if (m > 59)
                return fail(ret_why, "offset minute out of range");
        *ret_min = sign * (h * 60 + m);
        return 0;
}

int fh_time_parse_rfc3339(const char *s, size_t len, int64_t *ret_ms, const char **ret_why) {
        int year, mon, day, hour, min, sec, off = 0, r;
        int64_t ms = 0, t;
        size_t i;

        /* Fields are checked in the order they are written, so the reason
         * names the first thing that is wrong. */
        if (len < 10 || (year = digits(s, 4)) < 0 || s[4] != '-' ||
            (mon = digits(s + 5, 2)) < 0 || s[7] != '-' || (day = digits(s + 8, 2)) < 0)
                return fail(ret_why, "expected a date as YYYY-MM-DD");
        if (year < 1)
                return fail(ret_why, "year out of range (0001-9999)");
        if (mon < 1 || mon > 12)
                return fail(ret_why, "month out of range");
        if (day < 1 || day > days_in_month(year, mon))
                return fail(ret_why, day < 1 || day > 31 ? "day out of range"
                                                         : "day out of range for the month");
        if (len == 10)
                return fail(ret_why, "missing the time: expected YYYY-MM-DDTHH:MM:SS and an offset");
        if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
                return fail(ret_why, "expected 'T' or a space between date and time");
        if (len < 19 || (hour = digits(s + 11, 2)) < 0 || s[13] != ':' ||
            (min = digits(s + 14, 2)) < 0 || s[16] != ':' || (sec = digits(s + 17, 2)) < 0)
                return fail(ret_why, "expected the time as HH:MM:SS");
        if (hour > 23)
                return fail(ret_why, "hour out of range");
        if (min > 59)
                return fail(ret_why, "minute out of range");
        if (sec == 60)
                return fail(ret_why, "leap seconds are not supported");
        if (sec > 59)
                return fail(ret_why, "second out of range");

        i = 19;
        if (i < len && s[i] == '.') {
                /* Any number of digits; only the first three count. */
                size_t first = ++i;
                int scale = 100;
                for (; i < len && digit(s[i]) >= 0; i++) {
                        ms += digit(s[i]) * scale;
                        scale /= 10;
                }
                if (i == first)
                        return fail(ret_why, "expected digits after '.'");
        }
        r = parse_offset(s + i, len - i, &off, ret_why);
        if (r < 0)
                return r;

        t = days_from_civil(year, mon, day) * MS_PER_DAY + hour * MS_PER_HOUR + min * MS_PER_MIN +
            sec * MS_PER_SEC + ms - off * MS_PER_MIN;
        if (t < FH_TIME_MIN_MS || t > FH_TIME_MAX_MS)
                return fail(ret_why, "out of range (years 0001-9999 in UTC)");
        *ret_ms = t;
        return 0;
}

static char *put_num(char *p, int64_t v, int width) {
        char tmp[24];
        int n = 0;

        if (v < 0) {
                *p++ = '-';
                v = -v;
        }
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

typedef struct civil {
        int64_t year;
        int mon, day, hour, min, sec, ms;
} civil;

/* Times outside the representable range and absurd offsets are clamped
 * rather than refused: the formatters are used for messages and must always
 * produce something readable. */
static int clamp_offset(int offset_min) {
        return offset_min < -OFFSET_MIN_MAX ? -OFFSET_MIN_MAX
             : offset_min > OFFSET_MIN_MAX  ? OFFSET_MIN_MAX
             : offset_min;
}

static void to_civil(int64_t ms, int offset_min, civil *c) {
        int64_t local, days, rem;

        if (ms < FH_TIME_MIN_MS)
                ms = FH_TIME_MIN_MS;
        if (ms > FH_TIME_MAX_MS)
                ms = FH_TIME_MAX_MS;
        local = ms + offset_min * MS_PER_MIN;
        days = fh_floor_div(local, MS_PER_DAY);
        rem = local - days * MS_PER_DAY;
        civil_from_days(days, &c->year, &c->mon, &c->day);
        c->hour = (int)(rem / MS_PER_HOUR);
        c->min = (int)(rem / MS_PER_MIN % 60);
        c->sec = (int)(rem / MS_PER_SEC % 60);
        c->ms = (int)(rem % MS_PER_SEC);
}

static char *put_date_time(char *p, const civil *c, char sep) {
        p = put_num(p, c->year, 4);
        *p++ = '-';
        p = put_num(p, c->mon, 2);
        *p++ = '-';
        p = put_num(p, c->day, 2);
        *p++ = sep;
        p = put_num(p, c->hour, 2);
        *p++ = ':';
        return put_num(p, c->min, 2);
}

size_t fh_time_format_rfc3339(int64_t ms, int offset_min, char *buf) {
        char *p = buf;
        int off = clamp_offset(offset_min);
        civil c;

        to_civil(ms, off, &c);
        p = put_date_time(p, &c, 'T');
        *p++ = ':';
        p = put_num(p, c.sec, 2);
        if (c.ms != 0) {
                *p++ = '.';
                p = put_num(p, c.ms, 3);
        }
        *p++ = off < 0 ? '-' : '+';
        if (off < 0)
                off = -off;
        p = put_num(p, off / 60, 2);
        *p++ = ':';
        p = put_num(p, off % 60, 2);
        *p = '\0';
        return (size_t)(p - buf);
}

size_t fh_time_format_local(int64_t ms, int offset_min, char *buf) {
        char *p = buf;
        civil c;

        to_civil(ms, clamp_offset(offset_min), &c);
        p = put_date_time(p, &c, ' ');
        *p = '\0';
        return (size_t)(p - buf);
}

int fh_duration_parse(const char *s, size_t len, int64_t *ret_ms) {
        int64_t v = 0, unit;
        size_t i;

        if (len < 2)
                return -EINVAL;
        for (i = 0; i < len - 1; i++) {
                int d = digit(s[i]);
                if (d < 0)
                        return -EINVAL;
                v = v * 10 + d;
                /* Stop before v can overflow: any unit makes it too long. */
                if (v > DURATION_MAX_MS / MS_PER_SEC)
                        return -EINVAL;
        }
        switch (s[len - 1]) {
        case 's': unit = MS_PER_SEC; break;
        case 'm': unit = MS_PER_MIN; break;
        case 'h': unit = MS_PER_HOUR; break;
        case 'd': unit = MS_PER_DAY; break;
        default: return -EINVAL;
        }
        if (v > DURATION_MAX_MS / unit)
                return -EINVAL;
        *ret_ms = v * unit;
        return 0;
}

/* Returns the length of the whole text, like snprintf, and writes at most
 * n bytes including the NUL. */
size_t fh_duration_format(int64_t ms, char *buf, size_t n) {
        char tmp[32], *p = tmp;
        const char *suffix;
        int64_t v;
        size_t len;

        if (ms % MS_PER_SEC != 0) {
                v = ms;
                suffix = "ms";
        } else if (ms == 0) {
                v = 0;
                suffix = "s";
        } else if (ms % MS_PER_DAY == 0) {
                v = ms / MS_PER_DAY;
                suffix = "d";
        } else if (ms % MS_PER_HOUR == 0) {
                v = ms / MS_PER_HOUR;
                suffix = "h";
        } else if (ms % MS_PER_MIN == 0) {
                v = ms / MS_PER_MIN;
                suffix = "m";
        } else {
                v = ms / MS_PER_SEC;
                suffix = "s";
        }
        if (v == INT64_MIN) {
                /* put_num cannot negate it; only ever reached in "ms". */
                strcpy(tmp, "-9223372036854775808");
                p = tmp + strlen(tmp);
        } else {
                p = put_num(p, v, 1);
        }
        strcpy(p, suffix);
        len = (size_t)(p - tmp) + strlen(suffix);
        if (n > 0) {
                size_t k = FH_MIN(len, n - 1);
                memcpy(buf, tmp, k);
                buf[k] = '\0';
        }
        return len;
}

int fh_offset_parse(const char *s, size_t len, int *ret_min) {
        int min;
        int r = parse_offset(s, len, &min, NULL);

        if (r < 0)
                return r;
        *ret_min = min;
        return 0;
}
