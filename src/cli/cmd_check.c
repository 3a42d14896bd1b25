#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/timeutil.h"
#include "cli.h"

#define LIST_MAX 200

static void usage(FILE *f) {
        fputs("usage: fenghuo check --rules DIR --stations FILE [--all]\n"
              "Validates the rule files and the station registry and shows which stations\n"
              "each rule applies to. Exit 0 when valid, 1 with every error as\n"
              "file:line:col: message.\n", f);
}

static void print_rule(const fh_engine *e, size_t i, bool all) {
        const fh_rule *r = &fh_engine_rules(e)->rules[i];
        const fh_station **st;
        size_t n = fh_engine_rule_stations(e, i, &st);
        char fbuf[32], cbuf[32];
        const char *sep = "";

        fh_duration_format(r->for_ms, fbuf, sizeof(fbuf));
        fh_duration_format(r->clear_after_ms, cbuf, sizeof(cbuf));
        printf("%s", r->id);
        if (r->title)
                printf(" (%s)", r->title);
        printf(" [%s:%u] kind %s, levels ", r->file, r->line, fh_kind_name(r->kind));
        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--)
                if (r->levels[l]) {
                        printf("%s%s", sep, fh_level_name((fh_level) l));
                        sep = "/";
                }
        printf(", for %s, clear_after %s%s: %zu station%s\n", fbuf, cbuf,
               r->uses_age ? ", ticks (age)" : "", n, n == 1 ? "" : "s");
        size_t shown = all ? n : FH_MIN(n, (size_t) LIST_MAX);
        for (size_t k = 0; k < shown; k++)
                printf("    %s %s\n", st[k]->id, st[k]->name);
        if (shown < n)
                printf("    ... and %zu more (--all lists them)\n", n - shown);
        free(st);
}

int fh_cmd_check(int argc, char **argv) {
        static const struct option opts[] = {
                { "rules", required_argument, NULL, 'r' },
                { "stations", required_argument, NULL, 's' },
                { "all", no_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *rules = NULL, *stations = NULL;
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        bool all = false;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (c) {
                case 'r': rules = optarg; break;
                case 's': stations = optarg; break;
                case 'a': all = true; break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!rules || !stations || optind != argc) {
                usage(stderr);
                return 2;
        }

        r = fh_load_engine(rules, stations, NULL, &e, &diags);
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        size_t n_warn = diags.n - diags.n_errors, n_err = diags.n_errors;
        fh_diags_clear(&diags);
        if (r < 0) {
                fprintf(stderr, "check failed: %zu error%s, %zu warning%s\n",
                        n_err, n_err == 1 ? "" : "s", n_warn, n_warn == 1 ? "" : "s");
                return 1;
        }

        const fh_ruleset *rs = fh_engine_rules(e);
        const fh_registry *reg = fh_engine_registry(e);
        size_t by_kind[FH_KIND__MAX] = { 0 };

        for (size_t i = 0; i < rs->n_rules; i++)
                print_rule(e, i, all);
        for (size_t i = 0; i < reg->n_stations; i++)
                by_kind[reg->stations[i].kind]++;
        printf("stations: %zu (", reg->n_stations);
        for (int k = 0; k < FH_KIND__MAX; k++)
                printf("%s%s %zu", k ? ", " : "", fh_kind_name((fh_kind) k), by_kind[k]);
        printf(")\nok: %zu rule%s, %zu station%s, %zu warning%s\n", rs->n_rules, rs->n_rules == 1 ? "" : "s",
               reg->n_stations, reg->n_stations == 1 ? "" : "s", n_warn, n_warn == 1 ? "" : "s");
        fh_engine_free(e);
        return 0;
}
