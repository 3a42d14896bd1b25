#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "handoff.h"

/* ---- reading the state topic ---- */

typedef struct fetch {
        const char *const *keys;
        size_t n;
        fh_handoff_asm **asms;
        fh_buf *legacy;        /* a whole record under the base key (before chunking) */
        bool *legacy_found;
} fetch;

static void fetch_one(void *userdata, const rd_kafka_message_t *m) {
        fetch *f = userdata;

        if (!m->key)
                return;
        for (size_t i = 0; i < f->n; i++) {
                size_t kl = strlen(f->keys[i]);
                if (m->key_len < kl || memcmp(f->keys[i], m->key, kl) != 0)
                        continue;
                if (m->key_len == kl) {
                        /* A record of the unchunked format; later records
                         * replace earlier ones, an empty one is a tombstone. */
                        fh_buf_reset(&f->legacy[i]);
                        f->legacy_found[i] = m->len > 0;
                        if (m->len)
                                fh_buf_append(&f->legacy[i], m->payload, m->len);
                        return;
                }
                const char *k = (const char *) m->key + kl;
                size_t rest = m->key_len - kl;
                if (rest < 2 || k[0] != '|' || strspn(k + 1, "0123456789") < rest - 1)
                        continue;
                if (m->len > 0)
                        /* A chunk that does not decode is left out: its
                         * generation stays incomplete and is not used. */
                        (void) fh_handoff_asm_add(f->asms[i], m->payload, m->len);
                return;
        }
}

int fh_handoff_fetch(const fh_daemon_config *cfg, const char *topic, const char *const *keys, size_t n,
                     fh_buf *values, bool *found, uint64_t *generations, int timeout_ms, char *err, size_t errlen) {
        fh_handoff_asm **asms = fh_calloc(n + 1, sizeof(*asms));
        fh_buf *legacy = fh_calloc(n + 1, sizeof(*legacy));
        bool *legacy_found = fh_calloc(n + 1, sizeof(*legacy_found));
        fetch f = { keys, n, asms, legacy, legacy_found };

        for (size_t i = 0; i < n; i++) {
                found[i] = false;
                generations[i] = 0;
                asms[i] = fh_handoff_asm_new();
        }
        int r = fh_kafka_read_to_end(cfg, topic, NULL, timeout_ms, fetch_one, &f, err, errlen);
        for (size_t i = 0; i < n; i++) {
                const void *p;
                size_t len;
                fh_buf_reset(&values[i]);
                if (r == 0 && fh_handoff_asm_result(asms[i], &p, &len, &generations[i]) == 0) {
                        fh_buf_append(&values[i], p, len);
                        found[i] = true;
                } else if (r == 0 && legacy_found[i]) {
                        /* Generation 0: older than any chunked hand-over. */
                        fh_buf_append(&values[i], legacy[i].data, legacy[i].len);
                        found[i] = true;
                }
                fh_handoff_asm_free(asms[i]);
                fh_buf_free(&legacy[i]);
        }
        free(asms);
        free(legacy);
        free(legacy_found);
        return r;
}
