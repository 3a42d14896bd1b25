#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "../daemon/daemon.h"
#include "cli.h"

static void usage(FILE *f) {
        fputs("usage: fenghuo run --config FILE\n"
              "Runs the daemon: consumes readings from Kafka, publishes alerts to Kafka,\n"
              "Redis and stdout as configured. SIGHUP reloads rules and stations,\n"
              "SIGTERM stops cleanly. See docs/operations.md.\n"
              "  --check   validate the configuration, rules and stations, then exit\n", f);
}

int fh_cmd_run(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check", no_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *config = NULL;
        bool check = false;
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1)
                switch (c) {
                case 'c': config = optarg; break;
                case 'k': check = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (!config || optind != argc) {
                usage(stderr);
                return 2;
        }
        return check ? fh_daemon_check(config) : fh_daemon_main(config);
}
