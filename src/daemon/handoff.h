/* Moving a partition's state between instances of one consumer group.
 *
 * When a partition is revoked, the instance that had it writes a record to
 * the state topic (compacted, keyed by group, topic and partition, cut into
 * chunks that each fit a Kafka message): the
 * engine state of the sensors seen on that partition, the position after
 * the last message it processed, and the alerts topic's watermarks. The
 * instance it is assigned to reads the latest record for its key, restores
 * the sensors, starts consuming at that position, and suppresses alerts the
 * alerts topic already holds past those watermarks. */
#ifndef FENGHUO_HANDOFF_H
#define FENGHUO_HANDOFF_H

#include "fenghuo/buf.h"
#include "config.h"
#include "handoff_record.h"
#include "state.h"

/* Reads the state topic to its end and keeps, for each of keys[0..n), the
 * newest complete hand-over: values[i] gets its bytes, found[i] whether
 * there was one, generations[i] its generation (0 for a record written
 * before chunking). Blocking: not on the loop thread.
 * 0 or a negative errno with err set. */
int fh_handoff_fetch(const fh_daemon_config *cfg, const char *topic, const char *const *keys, size_t n,
                     fh_buf *values, bool *found, uint64_t *generations, int timeout_ms, char *err, size_t errlen);

#endif
