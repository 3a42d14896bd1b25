#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dedupe.h"
#include "handoff.h"

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

int fh_handoff_fetch(const fh_daemon_config *cfg, const char *topic, const char *const *keys, size_t n,
                     fh_buf *values, bool *found, int timeout_ms, char *err, size_t errlen) {
        fh_offsets ends = { 0 };
        int r = fh_kafka_watermarks(cfg, topic, &ends, err, errlen);
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        int remaining = 0;

        for (size_t i = 0; i < n; i++)
                found[i] = false;
        if (r < 0)
                return r;

        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new((int) ends.n + 1);
        for (size_t i = 0; i < ends.n; i++)
                if (ends.v[i].offset > 0) {
                        rd_kafka_topic_partition_list_add(parts, topic, ends.v[i].partition)->offset =
                                RD_KAFKA_OFFSET_BEGINNING;
                        remaining++;
                }
        if (remaining == 0)
                goto out_parts;

        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) != RD_KAFKA_CONF_OK)
                goto fail_conf;
        for (size_t i = 0; i < cfg->kafka_props.n; i++)
                if (rd_kafka_conf_set(conf, cfg->kafka_props.v[i].key, cfg->kafka_props.v[i].value, err, errlen) != RD_KAFKA_CONF_OK)
                        goto fail_conf;
        if (rd_kafka_conf_set(conf, "group.id", "fenghuo-handoff-read", err, errlen) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "fetch.message.max.bytes", "67108864", err, errlen) != RD_KAFKA_CONF_OK)
                goto fail_conf;
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
        if (!rk) {
                r = -EINVAL;
                goto out_parts;
        }
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_assign(rk, parts);

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (remaining > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms) {
                        snprintf(err, errlen, "reading the state topic %s did not reach its end within %d ms", topic, timeout_ms);
                        r = -ETIMEDOUT;
                        if (m)
                                rd_kafka_message_destroy(m);
                        break;
                }
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        remaining--;
                else if (!m->err && m->key)
                        for (size_t i = 0; i < n; i++)
                                if (strlen(keys[i]) == m->key_len && !memcmp(keys[i], m->key, m->key_len)) {
                                        fh_buf_reset(&values[i]);
                                        found[i] = m->len > 0;
                                        if (m->len)
                                                fh_buf_append(&values[i], m->payload, m->len);
                                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        goto out_parts;
fail_conf:
        rd_kafka_conf_destroy(conf);
        r = -EINVAL;
out_parts:
        rd_kafka_topic_partition_list_destroy(parts);
        fh_offsets_clear(&ends);
        return r;
}
