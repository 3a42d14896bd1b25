#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "handoff.h"

typedef struct fetch {
        const char *const *keys;
        size_t n;
        fh_buf *values;
        bool *found;
} fetch;

static void fetch_one(void *userdata, const rd_kafka_message_t *m) {
        fetch *f = userdata;

        if (!m->key)
                return;
        for (size_t i = 0; i < f->n; i++)
                if (strlen(f->keys[i]) == m->key_len && !memcmp(f->keys[i], m->key, m->key_len)) {
                        /* Later records replace earlier ones; an empty one
                         * is a tombstone. */
                        fh_buf_reset(&f->values[i]);
                        f->found[i] = m->len > 0;
                        if (m->len)
                                fh_buf_append(&f->values[i], m->payload, m->len);
                }
}

int fh_handoff_fetch(const fh_daemon_config *cfg, const char *topic, const char *const *keys, size_t n,
                     fh_buf *values, bool *found, int timeout_ms, char *err, size_t errlen) {
        fetch f = { keys, n, values, found };

        for (size_t i = 0; i < n; i++)
                found[i] = false;
        return fh_kafka_read_to_end(cfg, topic, NULL, timeout_ms, fetch_one, &f, err, errlen);
}
