#include <stdio.h>

#include "cli.h"

/* Built when libmicrohttpd or libcrypt (or the daemon's libraries) were
 * missing at build time. */
int fh_cmd_console(int argc, char **argv) {
        fputs("fenghuo console: this build has no console (libmicrohttpd-dev and libcrypt-dev, and the daemon's libraries, are needed at build time)\n", stderr);
        return 2;
}
