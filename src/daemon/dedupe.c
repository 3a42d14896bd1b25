#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "fenghuo/timeutil.h"
#include "dedupe.h"

typedef struct entry {
        struct entry *next;
        uint64_t hash;
        char str[];
} entry;

struct fh_strset {
        entry **slots;
        size_t mask;
        size_t n;
};

static uint64_t hash_str(const char *s) {
        return fh_fnv1a(FH_FNV1A_INIT, s, strlen(s));
}

fh_strset *fh_strset_new(void) {
        fh_strset *s = fh_calloc(1, sizeof(*s));
        s->mask = 255;
        s->slots = fh_calloc(s->mask + 1, sizeof(*s->slots));
        return s;
}

fh_strset *fh_strset_free(fh_strset *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i <= s->mask; i++)
                for (entry *e = s->slots[i], *n; e; e = n) {
                        n = e->next;
                        free(e);
                }
        free(s->slots);
        free(s);
        return NULL;
}

static void grow(fh_strset *s) {
        size_t nmask = s->mask * 2 + 1;
        entry **slots = fh_calloc(nmask + 1, sizeof(*slots));

        for (size_t i = 0; i <= s->mask; i++)
                for (entry *e = s->slots[i], *n; e; e = n) {
                        n = e->next;
                        e->next = slots[e->hash & nmask];
                        slots[e->hash & nmask] = e;
                }
        free(s->slots);
        s->slots = slots;
        s->mask = nmask;
}

void fh_strset_add(fh_strset *s, const char *str) {
        uint64_t h = hash_str(str);
        size_t len = strlen(str);

        for (entry *e = s->slots[h & s->mask]; e; e = e->next)
                if (e->hash == h && !strcmp(e->str, str))
                        return;
        if (s->n + 1 > s->mask)
                grow(s);
        entry *e = fh_malloc(sizeof(*e) + len + 1);
        e->hash = h;
        memcpy(e->str, str, len + 1);
        e->next = s->slots[h & s->mask];
        s->slots[h & s->mask] = e;
        s->n++;
}

bool fh_strset_take(fh_strset *s, const char *str) {
        uint64_t h = hash_str(str);

        for (entry **pp = &s->slots[h & s->mask]; *pp; pp = &(*pp)->next)
                if ((*pp)->hash == h && !strcmp((*pp)->str, str)) {
                        entry *e = *pp;
                        *pp = e->next;
                        free(e);
                        s->n--;
                        return true;
                }
        return false;
}

void fh_strset_move(fh_strset *into, fh_strset *from) {
        for (size_t i = 0; i <= from->mask; i++)
                for (entry *e = from->slots[i], *n; e; e = n) {
                        n = e->next;
                        fh_strset_add(into, e->str);
                        free(e);
                }
        memset(from->slots, 0, (from->mask + 1) * sizeof(*from->slots));
        from->n = 0;
}

size_t fh_strset_size(const fh_strset *s) {
        return s->n;
}

static const char *string_field(const char *json, size_t len, const char *name, size_t *ret_len) {
        char pat[32];
        size_t pl = (size_t) snprintf(pat, sizeof(pat), "\"%s\":\"", name);
        const char *end = json + len;

        for (const char *p = json; p + pl <= end; p++)
                if (!memcmp(p, pat, pl)) {
                        const char *v = p + pl, *q = v;
                        while (q < end && *q != '"')
                                q++;
                        if (q == end)
                                return NULL;
                        *ret_len = (size_t) (q - v);
                        return v;
                }
        return NULL;
}

int fh_alert_dedupe_key(const char *json, size_t len, char *buf, size_t n) {
        size_t la = 0, le = 0, lt = 0;   /* string_field sets them only when found */
        const char *a = string_field(json, len, "alert_id", &la);
        const char *e = string_field(json, len, "event", &le);
        const char *t = string_field(json, len, "ts", &lt);
        int64_t ts_ms;

        /* ts back to epoch ms: the key must not depend on the time zone the
         * event was written in, which may have changed since. */
        if (!a || !e || !t || fh_time_parse_rfc3339(t, lt, &ts_ms, NULL) < 0 ||
            fh_alert_key_of(a, la, e, le, ts_ms, buf, n) < 0)
                return -EINVAL;
        return 0;
}

static rd_kafka_t *make_client(const fh_daemon_config *cfg, rd_kafka_type_t type, char *err, size_t errlen) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();

        if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) != RD_KAFKA_CONF_OK)
                goto fail;
        for (size_t i = 0; i < cfg->kafka_props.n; i++)
                if (rd_kafka_conf_set(conf, cfg->kafka_props.v[i].key, cfg->kafka_props.v[i].value, err, errlen) != RD_KAFKA_CONF_OK)
                        goto fail;
        if (type == RD_KAFKA_CONSUMER &&
            (rd_kafka_conf_set(conf, "group.id", "fenghuo-read-back", err, errlen) != RD_KAFKA_CONF_OK ||
             rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != RD_KAFKA_CONF_OK ||
             rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen) != RD_KAFKA_CONF_OK ||
             rd_kafka_conf_set(conf, "fetch.message.max.bytes", "67108864", err, errlen) != RD_KAFKA_CONF_OK))
                goto fail;
        rd_kafka_t *rk = rd_kafka_new(type, conf, err, errlen);
        if (!rk)
                goto fail;   /* only a successful rd_kafka_new() takes conf */
        return rk;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

int fh_kafka_watermarks(const fh_daemon_config *cfg, const char *topic, fh_offsets *ret, char *err, size_t errlen) {
        rd_kafka_t *rk = make_client(cfg, RD_KAFKA_PRODUCER, err, errlen);
        const rd_kafka_metadata_t *md = NULL;
        int r = 0;

        if (!rk)
                return -EINVAL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (e || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(err, errlen, "metadata of %s: %s", topic,
                         rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
                r = -EIO;
                goto out;
        }
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
                int32_t p = md->topics[0].partitions[i].id;
                int64_t lo, hi;
                e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
                if (e) {
                        snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, p, rd_kafka_err2str(e));
                        r = -EIO;
                        goto out;
                }
                fh_offsets_add(ret, topic, p, hi);
        }
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return r;
}

int fh_kafka_read_to_end(const fh_daemon_config *cfg, const char *topic, const fh_offsets *from, int timeout_ms,
                         fh_message_fn fn, void *userdata, char *err, size_t errlen) {
        fh_offsets ends = { 0 };
        rd_kafka_t *rk;
        int r = fh_kafka_watermarks(cfg, topic, &ends, err, errlen);

        if (r < 0)
                return r;
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new((int) ends.n + 1);
        int remaining = 0;
        for (size_t i = 0; i < ends.n; i++) {
                int64_t start = from ? fh_offsets_get(from, topic, ends.v[i].partition) : RD_KAFKA_OFFSET_BEGINNING;
                if (from && (start < 0 || start >= ends.v[i].offset))
                        continue;
                if (!from && ends.v[i].offset == 0)
                        continue;
                rd_kafka_topic_partition_list_add(parts, topic, ends.v[i].partition)->offset = start;
                remaining++;
        }
        rk = remaining ? make_client(cfg, RD_KAFKA_CONSUMER, err, errlen) : NULL;
        if (remaining && !rk)
                r = -EINVAL;
        if (rk) {
                rd_kafka_poll_set_consumer(rk);
                rd_kafka_assign(rk, parts);
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                while (remaining > 0) {
                        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                        clock_gettime(CLOCK_MONOTONIC, &t1);
                        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms) {
                                snprintf(err, errlen, "reading %s did not reach its end within %d ms", topic, timeout_ms);
                                if (m)
                                        rd_kafka_message_destroy(m);
                                r = -ETIMEDOUT;
                                break;
                        }
                        if (!m)
                                continue;
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                remaining--;
                        else if (!m->err)
                                fn(userdata, m);
                        rd_kafka_message_destroy(m);
                }
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        rd_kafka_topic_partition_list_destroy(parts);
        fh_offsets_clear(&ends);
        return r;
}

typedef struct scan {
        fh_key_filter want;
        void *userdata;
        fh_strset *into;
        long count;
} scan;

static void scan_one(void *userdata, const rd_kafka_message_t *m) {
        scan *s = userdata;
        char key[512];

        if (s->want && !s->want(s->userdata, m->key, m->key_len))
                return;
        if (fh_alert_dedupe_key(m->payload, m->len, key, sizeof(key)) == 0 ||
            fh_cap_dedupe_key(m->payload, m->len, key, sizeof(key)) == 0) {
                fh_strset_add(s->into, key);
                s->count++;
        }
}

long fh_kafka_scan_alerts(const fh_daemon_config *cfg, const char *topic, const fh_offsets *from,
                          fh_key_filter want, void *userdata, fh_strset *into, int timeout_ms,
                          char *err, size_t errlen) {
        scan s = { want, userdata, into, 0 };
        int r = fh_kafka_read_to_end(cfg, topic, from, timeout_ms, scan_one, &s, err, errlen);
        return r < 0 ? r : s.count;
}

int fh_cap_dedupe_key(const char *xml, size_t len, char *buf, size_t n) {
        static const char open[] = "<identifier>";
        /* fh_cap_write puts it within the first lines: no need to search
         * a whole message. */
        size_t lim = len < 512 ? len : 512;
        const char *a = xml && len > 5 && !memcmp(xml, "<?xml", 5) ? memmem(xml, lim, open, sizeof(open) - 1) : NULL;
        if (!a)
                return -EINVAL;
        a += sizeof(open) - 1;
        const char *b = memchr(a, '<', (size_t) (xml + len - a));
        if (!b || b == a || (size_t) (b - a) >= n)
                return -EINVAL;
        memcpy(buf, a, (size_t) (b - a));
        buf[b - a] = 0;
        return 0;
}

long fh_kafka_scan_published(const fh_daemon_config *cfg, const fh_offsets *from, fh_key_filter want, void *userdata,
                             fh_strset *into, int timeout_ms, char *err, size_t errlen) {
        const char *topics[] = { cfg->alerts_topic, cfg->cap_topic };
        long total = 0;

        for (size_t i = 0; i < 2; i++) {
                if (!topics[i])
                        continue;
                long n = fh_kafka_scan_alerts(cfg, topics[i], from, want, userdata, into, timeout_ms, err, errlen);
                if (n < 0)
                        return n;
                total += n;
        }
        return total;
}
