/* `fenghuo plot`: an SVG of how a station's rules behaved over a replay
 * (docs/rules.md §10). The drawing is in plot.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fenghuo/timeutil.h"
#include "cli.h"
#include "plot.h"

static void usage(FILE *f) {
        fputs("usage: fenghuo plot --rules DIR --stations FILE --sensor ID [--rule ID]\n"
              "                    [--from TIME] [--to TIME] [-o FILE.svg]\n"
              "        " FH_ENGINE_USAGE " [FILE|-]\n"
              "Replays the readings (JSON Lines) and draws, as SVG, each rule of the station\n"
              "(or the one --rule names): its report value at every evaluation against each\n"
              "tier's threshold, shaded where each tier was active, and the raw readings\n"
              "below. TIME is RFC 3339. Writes to standard output without -o. Exit 0, 1 for\n"
              "invalid rules or stations or nothing to plot, 2 for bad usage.\n", f);
}

static int parse_time(const char *what, const char *s, int64_t *ret) {
        const char *why = NULL;

        if (fh_time_parse_rfc3339(s, strlen(s), ret, &why) < 0) {
                fprintf(stderr, "fenghuo plot: %s wants an RFC 3339 time like 2023-07-30T14:00:00+08:00, got '%s' (%s)\n",
                        what, s, why ? why : "invalid");
                return -1;
        }
        return 0;
}

int fh_cmd_plot(int argc, char **argv) {
        static const struct option opts[] = {
                { "rules", required_argument, NULL, 'r' },
                { "stations", required_argument, NULL, 's' },
                { "sensor", required_argument, NULL, 'S' },
                { "rule", required_argument, NULL, 'R' },
                { "from", required_argument, NULL, 'f' },
                { "to", required_argument, NULL, 'T' },
                { "output", required_argument, NULL, 'o' },
                FH_ENGINE_LONGOPTS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        const char *rules = NULL, *stations = NULL, *sensor = NULL, *rule = NULL, *input = "-", *output = NULL;
        fh_plot_request req = { .from = INT64_MIN, .to = INT64_MAX };
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1)
                switch (c) {
                case 'r': rules = optarg; break;
                case 's': stations = optarg; break;
                case 'S': sensor = optarg; break;
                case 'R': rule = optarg; break;
                case 'o': output = optarg; break;
                case 'f':
                        if (parse_time("--from", optarg, &req.from) < 0)
                                return 2;
                        break;
                case 'T':
                        if (parse_time("--to", optarg, &req.to) < 0)
                                return 2;
                        break;
                case 't':
                case 'l':
                case 'z':
                case 'M':
                case 'W':
                        if (fh_engine_option(&cfg, c, optarg, "plot") < 0)
                                return 2;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!rules || !stations || !sensor || argc - optind > 1) {
                usage(stderr);
                return 2;
        }
        if (req.from != INT64_MIN && req.to != INT64_MAX && req.to <= req.from) {
                fprintf(stderr, "fenghuo plot: --to must be later than --from\n");
                return 2;
        }
        if (optind < argc)
                input = argv[optind];

        /* Which rules to draw is known only from the loaded rules. */
        r = fh_load_engine(rules, stations, &cfg, &e, &diags);
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        if (r < 0)
                return 1;
        const fh_station *st = fh_registry_find(fh_engine_registry(e), sensor, strlen(sensor));
        const fh_ruleset *rs = fh_engine_rules(e);
        if (!st) {
                fprintf(stderr, "fenghuo plot: no station '%s' in %s\n", sensor, stations);
                fh_engine_free(e);
                return 1;
        }
        if (rule && !fh_ruleset_find(rs, rule)) {
                fprintf(stderr, "fenghuo plot: no rule '%s' in %s\n", rule, rules);
                fh_engine_free(e);
                return 1;
        }
        /* Rule ids outlive the engine: the request keeps copies. */
        char *ids[FH_PLOT_PANELS_MAX];
        for (size_t i = 0; i < rs->n_rules && req.n_panels < FH_PLOT_PANELS_MAX; i++) {
                const fh_station **list;
                size_t n = fh_engine_rule_stations(e, i, &list);
                bool applies = false;
                for (size_t k = 0; k < n && !applies; k++)
                        applies = list[k] == st;
                free(list);
                if (rule ? strcmp(rs->rules[i].id, rule) != 0 : !applies)
                        continue;
                if (!applies) {
                        fprintf(stderr, "fenghuo plot: rule '%s' does not apply to %s\n", rule, sensor);
                        fh_engine_free(e);
                        return 1;
                }
                ids[req.n_panels] = strdup(rs->rules[i].id);
                if (!ids[req.n_panels])
                        fh_oom();
                req.panels[req.n_panels] = (fh_plot_panel) { 0, ids[req.n_panels] };
                req.n_panels++;
        }
        fh_engine_free(e);
        if (req.n_panels == 0) {
                fprintf(stderr, "fenghuo plot: no rule applies to %s\n", sensor);
                return 1;
        }

        int fd = fh_open_input("plot", input);
        if (fd < 0) {
                r = 2;
                goto out;
        }
        req.sensor = sensor;
        req.path = output;
        const char *dirs[1] = { rules };
        fh_plot_runs runs = { dirs, NULL, 1, stations, &cfg, false };
        r = fh_plot_write("plot", fd, &runs, &req, 1) < 0 ? 1 : 0;
        if (fd != STDIN_FILENO)
                close(fd);
out:
        for (size_t i = 0; i < req.n_panels; i++)
                free(ids[i]);
        return r;
}
