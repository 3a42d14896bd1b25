#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

static size_t part_len(const char *s, size_t n) {
        if (!s)
                return 0;
        return n == SIZE_MAX ? strlen(s) : n;
}

/* Copies one string into the block at *p; its pointer, or NULL. */
static const char *put(char **p, const char *s, size_t n) {
        char *at = *p;

        if (!s)
                return NULL;
        memcpy(at, s, n);
        at[n] = '\0';
        *p = at + n + 1;
        return at;
}

fh_payload *fh_payload_new(const fh_payload_parts *parts) {
        size_t value_len = part_len(parts->value ? parts->value : "", parts->value_len);
        size_t key_len = part_len(parts->key, parts->key_len);
        size_t field_len = part_len(parts->field, parts->field_len);
        size_t level_len = part_len(parts->level, parts->level_len);
        size_t dedupe_len = part_len(parts->dedupe, parts->dedupe_len);
        size_t reason_len = part_len(parts->reason, parts->reason_len);
        size_t detail_len = part_len(parts->detail, parts->detail_len);
        size_t topic_len = part_len(parts->src_topic, parts->src_topic_len);
        size_t total = sizeof(fh_payload) + value_len + key_len + field_len + level_len + dedupe_len + reason_len +
                       detail_len + topic_len + 8;
        fh_payload *p = fh_malloc(total);
        char *at = p->data;

        *p = (fh_payload) {
                .kind = parts->kind,
                .cleared = parts->cleared,
                .src_partition = parts->src_partition,
                .src_offset = parts->src_offset,
                .value_len = value_len,
                .key_len = key_len,
                .field_len = field_len,
        };
        atomic_init(&p->refs, 1);
        p->value = put(&at, parts->value ? parts->value : "", value_len);
        p->key = put(&at, parts->key, key_len);
        p->field = put(&at, parts->field, field_len);
        p->level = put(&at, parts->level, level_len);
        p->dedupe = put(&at, parts->dedupe, dedupe_len);
        p->reason = put(&at, parts->reason, reason_len);
        p->detail = put(&at, parts->detail, detail_len);
        p->src_topic = put(&at, parts->src_topic, topic_len);
        return p;
}

fh_payload *fh_payload_alert(const fh_alert *a, const char *json, size_t json_len) {
        char field[FH_RULE_ID_MAX + FH_SENSOR_ID_MAX + 2];
        char key[512];   /* an alert key is at most about 190 bytes */
        int fl = snprintf(field, sizeof(field), "%s:%.*s", a->rule->id, (int) a->station->id_len, a->station->id);
        fh_payload_parts parts = {
                .kind = FH_OUT_ALERT,
                .cleared = a->event == FH_EVENT_CLEARED,
                .value = json,
                .value_len = json_len,
                .key = a->station->id,
                .key_len = a->station->id_len,
                .field = field,
                .field_len = fl < 0 ? 0 : FH_MIN((size_t) fl, sizeof(field) - 1),
                .level = fh_level_name(a->level),
                .level_len = SIZE_MAX,
        };

        /* The same key fh_alert_dedupe_key reads back from the topic. */
        if (fh_alert_key(a, key, sizeof(key)) == 0) {
                parts.dedupe = key;
                parts.dedupe_len = SIZE_MAX;
        }
        return fh_payload_new(&parts);
}

fh_payload *fh_payload_unref(fh_payload *p) {
        if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
                free(p);
        return NULL;
}
