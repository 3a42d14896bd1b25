/* Exactly-once on the Kafka alerts topic across crashes.
 *
 * Alert events are deterministic: the same readings of a sensor give the
 * same events with the same alert_id, event and ts. After a crash the
 * daemon replays from its last checkpoint, so it regenerates alerts it may
 * already have published. Before it starts, it reads the alerts topic from
 * the checkpoint's watermarks to the end and remembers those events; each
 * regenerated event found there is not published again. */
#ifndef FENGHUO_DEDUPE_H
#define FENGHUO_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "state.h"

typedef struct fh_strset fh_strset;

fh_strset *fh_strset_new(void);
fh_strset *fh_strset_free(fh_strset *s);
void fh_strset_add(fh_strset *s, const char *str);
/* Removes str when present: true when it was there. */
bool fh_strset_take(fh_strset *s, const char *str);
size_t fh_strset_size(const fh_strset *s);
/* Adds every string of from to into; from is left empty. */
void fh_strset_move(fh_strset *into, fh_strset *from);

/* The key (fh_alert_key) of an alert event's JSON; 0, or -EINVAL when the
 * text is not an alert event or the key does not fit n bytes. */
int fh_alert_dedupe_key(const char *json, size_t len, char *buf, size_t n);

/* The identifier of a CAP message (fh_cap_write's XML): what a CAP
 * message is de-duplicated by. 0, or -EINVAL. */
int fh_cap_dedupe_key(const char *xml, size_t len, char *buf, size_t n);

/* High watermarks of every partition of topic (blocking, for start-up). */
int fh_kafka_watermarks(const fh_daemon_config *cfg, const char *topic, fh_offsets *ret, char *err, size_t errlen);

/* Reads topic from the offsets in from (NULL: from the beginning of every
 * partition) to the end as it was at the call, calling fn for each
 * message. Blocking, bounded by timeout_ms: for start-up and rebalances.
 * 0 or a negative errno with err set. */
typedef void (*fh_message_fn)(void *userdata, const rd_kafka_message_t *m);
int fh_kafka_read_to_end(const fh_daemon_config *cfg, const char *topic, const fh_offsets *from, int timeout_ms,
                         fh_message_fn fn, void *userdata, char *err, size_t errlen);

/* Adds the dedupe key of every alert in topic from the offsets in from to
 * the end whose Kafka key (the sensor) want() accepts: only the sensors
 * this instance will regenerate, so in a group the set empties as they
 * come. Blocking, bounded by timeout_ms. Returns the count added, or a
 * negative errno with err set. */
typedef bool (*fh_key_filter)(void *userdata, const void *key, size_t len);
long fh_kafka_scan_alerts(const fh_daemon_config *cfg, const char *topic, const fh_offsets *from,
                          fh_key_filter want, void *userdata, fh_strset *into, int timeout_ms,
                          char *err, size_t errlen);

/* fh_kafka_scan_alerts over everything the daemon publishes and can
 * regenerate: the alerts topic and the CAP topic (each when configured),
 * alert keys and CAP identifiers into one set (they cannot collide). */
long fh_kafka_scan_published(const fh_daemon_config *cfg, const fh_offsets *from, fh_key_filter want, void *userdata,
                             fh_strset *into, int timeout_ms, char *err, size_t errlen);

#endif
