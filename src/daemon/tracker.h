/* Which Kafka offsets may be committed: an offset is committable once the
 * message and every message before it in its partition have had all their
 * alerts acknowledged. At-least-once rests on this file. */
#ifndef FENGHUO_TRACKER_H
#define FENGHUO_TRACKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fh_track fh_track;
typedef struct fh_tracker fh_tracker;

fh_tracker *fh_tracker_new(void);
fh_tracker *fh_tracker_free(fh_tracker *t);

/* A consumed message; holds itself until fh_tracker_release(). */
fh_track *fh_tracker_begin(fh_tracker *t, const char *topic, int32_t partition, int64_t offset);
void fh_track_hold(fh_track *k);
void fh_tracker_release(fh_tracker *t, fh_track *k);

typedef void (*fh_offset_fn)(void *userdata, const char *topic, int32_t partition, int64_t next_offset);
/* Every partition's committable offset, once it has one. */
void fh_tracker_foreach_committable(const fh_tracker *t, fh_offset_fn fn, void *userdata);
/* Every partition's position after the last message processed: what a
 * checkpoint of the engine's state corresponds to. */
void fh_tracker_foreach_processed(const fh_tracker *t, fh_offset_fn fn, void *userdata);
/* Position after the last message processed in one partition, or -1. */
int64_t fh_tracker_processed(const fh_tracker *t, const char *topic, int32_t partition);
/* Messages not yet fully acknowledged. */
size_t fh_tracker_pending(const fh_tracker *t);
/* A revoked partition: forget it (pending tracks stay valid and are freed
 * when released). */
void fh_tracker_forget(fh_tracker *t, const char *topic, int32_t partition);

#endif
