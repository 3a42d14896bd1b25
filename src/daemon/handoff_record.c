#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff_record.h"

#define HANDOFF_MAGIC "FHHAND01"

void fh_handoff_key(char *buf, size_t n, const char *group, const char *topic, int32_t partition) {
        snprintf(buf, n, "%s|%s|%d", group, topic, partition);
}

void fh_handoff_encode(fh_buf *out, int64_t position, const fh_offsets *wm, const void *snap, size_t snap_len) {
        fh_buf_append(out, HANDOFF_MAGIC, 8);
        fh_buf_u64(out, (uint64_t) position);
        fh_buf_u32(out, (uint32_t) wm->n);
        for (size_t i = 0; i < wm->n; i++) {
                fh_buf_str(out, wm->v[i].topic, strlen(wm->v[i].topic));
                fh_buf_u32(out, (uint32_t) wm->v[i].partition);
                fh_buf_u64(out, (uint64_t) wm->v[i].offset);
        }
        fh_buf_u64(out, snap_len);
        fh_buf_append(out, snap, snap_len);
}

int fh_handoff_decode(const void *p, size_t n, int64_t *ret_position, fh_offsets *ret_wm,
                      const void **ret_snap, size_t *ret_snap_len) {
        fh_rd rd = { p, n, 8 };
        uint64_t pos, len;
        uint32_t k;
        fh_offsets wm = { 0 };

        if (n < 8 || memcmp(p, HANDOFF_MAGIC, 8) != 0)
                return -EBADMSG;
        if (fh_rd_u64(&rd, &pos) < 0 || fh_rd_u32(&rd, &k) < 0 || k > 100000)
                return -EBADMSG;
        for (uint32_t i = 0; i < k; i++) {
                const char *t;
                size_t tl;
                uint32_t part;
                uint64_t off;
                if (fh_rd_str(&rd, &t, &tl) < 0 || fh_rd_u32(&rd, &part) < 0 || fh_rd_u64(&rd, &off) < 0) {
                        fh_offsets_clear(&wm);
                        return -EBADMSG;
                }
                char *topic = fh_strndup(t, tl);
                fh_offsets_add(&wm, topic, (int32_t) part, (int64_t) off);
                free(topic);
        }
        if (fh_rd_u64(&rd, &len) < 0 || len != rd.n - rd.off) {
                fh_offsets_clear(&wm);
                return -EBADMSG;
        }
        *ret_position = (int64_t) pos;
        *ret_wm = wm;
        *ret_snap = rd.p + rd.off;
        *ret_snap_len = (size_t) len;
        return 0;
}
