#include <stdio.h>

#include "cli.h"

/* Built when the daemon's libraries are not available. */
int fh_cmd_run(int argc, char **argv) {
        fputs("fenghuo run: this build has no daemon (librdkafka, libuv, hiredis or libsystemd were missing at build time)\n", stderr);
        return 2;
}

int fh_cmd_demo(int argc, char **argv) {
        return fh_cmd_run(argc, argv);
}
