/* The hand-over record (see handoff.h) as bytes: encoding and decoding
 * only, no Kafka, so that the decoding can be fuzzed on its own. */
#ifndef FENGHUO_HANDOFF_RECORD_H
#define FENGHUO_HANDOFF_RECORD_H

#include "fenghuo/buf.h"
#include "state.h"

void fh_handoff_key(char *buf, size_t n, const char *group, const char *topic, int32_t partition);

void fh_handoff_encode(fh_buf *out, int64_t position, const fh_offsets *watermarks, const void *snap, size_t snap_len);
/* 0, or -EBADMSG. *ret_snap points into p. */
int fh_handoff_decode(const void *p, size_t n, int64_t *ret_position, fh_offsets *ret_watermarks,
                      const void **ret_snap, size_t *ret_snap_len);

#endif
