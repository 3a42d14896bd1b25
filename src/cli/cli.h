/* The command line: each subcommand is a function main() dispatches to.
 * This is the edge where errors are printed, once. */
#ifndef FENGHUO_CLI_H
#define FENGHUO_CLI_H

#include "fenghuo/diag.h"
#include "fenghuo/engine.h"
#include "fenghuo/load.h"
#include "fenghuo/reading.h"

int fh_cmd_check(int argc, char **argv);
int fh_cmd_replay(int argc, char **argv);
int fh_cmd_simulate(int argc, char **argv);
int fh_cmd_run(int argc, char **argv);
int fh_cmd_demo(int argc, char **argv);
int fh_cmd_test(int argc, char **argv);
int fh_cmd_diff(int argc, char **argv);
int fh_cmd_plot(int argc, char **argv);
int fh_cmd_console(int argc, char **argv);

/* Opens an input file ("-" is standard input); on failure says why as
 * "fenghuo CMD: cannot open ..." and returns -1. */
int fh_open_input(const char *cmd, const char *path);
/* The same, for a caller that reads the input twice: standard input is
 * copied to an unlinked temporary file first. Rewind with lseek(). */
int fh_open_input_rewindable(const char *cmd, const char *path);

/* --tick, --lateness, --tz, --max-readings-per-minute and
 * --max-window-samples, shared by replay, diff and plot: opt is 't', 'l',
 * 'z', 'M' or 'W'. On a bad value says why and returns -1 (exit 2). */
int fh_engine_option(fh_engine_config *cfg, int opt, const char *arg, const char *cmd);
#define FH_ENGINE_LONGOPTS                                                   \
        { "tick", required_argument, NULL, 't' },                            \
        { "lateness", required_argument, NULL, 'l' },                        \
        { "tz", required_argument, NULL, 'z' },                              \
        { "max-readings-per-minute", required_argument, NULL, 'M' },         \
        { "max-window-samples", required_argument, NULL, 'W' }
#define FH_ENGINE_USAGE "[--tick 60s] [--lateness 1h] [--tz +08:00]\n" \
        "        [--max-readings-per-minute 60] [--max-window-samples 50000]"

typedef struct fh_feed_opts {
        bool say_rejects;          /* each rejected line on stderr, with its number */
        /* Each reading the first engine accepted, after it was applied. */
        void (*on_reading)(void *userdata, const fh_reading *r);
        void *userdata;
} fh_feed_opts;

/* Reads JSON Lines from fd to the end and ingests every reading into each
 * engine, in order (one parse for several engines: `diff` replays two rule
 * sets in one pass). A line that does not parse is counted as rejected in
 * every engine. *ret_lines is the number of lines read, also after a read
 * error (for the message). 0, or -errno when reading failed. */
int fh_feed(int fd, fh_engine *const *engines, size_t n_engines, const fh_feed_opts *opts,
            unsigned long long *ret_lines);


#endif
