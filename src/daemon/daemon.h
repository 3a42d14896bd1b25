/* `fenghuo run`: the engine on one libuv loop, fed by a Kafka consumer
 * group, publishing alerts to Kafka, Redis and stdout.
 *
 * Everything runs on the loop thread: librdkafka's queues wake the loop
 * through their io-event fds, hiredis runs through its libuv adapter,
 * ticks and checkpoints are uv timers, signals are uv signals. */
#ifndef FENGHUO_DAEMON_H
#define FENGHUO_DAEMON_H

#include <stdio.h>
#include <uv.h>

#include "fenghuo/engine.h"
#include "config.h"

typedef struct fh_daemon fh_daemon;

/* What the embedded demo needs to watch the daemon from the same loop. */
typedef struct fh_daemon_hooks {
        /* Each alert as it is published (JSON without newline). */
        void (*on_alert)(void *userdata, const fh_alert *a, const char *json, size_t len);
        /* After the daemon has stopped and released everything. */
        void (*on_stopped)(void *userdata, int exit_code);
        void *userdata;
        /* SIGTERM/SIGINT stop, SIGHUP reloads (the demo handles its own). */
        bool install_signals;
} fh_daemon_hooks;

/* Takes the configuration (moved: *cfg is zeroed). 0, or -errno after
 * logging why. */
int fh_daemon_new(fh_daemon **ret, uv_loop_t *loop, fh_daemon_config *cfg, const fh_daemon_hooks *hooks);
/* The engine of the first shard: what all shards share (rules, registry,
 * configuration) is read from it; not the state of every sensor. */
const fh_engine *fh_daemon_engine(const fh_daemon *d);
/* Every shard's active alerts (fh_engine_foreach_active), shard after shard. */
void fh_daemon_foreach_active(fh_daemon *d, fh_alert_fn fn, void *userdata);
/* The shards' engine counts, added up. */
void fh_daemon_engine_stats(fh_daemon *d, fh_engine_stats *ret);
uint64_t fh_daemon_consumed(const fh_daemon *d);
/* Partitions assigned now; -1 while a rebalance is under way. */
int fh_daemon_assigned(const fh_daemon *d);
uint64_t fh_daemon_dead_letters(const fh_daemon *d);
uint64_t fh_daemon_pauses(const fh_daemon *d);       /* times flow control paused consumption */
size_t fh_daemon_in_flight(const fh_daemon *d);      /* alerts and dead letters not yet confirmed */

/* Reloads rules and stations (as SIGHUP): built on a worker thread, swapped
 * in on the loop once valid. */
void fh_daemon_reload(fh_daemon *d);

/* Begins a clean shutdown (as SIGTERM). */
void fh_daemon_stop(fh_daemon *d);
fh_daemon *fh_daemon_free(fh_daemon *d);

/* `fenghuo run --config FILE --check`: configuration, rules and stations
 * are loaded and every problem printed; 0 when all are valid, else 1. */
int fh_daemon_check(const char *config_path);

/* The whole `fenghuo run --config FILE`: returns the exit code. */
int fh_daemon_main(const char *config_path);

/* The whole `fenghuo demo` (demo.c, library fenghuo_demo): the exit code. */
int fh_cmd_demo(int argc, char **argv);

#endif
