/* What the daemon sends for one alert or dead letter, built once and
 * shared: one immutable, reference-counted block holding the alert's JSON
 * and the strings every sink needs (Kafka key, active-hash field, level,
 * dedupe key; a dead letter's reason and source). The Kafka producer sends
 * the JSON without copying it, the Redis sink passes it to hiredis as it
 * is, checkpoints write it from here, and the last fh_payload_unref frees
 * it. Before this, one alert was formatted once and copied three times
 * more (outbox item, librdkafka's F_COPY, the Redis sink's item) in six
 * allocations.
 *
 * The block never changes after fh_payload_new, so any thread may read it;
 * the count is atomic, so references may be taken and dropped on any
 * thread. */
#ifndef FENGHUO_PAYLOAD_H
#define FENGHUO_PAYLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"

/* What a payload is; the numbers are the state file's (state.c). */
enum { FH_OUT_ALERT = 1, FH_OUT_DEAD_LETTER = 2, FH_OUT_CAP = 3 };

/* Every string is NUL-terminated inside the block (so also usable as a C
 * string when it holds no NUL) and NULL when absent; value never is. */
typedef struct fh_payload {
        atomic_uint refs;
        uint8_t kind;              /* FH_OUT_ALERT, FH_OUT_DEAD_LETTER or FH_OUT_CAP */
        bool cleared;              /* alert: HDEL from the active hash instead of HSET */
        int32_t src_partition;     /* dead letter: where the rejected message was */
        int64_t src_offset;
        const char *value;         /* the alert JSON, the rejected message's bytes, the CAP XML */
        size_t value_len;
        const char *key;           /* Kafka key: the sensor (or the original key) */
        size_t key_len;
        const char *field;         /* alert: "rule:sensor" of the active hash */
        size_t field_len;
        const char *level;         /* alert: new level name */
        const char *dedupe;        /* alert: "alert_id|event|ts", the same on every replay;
                                    * CAP: the message's identifier (and file name) */
        const char *reason, *detail, *src_topic;   /* dead letter */
        char data[];
} fh_payload;

/* The parts of a payload: pointers with lengths (a NULL pointer is an
 * absent string; the lengths of NUL-terminated ones may be SIZE_MAX, and
 * are then measured). Only fh_payload_new reads them. */
typedef struct fh_payload_parts {
        uint8_t kind;
        bool cleared;
        int32_t src_partition;
        int64_t src_offset;
        const char *value;
        size_t value_len;
        const char *key;
        size_t key_len;
        const char *field;
        size_t field_len;
        const char *level;
        size_t level_len;
        const char *dedupe;
        size_t dedupe_len;
        const char *reason;
        size_t reason_len;
        const char *detail;
        size_t detail_len;
        const char *src_topic;
        size_t src_topic_len;
} fh_payload_parts;

/* One allocation, the strings copied in; one reference, the caller's. */
fh_payload *fh_payload_new(const fh_payload_parts *parts);

/* An alert event's payload. json: its fh_alert_to_json text (the caller
 * formats it, into a buffer it reuses, so that the text is built once). */
fh_payload *fh_payload_alert(const fh_alert *a, const char *json, size_t json_len);

static inline fh_payload *fh_payload_ref(fh_payload *p) {
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        return p;
}

/* Drops one reference; the last frees. Accepts NULL; returns NULL. */
fh_payload *fh_payload_unref(fh_payload *p);

#endif
