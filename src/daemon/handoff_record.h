/* The hand-over record (see handoff.h) as bytes: encoding and decoding
 * only, no Kafka, so that the decoding can be fuzzed on its own. */
#ifndef FENGHUO_HANDOFF_RECORD_H
#define FENGHUO_HANDOFF_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "fenghuo/buf.h"
#include "state.h"

void fh_handoff_key(char *buf, size_t n, const char *group, const char *topic, int32_t partition);

void fh_handoff_encode(fh_buf *out, int64_t position, const fh_offsets *watermarks, const void *snap, size_t snap_len);
/* 0, or -EBADMSG. *ret_snap points into p. */
int fh_handoff_decode(const void *p, size_t n, int64_t *ret_position, fh_offsets *ret_watermarks,
                      const void **ret_snap, size_t *ret_snap_len);

/* Chunks: chunk i of a record goes under the key "<base key>|<i>", so that
 * compaction keeps the newest chunk of each index. FH_HANDOFF_CHUNK bytes of
 * the record per chunk, plus a 40-byte header: below the producer's
 * default message.max.bytes (1,000,000) and the broker's max.message.bytes. */
#define FH_HANDOFF_CHUNK ((size_t) 768 * 1024)

size_t fh_handoff_chunk_count(size_t len);
void fh_handoff_chunk_key(char *buf, size_t n, const char *base, size_t index);
/* The checksum every chunk of rec carries: computed once per record, not
 * per chunk (a 40 MB record has 52 chunks). */
uint64_t fh_handoff_record_sum(const void *rec, size_t len);
/* Appends chunk index of rec[0..len) of hand-over `generation` (larger =
 * newer) to out; sum is fh_handoff_record_sum(rec, len). */
void fh_handoff_chunk_encode(fh_buf *out, uint64_t generation, size_t index, const void *rec, size_t len,
                             uint64_t sum);

/* Collects the chunks of one key, in any order, and gives back the newest
 * generation it holds completely: incomplete generations, chunks that
 * disagree with their generation's header and a wrong checksum never make
 * a record. */
typedef struct fh_handoff_asm fh_handoff_asm;
fh_handoff_asm *fh_handoff_asm_new(void);
fh_handoff_asm *fh_handoff_asm_free(fh_handoff_asm *a);
/* Forgets every chunk seen. */
void fh_handoff_asm_reset(fh_handoff_asm *a);
/* 0, or -EBADMSG for bytes that are not a chunk (ignored). */
int fh_handoff_asm_add(fh_handoff_asm *a, const void *p, size_t n);
/* 0 with the record (valid until the next add or free) and its generation
 * (may be NULL), or -ENOENT when no generation is complete. */
int fh_handoff_asm_result(fh_handoff_asm *a, const void **ret, size_t *ret_len, uint64_t *ret_generation);

#endif
