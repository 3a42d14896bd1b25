/* The `console:` section of the daemon's config file; everything else in
 * the file is read by the daemon's own parser, so both processes agree on
 * the rules, stations and Redis keys. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "config.h"
#include "console.h"

static void err(fh_diags *d, const char *file, const yaml_node_t *n, const char *fmt, const char *a) {
        fh_diags_error(d, file, n ? (unsigned) n->start_mark.line + 1 : 0,
                       n ? (unsigned) n->start_mark.column + 1 : 0, fmt, a);
}

static const char *scalar(const yaml_node_t *n) {
        return n && n->type == YAML_SCALAR_NODE ? (const char *) n->data.scalar.value : NULL;
}

static void console_key(fh_console_config *c, const char *file, const char *key, const yaml_node_t *v,
                        fh_diags *d) {
        const char *s = scalar(v);

        if (!s) {
                err(d, file, v, "'console.%s' must be a single value", key);
                return;
        }
        if (!strcmp(key, "listen")) {
                free(c->listen);
                c->listen = fh_strdup(s);
        } else if (!strcmp(key, "port")) {
                char *end;
                long p = strtol(s, &end, 10);
                if (*s == '\0' || *end != '\0' || p < 0 || p > 65535)
                        err(d, file, v, "'console.port' must be a port number 0-65535, not '%s'", s);
                else
                        c->port = (int) p;
        } else if (!strcmp(key, "users_file")) {
                free(c->users_file);
                c->users_file = fh_strdup(s);
        } else if (!strcmp(key, "user_header")) {
                free(c->user_header);
                c->user_header = fh_strdup(s);
        } else if (!strcmp(key, "anonymous_read")) {
                if (!strcmp(s, "true") || !strcmp(s, "yes"))
                        c->anonymous_read = true;
                else if (!strcmp(s, "false") || !strcmp(s, "no"))
                        c->anonymous_read = false;
                else
                        err(d, file, v, "'console.anonymous_read' must be true or false, not '%s'", s);
        } else if (!strcmp(key, "session_ttl")) {
                if (fh_duration_parse(s, strlen(s), &c->session_ttl_ms) < 0 || c->session_ttl_ms < 60000)
                        err(d, file, v, "'console.session_ttl' must be a duration of 1m or more, not '%s'", s);
        } else if (!strcmp(key, "ack_timeout")) {
                if (fh_duration_parse(s, strlen(s), &c->ack_timeout_ms) < 0)
                        err(d, file, v, "'console.ack_timeout' must be a duration like 15m, or 0s for none, not '%s'", s);
        } else if (!strcmp(key, "client_header")) {
                free(c->client_header);
                c->client_header = fh_strdup(s);
        } else if (!strcmp(key, "login_lock")) {
                if (fh_duration_parse(s, strlen(s), &c->login_lock_ms) < 0 || c->login_lock_ms < 1000)
                        err(d, file, v, "'console.login_lock' must be a duration of 1s or more, not '%s'", s);
        } else if (!strcmp(key, "key_prefix")) {
                free(c->key_prefix);
                c->key_prefix = fh_strdup(s);
        } else
                err(d, file, v, "unknown key '%s' in console", key);
}

int fh_console_config_load(const char *path, fh_console_config *ret, char **ret_rules,
                           char **ret_stations, fh_diags *diags) {
        fh_daemon_config dc;
        fh_console_config c = {
                .listen = fh_strdup("127.0.0.1"),
                .port = 8090,
                .session_ttl_ms = 12 * 3600 * 1000,
                .key_prefix = fh_strdup("fenghuo:console:"),
                .login_lock_ms = 60000,
        };
        size_t before = diags->n_errors;
        int rc = fh_daemon_config_load(path, &dc, diags);

        if (rc < 0) {
                fh_console_config_free(&c);
                return rc;
        }
        c.redis_host = fh_strdup(dc.redis.host);
        c.redis_port = dc.redis.port;
        c.redis_username = dc.redis.username ? fh_strdup(dc.redis.username) : NULL;
        c.redis_password = dc.redis.password ? fh_strdup(dc.redis.password) : NULL;
        c.redis_db = dc.redis.db;
        c.channel = fh_strdup(dc.redis.channel);
        c.stream = fh_strdup(dc.redis.stream);
        c.active_hash = fh_strdup(dc.redis.active_hash);
        c.tz_offset_min = dc.tz_offset_min;
        c.brokers = fh_strdup(dc.brokers);
        c.alerts_topic = dc.alerts_topic ? fh_strdup(dc.alerts_topic) : NULL;
        c.kafka_props = dc.kafka_props;     /* moved */
        dc.kafka_props = (fh_kvs) { 0 };

        /* The daemon's parser has read the file once already: it exists and
         * is YAML. */
        FILE *f = fopen(path, "re");
        yaml_parser_t parser;
        yaml_document_t doc;
        if (!f) {
                fh_diags_error(diags, path, 0, 0, "cannot read configuration: %s", strerror(errno));
                goto out;
        }
        yaml_parser_initialize(&parser);
        yaml_parser_set_input_file(&parser, f);
        if (yaml_parser_load(&parser, &doc)) {
                yaml_node_t *root = yaml_document_get_root_node(&doc);
                for (yaml_node_pair_t *p = root && root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start : NULL;
                     p && p < root->data.mapping.pairs.top; p++) {
                        const char *k = scalar(yaml_document_get_node(&doc, p->key));
                        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
                        if (!k || strcmp(k, "console"))
                                continue;
                        if (!v || v->type != YAML_MAPPING_NODE) {
                                err(diags, path, v, "'console' must be a mapping%s", "");
                                continue;
                        }
                        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                                const char *ck = scalar(yaml_document_get_node(&doc, q->key));
                                if (ck)
                                        console_key(&c, path, ck, yaml_document_get_node(&doc, q->value), diags);
                        }
                }
                yaml_document_delete(&doc);
        }
        yaml_parser_delete(&parser);
        fclose(f);
out:
        if (!c.users_file && !c.user_header && !c.anonymous_read)
                fh_diags_error(diags, path, 0, 0, "nobody could use the console: set 'console.users_file', "
                               "'console.user_header' or 'console.anonymous_read'%s", "");
        if (c.ack_timeout_ms > 0 && !c.alerts_topic)
                fh_diags_error(diags, path, 0, 0, "'console.ack_timeout' needs 'kafka.alerts_topic' to raise escalations on%s", "");
        if (diags->n_errors > before) {
                fh_daemon_config_free(&dc);
                fh_console_config_free(&c);
                return -EINVAL;
        }
        *ret_rules = fh_strdup(dc.rules);
        *ret_stations = fh_strdup(dc.stations);
        fh_daemon_config_free(&dc);
        *ret = c;
        return 0;
}

void fh_console_config_free(fh_console_config *c) {
        free(c->listen);
        free(c->users_file);
        free(c->user_header);
        free(c->client_header);
        free(c->key_prefix);
        free(c->redis_host);
        free(c->redis_username);
        free(c->redis_password);
        free(c->channel);
        free(c->stream);
        free(c->active_hash);
        free(c->brokers);
        free(c->alerts_topic);
        for (size_t i = 0; i < c->kafka_props.n; i++) {
                free(c->kafka_props.v[i].key);
                free(c->kafka_props.v[i].value);
        }
        free(c->kafka_props.v);
        *c = (fh_console_config) { 0 };
}
