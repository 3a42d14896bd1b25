/* The command centre's web console (`fenghuo console`): a separate process
 * that serves the pages in src/console/assets, reads what the daemon writes
 * to Redis (the active hash, the alert stream) and writes acknowledgements,
 * silences and sessions back (docs/integration.md). See
 * docs/architecture.md for why it is its own process with libmicrohttpd's
 * internal threads. */
#ifndef FENGHUO_CONSOLE_H
#define FENGHUO_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fenghuo/diag.h"
#include "fenghuo/engine.h"
#include "config.h"

typedef struct fh_console_config {
        char *listen;              /* address, default "127.0.0.1" */
        int port;                  /* default 8090; 0 = any free port (tests) */
        char *users_file;          /* "name:crypt-hash[:operator|viewer]" lines; NULL: none */
        bool anonymous_read;       /* no login needed to look (read-only) */
        char *user_header;         /* trusted reverse-proxy header, e.g. X-Remote-User; NULL: off */
        int64_t session_ttl_ms;    /* default 12h */
        char *key_prefix;          /* sessions, acks: default "fenghuo:console:" */
        char *client_header;       /* trusted reverse-proxy header naming the client address
                                    * (X-Real-IP), for the login throttle; NULL: the peer's */
        int64_t login_lock_ms;     /* first lock after repeated failed logins; 0: 1 min */

        /* From the daemon's sections of the same file. */
        char *redis_host;
        int redis_port;
        char *redis_username;      /* Redis 6 ACL user; NULL: the default user */
        char *redis_password;
        int redis_db;
        char *channel;             /* silences are "<channel>:silence:{sensor,rule}:<id>" */
        char *stream;
        char *active_hash;
        int tz_offset_min;

        /* Escalation of unacknowledged red alerts (escalate.c). */
        int64_t ack_timeout_ms;    /* console.ack_timeout; 0: off */
        char *brokers;             /* kafka.brokers */
        char *alerts_topic;        /* kafka.alerts_topic */
        fh_kvs kafka_props;        /* kafka.properties (security, client id) */
} fh_console_config;

/* Reads the `console:` section and the daemon's rules, stations and redis
 * settings from the config file of `fenghuo run`. 0, or -EINVAL with every
 * problem in diags. */
int fh_console_config_load(const char *path, fh_console_config *ret, char **ret_rules,
                           char **ret_stations, fh_diags *diags);
void fh_console_config_free(fh_console_config *c);

typedef struct fh_console fh_console;

/* Starts serving (threads of its own). e holds the rules and registry (it
 * is never fed: fh_rule_threshold needs it); it stays the caller's and must
 * outlive the console. 0 or a negative errno, with a message in err. */
int fh_console_start(fh_console **ret, const fh_console_config *cfg, const fh_engine *e, char *err,
                     size_t err_len);
/* The port it listens on (the real one when cfg->port was 0). */
int fh_console_port(const fh_console *c);
/* Reads the users file again (SIGHUP). A file that cannot be read or
 * parsed leaves the users as they were, with an error in the log; the
 * sessions of users no longer in the file end. 0 or a negative errno. */
int fh_console_reload_users(fh_console *c);
/* Stops serving, ends the live streams, frees. NULL is fine. */
void fh_console_stop(fh_console *c);

/* A crypt(3) hash (yescrypt) of password for the users file; NULL on failure. */
char *fh_console_hash_password(const char *password);

/* The whole `fenghuo console` (cmd_console.c): the exit code. */
int fh_cmd_console(int argc, char **argv);

#endif
