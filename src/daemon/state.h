/* The daemon's state file: the engine's snapshot together with the Kafka
 * offsets it belongs to, written atomically (temp file, fsync, rename), so
 * that a restart continues exactly where the last run stopped. */
#ifndef FENGHUO_STATE_H
#define FENGHUO_STATE_H

#include <stdbool.h>
#include <sys/types.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "payload.h"

typedef struct fh_offset {
        char *topic;
        int32_t partition;
        int64_t offset;   /* next offset to consume */
} fh_offset;

typedef struct fh_offsets {
        fh_offset *v;
        size_t n;
} fh_offsets;

void fh_offsets_add(fh_offsets *o, const char *topic, int32_t partition, int64_t offset);
/* -1 when absent. */
int64_t fh_offsets_get(const fh_offsets *o, const char *topic, int32_t partition);
void fh_offsets_clear(fh_offsets *o);

/* Something produced but not yet confirmed by every sink: saved with a
 * checkpoint so that a crash loses none of it. */
/* FH_SINK_FILE: a CAP message's file in cap_dir. */
enum { FH_SINK_KAFKA = 1, FH_SINK_REDIS = 2, FH_SINK_FILE = 4 };
typedef struct fh_outbox_item {
        uint8_t sinks;             /* those still to confirm */
        fh_payload *p;             /* one reference */
} fh_outbox_item;

/* Drops the payload's reference. */
void fh_outbox_item_clear(fh_outbox_item *it);

typedef struct fh_checkpoint {
        fh_offsets positions;      /* input partitions: next offset to process */
        fh_offsets watermarks;     /* alerts topic: offset after the last alert confirmed */
        fh_outbox_item *outbox;
        size_t n_outbox;
        /* Which input partition each sensor's readings came from: the
         * partition of sensor_ids[i] is partitions.v[sensor_part[i]]. */
        fh_offsets partitions;
        char **sensor_ids;
        uint32_t *sensor_part;
        size_t n_sensors;
} fh_checkpoint;

void fh_checkpoint_clear(fh_checkpoint *c);

/* dir/name written through dir/tmp_name: written, fsynced, renamed, and
 * dir fsynced, so that a crash leaves the old file or the new one, and a
 * success survives a power cut. 0 or -errno (ENOSPC, EROFS...); the
 * temporary file is removed on failure. */
int fh_write_file_durably(const char *dir, const char *name, const char *tmp_name, const void *data, size_t len,
                          mode_t mode);

/* Writes dir/state (through dir/state.tmp) with the state of the n_es
 * engines (a daemon's shards) as one snapshot. 0 or -errno (ENOSPC,
 * EROFS...). */
int fh_state_save(const char *dir, const fh_engine *const *es, size_t n_es, const fh_checkpoint *c);
/* The same in a child process: it sees the engine and c as they are at
 * the call (copy-on-write), whatever the caller changes afterwards, so the
 * caller's thread pays only for the fork. The caller may free c at once.
 * 0 with *ret_pid, or -errno (nothing started). */
int fh_state_save_fork(const char *dir, const fh_engine *const *es, size_t n_es, const fh_checkpoint *c,
                       pid_t *ret_pid);
/* 1 once the child has ended, with fh_state_save's result in *ret_result;
 * 0 while it runs (only when !block); -errno. */
int fh_state_save_wait(pid_t pid, bool block, int *ret_result);
/* 0 and restored; -ENOENT when there is no state; -EBADMSG when corrupt
 * (the engine is untouched then); other -errno. */
int fh_state_load(const char *dir, fh_engine *e, fh_checkpoint *ret);
/* The decoding part of fh_state_load, for a state file's bytes. */
int fh_state_decode(const void *data, size_t len, fh_engine *e, fh_checkpoint *ret);

#endif
