/* Escalation: a red alert nobody has acknowledged within
 * console.ack_timeout becomes an `unacknowledged` event on the alerts
 * topic (docs/integration.md), produced with librdkafka's idempotent
 * producer, keyed by sensor like every alert.
 *
 * Once per alert, also across console restarts and several consoles: the
 * clock is "<prefix>red_since:<alert_id>" (SET NX by the first console that
 * sees the alert red), and only the console whose SET NX of
 * "<prefix>escalated:<alert_id>" succeeds produces. A failed delivery
 * deletes that key so the next round retries.
 *
 * The clock starts when the alert turned red, not when a console first
 * looked: the stream entry of that event, whose id is the wall time Redis
 * wrote it at (so a replayed storm with old timestamps does not escalate
 * at once). A console that was down while an alert turned red therefore
 * escalates it as soon as it is back, if ack_timeout has passed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "fenghuo/buf.h"
#include "console_internal.h"

#define KEEP_S "2592000"       /* 30 days: longer than any alert needs */
#define SCAN_BATCH "1000"      /* stream entries per XREVRANGE */
#define SCAN_MAX 200000        /* entries read back to find when alerts turned red */

struct fh_escalator {
        fh_console *con;
        const fh_console_config *cfg;
        rd_kafka_t *rk;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stopping;
        int64_t period_ms;
        unsigned long produced;
};

typedef struct delivery {
        fh_escalator *e;
        char key[];            /* the escalated:<alert_id> key */
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        delivery *d = m->_private;
        if (!d)
                return;
        if (m->err) {
                fprintf(stderr, "fenghuo console: escalation not delivered (%s), retrying later\n",
                        rd_kafka_err2str(m->err));
                freeReplyObject(fh_console_redis(d->e->con, 2, "DEL", d->key));
        } else {
                pthread_mutex_lock(&d->e->lock);
                d->e->produced++;
                pthread_mutex_unlock(&d->e->lock);
        }
        free(d);
}

/* The JSON value of a top-level string member of an event the daemon wrote;
 * "" when absent. Such members hold no escapes before the free text
 * (message), which is taken whole below. */
static void member(const char *json, const char *name, char *out, size_t n) {
        char pat[64];
        snprintf(pat, sizeof(pat), "\"%s\":\"", name);
        const char *p = strstr(json, pat);
        out[0] = '\0';
        if (!p)
                return;
        p += strlen(pat);
        size_t len = strcspn(p, "\"\\");
        if (len < n) {
                memcpy(out, p, len);
                out[len] = '\0';
        }
}

static void iso_now(int tz_min, char *out, size_t n) {
        time_t t = time(NULL) + tz_min * 60;
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + k, n - k, "%c%02d:%02d", tz_min < 0 ? '-' : '+', abs(tz_min) / 60, abs(tz_min) % 60);
}

static void escalate(fh_escalator *e, const char *json, size_t json_len, const char *alert_id, int64_t since) {
        const fh_console_config *cfg = e->cfg;
        char key[800], sensor[128], rule[128], ts[40];
        snprintf(key, sizeof(key), "%sescalated:%s", cfg->key_prefix, alert_id);
        redisReply *rep = fh_console_redis(e->con, 6, "SET", key, "1", "NX", "EX", KEEP_S);
        bool mine = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (!mine)
                return;

        member(json, "sensor", sensor, sizeof(sensor));
        member(json, "rule", rule, sizeof(rule));
        iso_now(cfg->tz_offset_min, ts, sizeof(ts));
        int64_t waited = (fh_console_now_ms() - since) / 1000;
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"alert_id\":");
        fh_buf_json_string(&b, alert_id, strlen(alert_id));
        fh_buf_puts(&b, ",\"event\":\"unacknowledged\",\"rule\":");
        fh_buf_json_string(&b, rule, strlen(rule));
        fh_buf_puts(&b, ",\"sensor\":");
        fh_buf_json_string(&b, sensor, strlen(sensor));
        fh_buf_printf(&b, ",\"level\":\"red\",\"severity\":1,\"ts\":\"%s\",\"unacknowledged_s\":%lld,"
                          "\"ack_timeout_s\":%lld,\"alert\":",
                      ts, (long long) waited, (long long) (cfg->ack_timeout_ms / 1000));
        fh_buf_append(&b, json, json_len);
        fh_buf_puts(&b, "}");

        delivery *d = fh_malloc(sizeof(*d) + strlen(key) + 1);
        d->e = e;
        strcpy(d->key, key);
        rd_kafka_resp_err_t err = rd_kafka_producev(e->rk, RD_KAFKA_V_TOPIC(cfg->alerts_topic),
                                                    RD_KAFKA_V_KEY(sensor, strlen(sensor)),
                                                    RD_KAFKA_V_VALUE(b.data, b.len),
                                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                    RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        fh_buf_free(&b);
        if (err) {
                fprintf(stderr, "fenghuo console: cannot produce an escalation: %s\n", rd_kafka_err2str(err));
                freeReplyObject(fh_console_redis(e->con, 2, "DEL", key));
                free(d);
        }
}

/* The stream id just before id ("ms-seq"), for reading on from there: the
 * exclusive "(id" form needs Redis 6.2, and Redis 6.0 is supported. */
static void before(const char *id, char *out, size_t n) {
        unsigned long long ms = strtoull(id, NULL, 10), seq = 0;
        const char *dash = strchr(id, '-');
        if (dash)
                seq = strtoull(dash + 1, NULL, 10);
        if (seq > 0)
                snprintf(out, n, "%llu-%llu", ms, seq - 1);
        else if (ms > 0)
                snprintf(out, n, "%llu-18446744073709551615", ms - 1);
        else
                snprintf(out, n, "0-0");        /* nothing is before: the loop ends on an empty read */
}

/* When each alert of ids[] turned red, in Redis's wall-time ms, into
 * since[] (0 for those not known yet): the newest stream entry of that
 * alert with level red, since events are written on level changes only.
 * The stream is read backwards from its end, where recent changes are, at
 * most SCAN_MAX entries; an alert not found there (or in a trimmed stream)
 * turned red before the oldest entry read, whose time it gets: red at least
 * that long. false when Redis did not answer: nothing is known then. */
static bool red_since_from_stream(fh_escalator *e, char **ids, int64_t *since, size_t n) {
        char end[80] = "+";
        size_t left = n, scanned = 0;
        int64_t oldest = fh_console_now_ms();

        while (left && scanned < SCAN_MAX) {
                redisReply *rep = fh_console_redis(e->con, 6, "XREVRANGE", e->cfg->stream, end, "-", "COUNT", SCAN_BATCH);
                if (!rep || rep->type != REDIS_REPLY_ARRAY) {
                        freeReplyObject(rep);
                        return false;
                }
                size_t got = rep->elements;
                for (size_t i = 0; i < got; i++) {
                        redisReply *en = rep->element[i];
                        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING)
                                continue;
                        oldest = atoll(en->element[0]->str);
                        before(en->element[0]->str, end, sizeof(end));
                        redisReply *kv = en->element[1];
                        for (size_t j = 0; j + 1 < kv->elements; j += 2) {
                                if (kv->element[j]->type != REDIS_REPLY_STRING || strcmp(kv->element[j]->str, "alert") ||
                                    kv->element[j + 1]->type != REDIS_REPLY_STRING)
                                        continue;
                                char id[640], level[16];
                                member(kv->element[j + 1]->str, "alert_id", id, sizeof(id));
                                member(kv->element[j + 1]->str, "level", level, sizeof(level));
                                if (strcmp(level, "red"))
                                        continue;
                                for (size_t k = 0; k < n; k++)
                                        if (!since[k] && !strcmp(ids[k], id)) {
                                                since[k] = oldest;
                                                left--;
                                        }
                        }
                }
                freeReplyObject(rep);
                scanned += got;
                if (got < (size_t) atoi(SCAN_BATCH))
                        break;
        }
        for (size_t k = 0; k < n; k++)
                if (!since[k])
                        since[k] = oldest;
        return true;
}

typedef struct candidate {
        const redisReply *event;
        char alert_id[640];
} candidate;

/* One look at the active hash. */
static void round_once(fh_escalator *e) {
        const fh_console_config *cfg = e->cfg;
        redisReply *all = fh_console_redis(e->con, 2, "HGETALL", cfg->active_hash);
        if (!all || all->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(all);
                return;
        }
        int64_t now = fh_console_now_ms();
        size_t n = 0, missing = 0;
        candidate *cand = fh_calloc(all->elements / 2 + 1, sizeof(*cand));
        int64_t *since = fh_calloc(all->elements / 2 + 1, sizeof(*since));
        char **miss_ids = fh_calloc(all->elements / 2 + 1, sizeof(*miss_ids));
        int64_t *miss_since = fh_calloc(all->elements / 2 + 1, sizeof(*miss_since));
        size_t *miss_of = fh_calloc(all->elements / 2 + 1, sizeof(*miss_of));

        for (size_t i = 0; i + 1 < all->elements; i += 2) {
                const redisReply *v = all->element[i + 1];
                char level[16], key[800];
                candidate *c = &cand[n];
                member(v->str, "level", level, sizeof(level));
                member(v->str, "alert_id", c->alert_id, sizeof(c->alert_id));
                if (strcmp(level, "red") || !*c->alert_id)
                        continue;
                snprintf(key, sizeof(key), "%sack:%s", cfg->key_prefix, c->alert_id);
                redisReply *ack = fh_console_redis(e->con, 2, "EXISTS", key);
                bool acked = ack && ack->type == REDIS_REPLY_INTEGER && ack->integer > 0;
                freeReplyObject(ack);
                if (acked)
                        continue;
                c->event = v;
                snprintf(key, sizeof(key), "%sred_since:%s", cfg->key_prefix, c->alert_id);
                redisReply *got = fh_console_redis(e->con, 2, "GET", key);
                if (got && got->type == REDIS_REPLY_STRING)
                        since[n] = atoll(got->str);
                else {
                        miss_ids[missing] = c->alert_id;
                        miss_of[missing++] = n;
                }
                freeReplyObject(got);
                n++;
        }
        /* Alerts no console has seen red yet: when they turned red. */
        if (missing && !red_since_from_stream(e, miss_ids, miss_since, missing))
                missing = 0, n = 0;     /* Redis is away: next round */
        for (size_t m = 0; m < missing; m++) {
                char key[800], v[32];
                size_t i = miss_of[m];
                snprintf(key, sizeof(key), "%sred_since:%s", cfg->key_prefix, cand[i].alert_id);
                snprintf(v, sizeof(v), "%lld", (long long) miss_since[m]);
                freeReplyObject(fh_console_redis(e->con, 6, "SET", key, v, "NX", "EX", KEEP_S));
                /* Another console may have been first. */
                redisReply *got = fh_console_redis(e->con, 2, "GET", key);
                since[i] = got && got->type == REDIS_REPLY_STRING ? atoll(got->str) : miss_since[m];
                freeReplyObject(got);
        }
        for (size_t i = 0; i < n; i++)
                if (since[i] && now - since[i] >= cfg->ack_timeout_ms)
                        escalate(e, cand[i].event->str, cand[i].event->len, cand[i].alert_id, since[i]);
        free(cand);
        free(since);
        free(miss_ids);
        free(miss_since);
        free(miss_of);
        freeReplyObject(all);
}

static void *run(void *arg) {
        fh_escalator *e = arg;

        pthread_mutex_lock(&e->lock);
        while (!e->stopping) {
                pthread_mutex_unlock(&e->lock);
                round_once(e);
                rd_kafka_poll(e->rk, 0);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += e->period_ms / 1000;
                until.tv_nsec += (e->period_ms % 1000) * 1000000;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
                pthread_mutex_lock(&e->lock);
                while (!e->stopping && pthread_cond_timedwait(&e->cond, &e->lock, &until) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

int fh_escalator_start(fh_escalator **ret, fh_console *con, const fh_console_config *cfg, char *err,
                       size_t err_len) {
        char kerr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        bool bad = false;

        for (size_t i = 0; i < cfg->kafka_props.n && !bad; i++)
                bad = rd_kafka_conf_set(conf, cfg->kafka_props.v[i].key, cfg->kafka_props.v[i].value, kerr,
                                        sizeof(kerr)) != RD_KAFKA_CONF_OK;
        if (!bad)
                bad = rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK ||
                      rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK;
        if (bad) {
                snprintf(err, err_len, "kafka: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!rk) {
                snprintf(err, err_len, "kafka: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        fh_escalator *e = fh_calloc(1, sizeof(*e));
        e->con = con;
        e->cfg = cfg;
        e->rk = rk;
        e->period_ms = cfg->ack_timeout_ms < 10000 ? 200 : 5000;
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->cond, NULL);
        int rc = pthread_create(&e->thread, NULL, run, e);
        if (rc) {
                snprintf(err, err_len, "cannot start a thread: %s", strerror(rc));
                rd_kafka_destroy(rk);
                free(e);
                return -rc;
        }
        *ret = e;
        return 0;
}

unsigned long fh_escalator_produced(fh_escalator *e) {
        pthread_mutex_lock(&e->lock);
        unsigned long n = e->produced;
        pthread_mutex_unlock(&e->lock);
        return n;
}

void fh_escalator_stop(fh_escalator *e) {
        if (!e)
                return;
        pthread_mutex_lock(&e->lock);
        e->stopping = true;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
        rd_kafka_flush(e->rk, 5000);
        rd_kafka_destroy(e->rk);
        pthread_cond_destroy(&e->cond);
        pthread_mutex_destroy(&e->lock);
        free(e);
}
