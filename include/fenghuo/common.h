/* Limits and conventions shared by every part of fenghuo.
 *
 * Error convention (as in dbus-broker): functions return 0 on success, a
 * negative errno for failures the caller cannot expect (-ENOMEM, -EINVAL for
 * misuse), and positive per-module codes for expected outcomes (a rejected
 * reading, a duplicate). */
#ifndef FENGHUO_COMMON_H
#define FENGHUO_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* SPEC §1 caps: everything a sensor controls is bounded. */
#define FH_SENSOR_ID_MAX     64
#define FH_FIELD_NAME_MAX    32
#define FH_VALUES_MAX        32
#define FH_READING_BYTES_MAX 65536
#define FH_JSON_DEPTH_MAX    32
#define FH_RULE_ID_MAX       64

/* Levels, ordered: a higher number is a more severe tier. */
typedef enum fh_level {
        FH_LEVEL_NONE   = 0,
        FH_LEVEL_BLUE   = 1, /* IV  */
        FH_LEVEL_YELLOW = 2, /* III */
        FH_LEVEL_ORANGE = 3, /* II  */
        FH_LEVEL_RED    = 4, /* I   */
        FH_LEVEL__MAX
} fh_level;

const char *fh_level_name(fh_level l);     /* "none", "blue", ... */
const char *fh_level_name_cn(fh_level l);  /* "解除", "蓝色", ... */
int fh_level_severity(fh_level l);         /* red 1 ... blue 4, none 0 */
int fh_level_from_string(const char *s, size_t len, fh_level *ret); /* 0 or -EINVAL */

typedef enum fh_kind {
        FH_KIND_RAIN,
        FH_KIND_WATER_LEVEL,
        FH_KIND_LANDSLIDE,
        FH_KIND_BRIDGE,
        FH_KIND__MAX
} fh_kind;

const char *fh_kind_name(fh_kind k);       /* "rain", "water_level", ... */
int fh_kind_from_string(const char *s, size_t len, fh_kind *ret); /* 0 or -EINVAL */

/* Identifier as the rule language and SPEC §3 define it: [a-z][a-z0-9_]*.
 * Field names additionally have FH_FIELD_NAME_MAX as their cap. */
bool fh_is_identifier(const char *s, size_t len);

/* Levenshtein distance, for "did you mean" suggestions; SIZE_MAX for names
 * longer than 64 bytes (no typo of a keyword is that long). */
size_t fh_edit_distance(const char *a, size_t na, const char *b, size_t nb);

/* FNV-1a (64-bit), continued from h: pass the previous result to hash
 * several pieces as one. Not cryptographic: table slots, identifiers made
 * reproducible, and the checksums of what fenghuo writes to disk or Kafka. */
#define FH_FNV1A_INIT 0xcbf29ce484222325ULL
uint64_t fh_fnv1a(uint64_t h, const void *p, size_t n);

/* The checksum that ends snapshots, state files and hand-over records.
 * Their first version started from an offset basis one digit short of
 * FNV's; it stays, so that state written by any release still reads. */
#define FH_CHECKSUM_INIT 1469598103934665603ULL
static inline uint64_t fh_checksum(const void *p, size_t n) {
        return fh_fnv1a(FH_CHECKSUM_INIT, p, n);
}

#define FH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FH_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
