#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/load.h"
#include "console.h"

static void usage(FILE *f) {
        fputs("usage: fenghuo console --config FILE\n"
              "       fenghuo console --hash-password < password\n"
              "Serves the command centre's web console (the `console:` section of the\n"
              "daemon's config file; see docs/operations.md). SIGTERM or SIGINT stops it;\n"
              "SIGHUP re-reads the users file.\n"
              "  --hash-password   print a crypt(3) hash of the password on standard input,\n"
              "                    for the users file\n", f);
}

static int hash_password(void) {
        char pw[512];
        if (!fgets(pw, sizeof(pw), stdin)) {
                fputs("fenghuo console: no password on standard input\n", stderr);
                return 1;
        }
        pw[strcspn(pw, "\r\n")] = '\0';
        if (!*pw) {
                fputs("fenghuo console: the password is empty\n", stderr);
                return 1;
        }
        char *h = fh_console_hash_password(pw);
        memset(pw, 0, sizeof(pw));
        if (!h) {
                fputs("fenghuo console: crypt(3) could not hash the password\n", stderr);
                return 1;
        }
        puts(h);
        free(h);
        return 0;
}

int fh_cmd_console(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "hash-password", no_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *config = NULL;
        int opt;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1)
                switch (opt) {
                case 'c': config = optarg; break;
                case 'p': return hash_password();
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (!config || optind != argc) {
                usage(stderr);
                return 2;
        }

        fh_diags diags = FH_DIAGS_NULL;
        fh_console_config cfg;
        char *rules = NULL, *stations = NULL;
        fh_engine *e = NULL;
        int rc = fh_console_config_load(config, &cfg, &rules, &stations, &diags);
        if (rc == 0 && fh_load_engine(rules, stations, NULL, &e, &diags) < 0)
                rc = -EINVAL;
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        free(rules);
        free(stations);
        if (rc < 0) {
                if (cfg.listen)
                        fh_console_config_free(&cfg);
                return 1;
        }

        /* Signals are taken with sigwait(): blocked before any thread starts,
         * so libmicrohttpd's and the follower's threads never get them. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        fh_console *con;
        char err[512];
        if (fh_console_start(&con, &cfg, e, err, sizeof(err)) < 0) {
                fprintf(stderr, "fenghuo console: %s\n", err);
                fh_engine_free(e);
                fh_console_config_free(&cfg);
                return 1;
        }
        printf("fenghuo console: http://%s:%d/\n", cfg.listen, fh_console_port(con));
        fflush(stdout);
        int sig;
        for (;;) {
                sigwait(&set, &sig);
                if (sig == SIGHUP)
                        fh_console_reload_users(con);   /* logs what it did */
                else if (sig != SIGPIPE)
                        break;
        }
        fh_console_stop(con);
        fh_engine_free(e);
        fh_console_config_free(&cfg);
        return 0;
}
