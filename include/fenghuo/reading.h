/* The input message of SPEC §1, parsed from one JSON object.
 *
 * The parser is a strict single-pass reader written for this one schema:
 * it validates UTF-8, caps nesting and size, and allocates nothing, which
 * keeps JSON parsing under a third of the cost of a reading (see
 * docs/performance.md). Unknown members are skipped but still validated. */
#ifndef FENGHUO_READING_H
#define FENGHUO_READING_H

#include "fenghuo/common.h"

typedef struct fh_value {
        char name[FH_FIELD_NAME_MAX + 1];
        uint8_t name_len;
        double v;                          /* always finite */
} fh_value;

typedef struct fh_reading {
        char sensor[FH_SENSOR_ID_MAX + 1]; /* NUL-terminated */
        uint8_t sensor_len;
        int64_t ts_ms;
        unsigned n_values;                 /* 1..FH_VALUES_MAX */
        fh_value values[FH_VALUES_MAX];    /* in message order, names unique */
} fh_reading;

/* Why a reading was rejected. Positive: these are expected outcomes. */
typedef enum fh_reject {
        FH_REJECT_NONE = 0,
        FH_REJECT_MALFORMED_JSON,  /* syntax, invalid UTF-8, too deep, not an object, duplicate key */
        FH_REJECT_MISSING_FIELD,   /* sensor, ts or values absent */
        FH_REJECT_BAD_SENSOR,      /* not a string, or not 1-64 of [A-Za-z0-9._:-] */
        FH_REJECT_BAD_TIMESTAMP,   /* not RFC 3339 with offset / not an integer, or out of range */
        FH_REJECT_BAD_VALUE,       /* a value that is not a number, or not finite */
        FH_REJECT_BAD_VALUES,      /* values not an object, empty, over 32 members, bad key */
        FH_REJECT_UNKNOWN_SENSOR,  /* decided by the engine, not the parser */
        FH_REJECT_TOO_LONG,        /* over FH_READING_BYTES_MAX bytes */
        FH_REJECT_RATE_LIMITED,    /* engine: over its sensor's max_readings_per_minute */
        FH_REJECT_WINDOW_FULL,     /* engine: a store of its sensor holds max_window_samples */
        FH_REJECT__MAX
} fh_reject;

/* Stable snake_case name for counters and logs: "malformed_json", ... */
const char *fh_reject_name(fh_reject r);

/* Parses buf[0..len) (no NUL needed; leading/trailing JSON whitespace and a
 * trailing '\r' allowed). Returns FH_REJECT_NONE and fills *ret, or a
 * positive fh_reject and writes a one-line human reason into why (when
 * why_len > 0), e.g. "bad timestamp: month 13 out of range".
 * *ret is unspecified after a rejection. */
fh_reject fh_reading_parse(const char *buf, size_t len, fh_reading *ret, char *why, size_t why_len);

#endif
