#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <yaml.h>

#include "fenghuo/buf.h"
#include "fenghuo/cap.h"
#include "fenghuo/timeutil.h"
#include "config.h"

#define CONFIG_FILE_MAX (1u << 20)
#define SECRET_MAX 4096

typedef struct ctx {
        yaml_node_t *key;          /* the key being read, for "unknown key" */
        yaml_document_t *doc;
        const char *file;
        fh_diags *diags;
        unsigned redis_secrets;    /* how many of password, password_file, password_credential */
        unsigned kafka_secrets;    /* likewise for sasl_password_file, sasl_password_credential */
        char *sasl_password;       /* from one of those, for kafka.properties */
} ctx;

static void err(ctx *c, const yaml_node_t *n, const char *fmt, const char *a, const char *b) {
        fh_diags_error(c->diags, c->file, n ? (unsigned) n->start_mark.line + 1 : 0,
                       n ? (unsigned) n->start_mark.column + 1 : 0, fmt, a, b);
}

static const char *scalar(ctx *c, const yaml_node_t *n, const char *key) {
        if (!n || n->type != YAML_SCALAR_NODE) {
                err(c, n, "'%s' must be a single value%s", key, "");
                return NULL;
        }
        return (const char *) n->data.scalar.value;
}

static void set_str(ctx *c, const yaml_node_t *n, const char *key, char **dst) {
        const char *s = scalar(c, n, key);
        if (!s)
                return;
        free(*dst);
        *dst = fh_strdup(s);
}

static void set_duration(ctx *c, const yaml_node_t *n, const char *key, int64_t *dst) {
        const char *s = scalar(c, n, key);
        if (s && fh_duration_parse(s, strlen(s), dst) < 0)
                err(c, n, "'%s' must be a duration like 30s, 10m, 1h or 1d, not '%s'", key, s);
}

static void set_bool(ctx *c, const yaml_node_t *n, const char *key, bool *dst) {
        const char *s = scalar(c, n, key);
        if (!s)
                return;
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
                *dst = true;
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
                *dst = false;
        else
                err(c, n, "'%s' must be true or false, not '%s'", key, s);
}

static void set_long(ctx *c, const yaml_node_t *n, const char *key, long min, long max, long *dst) {
        const char *s = scalar(c, n, key);
        char *end;
        long v;

        if (!s)
                return;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max) {
                char range[64];
                snprintf(range, sizeof(range), "%ld..%ld", min, max);
                err(c, n, "'%s' must be a whole number in %s", key, range);
                return;
        }
        *dst = v;
}

/* The librdkafka properties the daemon's promises rest on, each with the
 * promise. The daemon sets them itself; a user's value would silently
 * switch the promise off, so the configuration refuses them. Aliases are
 * listed too: librdkafka applies them to the same setting. */
static const struct guarded_prop {
        const char *key;
        const char *why;
} guarded_props[] = {
        { "enable.idempotence", "the alerts producer is idempotent, so a retried alert is written once and in order" },
        { "acks", "idempotence needs acks=all: an alert is confirmed only once every in-sync replica has it" },
        { "request.required.acks", "idempotence needs acks=all: an alert is confirmed only once every in-sync replica has it" },
        { "message.timeout.ms", "an alert is never given up on: it waits, and consumption pauses, while Kafka is away" },
        { "delivery.timeout.ms", "an alert is never given up on: it waits, and consumption pauses, while Kafka is away" },
        { "retries", "an alert is never given up on: it waits, and consumption pauses, while Kafka is away" },
        { "message.send.max.retries", "an alert is never given up on: it waits, and consumption pauses, while Kafka is away" },
        { "transactional.id", "the alerts producer is not transactional; after a crash alerts are de-duplicated by reading the topic back" },
        { "partitioner", "alerts are keyed by sensor, one partition per sensor, which the read-back after a crash relies on" },
        { "enable.auto.offset.store", "an offset is stored only once every alert of its reading is delivered" },
        { "enable.auto.commit", "offsets are committed only as the daemon's delivery and state tracking allow" },
        { "auto.offset.reset", "a partition without a committed offset is read from its start, so no reading is skipped" },
        { "isolation.level", "readings of aborted transactions must never raise alerts (read_committed)" },
        { "partition.assignment.strategy", "the state hand-over on a rebalance works with eager assignment only, not cooperative" },
        { "group.id", "set it with kafka.group_id: the hand-over keys and the read-back use it too" },
        { "bootstrap.servers", "set it with kafka.brokers" },
        { "metadata.broker.list", "set it with kafka.brokers" },
};

const char *fh_kafka_prop_guarded(const char *key) {
        for (size_t i = 0; i < FH_ARRAY_SIZE(guarded_props); i++)
                if (!strcmp(key, guarded_props[i].key))
                        return guarded_props[i].why;
        return NULL;
}

/* librdkafka quotes a refused value in its message ("Invalid value "x" for
 * configuration property ..."); the value may be a secret under a mistyped
 * key, so every copy of it is masked. */
static void scrub(char *msg, const char *value) {
        size_t vl = strlen(value);
        char *p = msg;

        if (vl == 0)
                return;
        while ((p = strstr(p, value)) != NULL) {
                if (vl < 3)
                        break;   /* the mask would not fit; the message is then cut below */
                memmove(p + 3, p + vl, strlen(p + vl) + 1);
                memcpy(p, "***", 3);
                p += 3;
        }
        /* A value too short to mask in place: cut the message before it. */
        if (p)
                *p = '\0';
}

int fh_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen) {
        if (rd_kafka_conf_set(conf, key, value, err, errlen) == RD_KAFKA_CONF_OK)
                return 0;
        scrub(err, value);
        return -EINVAL;
}

static void set_kvs(ctx *c, const yaml_node_t *n, const char *key, fh_kvs *dst) {
        rd_kafka_conf_t *probe;

        if (!n || n->type != YAML_MAPPING_NODE) {
                err(c, n, "'%s' must be a mapping of librdkafka property names to values%s", key, "");
                return;
        }
        /* Each property is tried on a scratch configuration here, so that
         * `run --check` reports it with its position. */
        probe = rd_kafka_conf_new();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
                yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
                const char *ks = scalar(c, k, key), *vs = ks ? scalar(c, v, ks) : NULL;
                const char *why;
                char msg[512];

                if (!ks || !vs)
                        continue;
                if ((why = fh_kafka_prop_guarded(ks)) != NULL) {
                        err(c, k, "Kafka property '%s' cannot be set: %s", ks, why);
                        continue;
                }
                if (fh_kafka_conf_set(probe, ks, vs, msg, sizeof(msg)) < 0) {
                        err(c, k, "bad Kafka property '%s': %s", ks, msg);
                        continue;
                }
                dst->v = fh_realloc(dst->v, (dst->n + 1) * sizeof(*dst->v));
                dst->v[dst->n++] = (fh_kv) { fh_strdup(ks), fh_strdup(vs) };
        }
        rd_kafka_conf_destroy(probe);
}

static void errf(ctx *c, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(ctx *c, const yaml_node_t *n, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        err(c, n, "%s%s", msg, "");
}

/* A secret from a file rather than from the configuration (which is often
 * world-readable and kept in version control): the whole file, less one
 * final newline. With credential, value is the name of a systemd
 * credential (LoadCredential=NAME:PATH in the unit), read from
 * $CREDENTIALS_DIRECTORY. No message ever shows the content. */
static void set_secret(ctx *c, const yaml_node_t *n, const char *key, bool credential, char **dst) {
        const char *v = scalar(c, n, key);
        char path[4096], buf[SECRET_MAX + 2];
        struct stat st;
        ssize_t len;
        int fd;

        if (!v)
                return;
        if (credential) {
                const char *dir = getenv("CREDENTIALS_DIRECTORY");
                if (!v[0] || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..")) {
                        err(c, n, "'%s' must be the name of a systemd credential, not a path ('%s')", key, v);
                        return;
                }
                if (!dir || !dir[0]) {
                        err(c, n, "'%s' names a systemd credential, but $CREDENTIALS_DIRECTORY is not set "
                                  "(LoadCredential=%s:... in the unit)", key, v);
                        return;
                }
                snprintf(path, sizeof(path), "%s/%s", dir, v);
        } else
                snprintf(path, sizeof(path), "%s", v);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                errf(c, n, "'%s': cannot read %s: %s", key, path, strerror(errno));
                return;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                errf(c, n, "'%s': %s is not a regular file", key, path);
                return;
        }
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len < 0 || (size_t) len > SECRET_MAX) {
                errf(c, n, len < 0 ? "'%s': cannot read %s" : "'%s': %s is longer than a secret can be (4096 bytes)",
                     key, path);
                return;
        }
        buf[len] = '\0';
        if (len > 0 && buf[len - 1] == '\n')
                buf[--len] = '\0';
        if (len > 0 && buf[len - 1] == '\r')
                buf[--len] = '\0';
        if (len == 0 || strlen(buf) != (size_t) len || strpbrk(buf, "\r\n")) {
                errf(c, n, len == 0 ? "'%s': %s is empty" : "'%s': %s must hold the secret on one line, nothing else",
                     key, path);
                explicit_bzero(buf, sizeof(buf));
                return;
        }
        if (*dst) {
                explicit_bzero(*dst, strlen(*dst));
                free(*dst);
        }
        *dst = fh_strdup(buf);
        explicit_bzero(buf, sizeof(buf));
}

typedef void (*key_fn)(ctx *c, const char *key, yaml_node_t *value, void *target);

static void each_key(ctx *c, yaml_node_t *map, const char *what, key_fn fn, void *target) {
        if (!map || map->type != YAML_MAPPING_NODE) {
                err(c, map, "%s must be a mapping of keys to values%s", what, "");
                return;
        }
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
                if (!k || k->type != YAML_SCALAR_NODE) {
                        err(c, k, "keys of %s must be plain names%s", what, "");
                        continue;
                }
                c->key = k;
                fn(c, (const char *) k->data.scalar.value, yaml_document_get_node(c->doc, p->value), target);
        }
}

static void unknown(ctx *c, yaml_node_t *v, const char *key, const char *where) {
        (void) v;
        err(c, c->key, "unknown key '%s' in %s", key, where);
}

static void kafka_topics_key(ctx *c, const char *key, yaml_node_t *v, void *t) {
        fh_daemon_config *cfg = t;
        fh_kind k;

        if (fh_kind_from_string(key, strlen(key), &k) < 0) {
                err(c, c->key, "unknown station kind '%s' in kafka.topics (rain, water_level, landslide, bridge)%s", key, "");
                return;
        }
        set_str(c, v, key, &cfg->topics[k]);
}

static void kafka_key(ctx *c, const char *key, yaml_node_t *v, void *t) {
        fh_daemon_config *cfg = t;
        long n = (long) cfg->max_in_flight;

        if (!strcmp(key, "brokers"))
                set_str(c, v, key, &cfg->brokers);
        else if (!strcmp(key, "group_id"))
                set_str(c, v, key, &cfg->group_id);
        else if (!strcmp(key, "topics"))
                each_key(c, v, "kafka.topics", kafka_topics_key, cfg);
        else if (!strcmp(key, "alerts_topic"))
                set_str(c, v, key, &cfg->alerts_topic);
        else if (!strcmp(key, "dead_letter_topic"))
                set_str(c, v, key, &cfg->dead_letter_topic);
        else if (!strcmp(key, "state_topic"))
                set_str(c, v, key, &cfg->state_topic);
        else if (!strcmp(key, "cap_topic"))
                set_str(c, v, key, &cfg->cap_topic);
        else if (!strcmp(key, "properties"))
                set_kvs(c, v, key, &cfg->kafka_props);
        else if (!strcmp(key, "consumer_properties"))
                set_kvs(c, v, key, &cfg->consumer_props);
        else if (!strcmp(key, "producer_properties"))
                set_kvs(c, v, key, &cfg->producer_props);
        else if (!strcmp(key, "max_in_flight")) {
                set_long(c, v, key, 100, 10000000, &n);
                cfg->max_in_flight = (size_t) n;
        } else if (!strcmp(key, "sasl_password_file") || !strcmp(key, "sasl_password_credential")) {
                c->kafka_secrets++;
                set_secret(c, v, key, key[14] == 'c', &c->sasl_password);
        } else if (!strcmp(key, "max_pending_readings")) {
                long m = (long) cfg->max_pending;
                set_long(c, v, key, 1000, 100000000, &m);
                cfg->max_pending = (size_t) m;
        } else
                unknown(c, v, key, "kafka");
}

static void redis_key(ctx *c, const char *key, yaml_node_t *v, void *t) {
        fh_daemon_config *cfg = t;
        fh_redis_config *r = &cfg->redis;
        long n;

        if (!strcmp(key, "host"))
                set_str(c, v, key, &r->host);
        else if (!strcmp(key, "port")) {
                n = r->port;
                set_long(c, v, key, 1, 65535, &n);
                r->port = (int) n;
        } else if (!strcmp(key, "username"))
                set_str(c, v, key, &r->username);
        else if (!strcmp(key, "password")) {
                c->redis_secrets++;
                set_str(c, v, key, &r->password);
        } else if (!strcmp(key, "password_file") || !strcmp(key, "password_credential")) {
                c->redis_secrets++;
                set_secret(c, v, key, key[9] == 'c', &r->password);
        }
        else if (!strcmp(key, "db")) {
                n = r->db;
                set_long(c, v, key, 0, 1000, &n);
                r->db = (int) n;
        } else if (!strcmp(key, "channel"))
                set_str(c, v, key, &r->channel);
        else if (!strcmp(key, "stream"))
                set_str(c, v, key, &r->stream);
        else if (!strcmp(key, "stream_maxlen"))
                set_long(c, v, key, 1000, 1000000000, &r->stream_maxlen);
        else if (!strcmp(key, "active_hash"))
                set_str(c, v, key, &r->active_hash);
        else if (!strcmp(key, "max_backlog")) {
                n = (long) r->max_backlog;
                set_long(c, v, key, 10, 100000000, &n);
                r->max_backlog = (size_t) n;
        } else if (!strcmp(key, "enabled"))
                set_bool(c, v, key, &cfg->redis_enabled);
        else
                unknown(c, v, key, "redis");
}

static void top_key(ctx *c, const char *key, yaml_node_t *v, void *t) {
        fh_daemon_config *cfg = t;

        if (!strcmp(key, "rules"))
                set_str(c, v, key, &cfg->rules);
        else if (!strcmp(key, "stations"))
                set_str(c, v, key, &cfg->stations);
        else if (!strcmp(key, "state_dir"))
                set_str(c, v, key, &cfg->state_dir);
        else if (!strcmp(key, "metrics_file"))
                set_str(c, v, key, &cfg->metrics_file);
        else if (!strcmp(key, "cap_dir"))
                set_str(c, v, key, &cfg->cap_dir);
        else if (!strcmp(key, "cap_unit"))
                set_str(c, v, key, &cfg->cap_unit);
        else if (!strcmp(key, "cap_sender"))
                set_str(c, v, key, &cfg->cap_sender);
        else if (!strcmp(key, "cap_status")) {
                const char *s = scalar(c, v, key);
                if (s && !strcmp(s, "Actual"))
                        cfg->cap_exercise = false;
                else if (s && !strcmp(s, "Exercise"))
                        cfg->cap_exercise = true;
                else if (s)
                        err(c, v, "'%s' must be Actual or Exercise (CAP 1.2 status), not '%s'", key, s);
        }
        else if (!strcmp(key, "tick"))
                set_duration(c, v, key, &cfg->tick_ms);
        else if (!strcmp(key, "lateness"))
                set_duration(c, v, key, &cfg->lateness_ms);
        else if (!strcmp(key, "future_limit"))
                set_duration(c, v, key, &cfg->future_ms);
        else if (!strcmp(key, "max_readings_per_minute"))
                set_long(c, v, key, 0, 1000000000, &cfg->max_readings_per_minute);
        else if (!strcmp(key, "max_window_samples"))
                set_long(c, v, key, 0, 1000000000, &cfg->max_window_samples);
        else if (!strcmp(key, "shards"))
                set_long(c, v, key, 0, FH_SHARDS_MAX, &cfg->shards);
        else if (!strcmp(key, "shutdown_timeout"))
                set_duration(c, v, key, &cfg->shutdown_timeout_ms);
        else if (!strcmp(key, "checkpoint_interval"))
                set_duration(c, v, key, &cfg->checkpoint_ms);
        else if (!strcmp(key, "stats_interval"))
                set_duration(c, v, key, &cfg->stats_ms);
        else if (!strcmp(key, "timezone")) {
                const char *s = scalar(c, v, key);
                if (s && fh_offset_parse(s, strlen(s), &cfg->tz_offset_min) < 0)
                        err(c, v, "'%s' must be a UTC offset like +08:00, not '%s'", key, s);
        } else if (!strcmp(key, "log_level")) {
                static const char *const names[] = { "error", "warning", "notice", "info", "debug" };
                const char *s = scalar(c, v, key);
                size_t i;
                if (!s)
                        return;
                for (i = 0; i < FH_ARRAY_SIZE(names); i++)
                        if (!strcmp(s, names[i]))
                                break;
                if (i == FH_ARRAY_SIZE(names))
                        err(c, v, "'%s' must be error, warning, notice, info or debug, not '%s'", key, s);
                else
                        cfg->log_level = LOG_ERR + (int) i;
        } else if (!strcmp(key, "clock")) {
                const char *s = scalar(c, v, key);
                if (s && !strcmp(s, "event"))
                        cfg->event_clock = true;
                else if (s && !strcmp(s, "wall"))
                        cfg->event_clock = false;
                else if (s)
                        err(c, v, "'%s' must be wall or event, not '%s'", key, s);
        } else if (!strcmp(key, "stdout"))
                set_bool(c, v, key, &cfg->stdout_alerts);
        else if (!strcmp(key, "kafka"))
                each_key(c, v, "kafka", kafka_key, cfg);
        else if (!strcmp(key, "redis")) {
                cfg->redis_enabled = true;
                each_key(c, v, "redis", redis_key, cfg);
        } else if (!strcmp(key, "console"))
                ;       /* `fenghuo console` reads it (src/console/console_config.c) */
        else
                unknown(c, v, key, "the configuration");
}

static void defaults(fh_daemon_config *c) {
        *c = (fh_daemon_config) {
                .tick_ms = 60000,
                .lateness_ms = 3600000,
                .future_ms = 600000,
                .max_readings_per_minute = 60,
                .max_window_samples = 50000,
                /* One per online CPU: measured faster than one on two
                 * cores (docs/performance.md §2, 2026-12-07). */
                .shards = 0,
                .tz_offset_min = 480,
                .log_level = LOG_INFO,
                .shutdown_timeout_ms = 10000,
                .checkpoint_ms = 30000,
                .stats_ms = 60000,
                .max_in_flight = 100000,
                .max_pending = 1000000,
        };
        fh_redis_config_defaults(&c->redis);
        /* The defaults are static strings; own copies so free is uniform. */
        c->redis.host = fh_strdup(c->redis.host);
        c->redis.channel = fh_strdup(c->redis.channel);
        c->redis.stream = fh_strdup(c->redis.stream);
        c->redis.active_hash = fh_strdup(c->redis.active_hash);
        c->group_id = fh_strdup("fenghuo");
}

int fh_daemon_config_load(const char *path, fh_daemon_config *ret, fh_diags *diags) {
        fh_daemon_config cfg;
        yaml_parser_t parser;
        yaml_document_t doc;
        FILE *f;
        size_t before = diags->n_errors;

        defaults(&cfg);
        cfg.path = fh_strdup(path);
        f = fopen(path, "re");
        if (!f) {
                fh_diags_error(diags, path, 0, 0, "cannot read configuration: %s", strerror(errno));
                fh_daemon_config_free(&cfg);
                return -EINVAL;
        }
        yaml_parser_initialize(&parser);
        yaml_parser_set_input_file(&parser, f);
        if (!yaml_parser_load(&parser, &doc)) {
                fh_diags_error(diags, path, (unsigned) parser.problem_mark.line + 1,
                               (unsigned) parser.problem_mark.column + 1, "YAML: %s",
                               parser.problem ? parser.problem : "syntax error");
                yaml_parser_delete(&parser);
                fclose(f);
                fh_daemon_config_free(&cfg);
                return -EINVAL;
        }
        ctx c = { .doc = &doc, .file = path, .diags = diags };
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root)
                each_key(&c, root, "the configuration", top_key, &cfg);
        else
                fh_diags_error(diags, path, 0, 0, "the configuration file is empty");

        if (root && !cfg.rules)
                fh_diags_error(diags, path, 0, 0, "'rules' (the rules directory) is required");
        if (root && !cfg.stations)
                fh_diags_error(diags, path, 0, 0, "'stations' (the station registry) is required");
        if (root && !cfg.brokers)
                fh_diags_error(diags, path, 0, 0, "'kafka.brokers' is required");
        bool any_topic = false;
        for (int k = 0; k < FH_KIND__MAX; k++)
                any_topic |= cfg.topics[k] != NULL;
        if (root && !any_topic)
                fh_diags_error(diags, path, 0, 0, "'kafka.topics' must name at least one input topic");
        if (cfg.tick_ms <= 0)
                fh_diags_error(diags, path, 0, 0, "'tick' must be longer than 0s");
        if (cfg.cap_topic || cfg.cap_dir || cfg.cap_unit || cfg.cap_sender) {
                fh_cap_config cap = FH_CAP_CONFIG_DEFAULT;
                char why[512];
                if (cfg.cap_unit)
                        cap.unit = cfg.cap_unit;
                if (cfg.cap_sender)
                        cap.sender = cfg.cap_sender;
                if (fh_cap_config_check(&cap, why, sizeof(why)) < 0)
                        fh_diags_error(diags, path, 0, 0, "cap_unit/cap_sender: %s", why);
                if (!cfg.cap_topic && !cfg.cap_dir)
                        fh_diags_error(diags, path, 0, 0, "'cap_unit' and 'cap_sender' need 'kafka.cap_topic' or "
                                                          "'cap_dir' to say where the CAP messages go");
        }
        if (c.redis_secrets > 1)
                fh_diags_error(diags, path, 0, 0, "give only one of 'redis.password', 'redis.password_file' and "
                                                  "'redis.password_credential'");
        if (cfg.redis.username && c.redis_secrets == 0)
                fh_diags_error(diags, path, 0, 0, "'redis.username' needs a password "
                                                  "('redis.password_file' or 'redis.password_credential')");
        if (c.kafka_secrets > 1)
                fh_diags_error(diags, path, 0, 0, "give only one of 'kafka.sasl_password_file' and "
                                                  "'kafka.sasl_password_credential'");
        if (c.sasl_password) {
                const fh_kvs *maps[] = { &cfg.kafka_props, &cfg.consumer_props, &cfg.producer_props };
                for (size_t m = 0; m < 3; m++)
                        for (size_t i = 0; i < maps[m]->n; i++)
                                if (!strcmp(maps[m]->v[i].key, "sasl.password"))
                                        fh_diags_error(diags, path, 0, 0, "'sasl.password' is set both as a Kafka "
                                                                          "property and from a file or credential");
                cfg.kafka_props.v = fh_realloc(cfg.kafka_props.v, (cfg.kafka_props.n + 1) * sizeof(fh_kv));
                cfg.kafka_props.v[cfg.kafka_props.n++] = (fh_kv) { fh_strdup("sasl.password"), c.sasl_password };
                c.sasl_password = NULL;
        }

        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        fclose(f);
        if (diags->n_errors > before) {
                fh_daemon_config_free(&cfg);
                return -EINVAL;
        }
        *ret = cfg;
        return 0;
}

static void kvs_free(fh_kvs *k) {
        for (size_t i = 0; i < k->n; i++) {
                free(k->v[i].key);
                free(k->v[i].value);
        }
        free(k->v);
        *k = (fh_kvs) { 0 };
}

void fh_daemon_config_free(fh_daemon_config *c) {
        free(c->path);
        free(c->rules);
        free(c->stations);
        free(c->state_dir);
        free(c->metrics_file);
        free(c->brokers);
        free(c->group_id);
        for (int k = 0; k < FH_KIND__MAX; k++)
                free(c->topics[k]);
        free(c->alerts_topic);
        free(c->dead_letter_topic);
        free(c->state_topic);
        free(c->cap_topic);
        free(c->cap_dir);
        free(c->cap_unit);
        free(c->cap_sender);
        kvs_free(&c->kafka_props);
        kvs_free(&c->consumer_props);
        kvs_free(&c->producer_props);
        free(c->redis.host);
        free(c->redis.username);
        if (c->redis.password)
                explicit_bzero(c->redis.password, strlen(c->redis.password));
        free(c->redis.password);
        free(c->redis.channel);
        free(c->redis.stream);
        free(c->redis.active_hash);
        *c = (fh_daemon_config) { 0 };
}
