/* libFuzzer target for the daemon's state file (src/daemon/state.c): any
 * bytes as the file (the target appends the checksum, so the fuzzer reaches
 * the decoding). A load either refuses with -EBADMSG, engine untouched, or
 * gives a checkpoint whose every part is usable, and saving it again and
 * loading that gives the same. */
#include <stdio.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch_checkpoint(const fh_checkpoint *c) {
        const fh_offsets *lists[] = { &c->positions, &c->watermarks, &c->partitions };
        size_t bytes = 0;

        for (size_t l = 0; l < 3; l++)
                for (size_t i = 0; i < lists[l]->n; i++)
                        bytes += strlen(lists[l]->v[i].topic);
        for (size_t i = 0; i < c->n_outbox; i++) {
                const fh_payload *p = c->outbox[i].p;
                if (!p || !p->value || (p->kind != FH_OUT_ALERT && p->kind != FH_OUT_DEAD_LETTER && p->kind != FH_OUT_CAP))
                        abort();
                if (p->kind == FH_OUT_CAP && !p->dedupe)
                        abort();
                bytes += p->value_len + p->key_len;
                if (p->key && memchr(p->key, 0, p->key_len + 1) == NULL)
                        abort();
        }
        for (size_t i = 0; i < c->n_sensors; i++) {
                bytes += strlen(c->sensor_ids[i]);
                if (c->sensor_part[i] >= c->partitions.n)
                        abort();
        }
        (void) bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fh_buf in = FH_BUF_NULL, before = FH_BUF_NULL, after = FH_BUF_NULL;
        fh_checkpoint cp = { 0 }, untouched = { 0 };
        fh_engine *e = fuzz_engine_new(fuzz_rules_yaml, strlen(fuzz_rules_yaml), NULL);
        int r;

        if (!e)
                abort();
        fuzz_with_checksum(&in, data, size);
        fh_engine_snapshot(e, NULL, NULL, &before);
        r = fh_state_decode(in.data, in.len, e, &cp);
        if (r != 0) {
                if (r != -EBADMSG || memcmp(&cp, &untouched, sizeof(cp)) != 0)
                        abort();
                fh_engine_snapshot(e, NULL, NULL, &after);
                if (after.len != before.len || memcmp(after.data, before.data, after.len) != 0)
                        abort();
        } else
                touch_checkpoint(&cp);
        fh_checkpoint_clear(&cp);
        fh_buf_free(&in);
        fh_buf_free(&before);
        fh_buf_free(&after);
        fh_engine_free(e);
        return 0;
}
