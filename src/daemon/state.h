/* The daemon's state file: the engine's snapshot together with the Kafka
 * offsets it belongs to, written atomically (temp file, fsync, rename), so
 * that a restart continues exactly where the last run stopped. */
#ifndef FENGHUO_STATE_H
#define FENGHUO_STATE_H

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"

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

/* Writes dir/state (through dir/state.tmp). 0 or -errno (ENOSPC, EROFS...). */
int fh_state_save(const char *dir, const fh_engine *e, const fh_offsets *o);
/* 0 and restored; -ENOENT when there is no state; -EBADMSG when corrupt
 * (the engine is untouched then); other -errno. */
int fh_state_load(const char *dir, fh_engine *e, fh_offsets *ret);

#endif
