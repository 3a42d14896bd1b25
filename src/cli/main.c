#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
        fputs("usage: fenghuo COMMAND [OPTIONS]\n"
              "  demo                                      the embedded storm demo (no Kafka or Redis needed)\n"
              "  check     --rules DIR --stations FILE     validate rules and stations\n"
              "  replay    --rules DIR --stations FILE [FILE|-]  run history through the rules\n"
              "  test      FILE...                         run rule unit tests\n"
              "  diff      --old DIR --new DIR --stations FILE [FILE|-]  what a rule change does\n"
              "  plot      --rules DIR --stations FILE --sensor ID [FILE|-]  an SVG of a station's rules\n"
              "  simulate  --stations FILE [...]           write a storm scenario as JSON Lines\n"
              "  run       --config FILE                   the daemon\n"
              "  console   --config FILE                   the command centre's web console\n"
              "  version\n"
              "`fenghuo COMMAND --help` tells more.\n", f);
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[1];
        if (!strcmp(cmd, "check"))
                return fh_cmd_check(argc - 1, argv + 1);
        if (!strcmp(cmd, "replay"))
                return fh_cmd_replay(argc - 1, argv + 1);
        if (!strcmp(cmd, "test"))
                return fh_cmd_test(argc - 1, argv + 1);
        if (!strcmp(cmd, "diff"))
                return fh_cmd_diff(argc - 1, argv + 1);
        if (!strcmp(cmd, "plot"))
                return fh_cmd_plot(argc - 1, argv + 1);
        if (!strcmp(cmd, "simulate"))
                return fh_cmd_simulate(argc - 1, argv + 1);
        if (!strcmp(cmd, "run"))
                return fh_cmd_run(argc - 1, argv + 1);
        if (!strcmp(cmd, "console"))
                return fh_cmd_console(argc - 1, argv + 1);
        if (!strcmp(cmd, "demo"))
                return fh_cmd_demo(argc - 1, argv + 1);
        if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
                printf("fenghuo %s\n", FENGHUO_VERSION);
                return 0;
        }
        if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
                usage(stdout);
                return 0;
        }
        fprintf(stderr, "fenghuo: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
}
