/* `fenghuo simulate`: the storm scenario as JSON Lines on stdout, for the
 * demo, the tests and benchmarks. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"
#include "cli.h"

#define OUT_BUF_SIZE (1u << 20)

/* The start of the July 2023 Beijing storm (23.7 "海河流域性特大洪水"). */
#define DEFAULT_START "2023-07-29T00:00:00+08:00"

typedef struct out {
        FILE *f;
        char *buf;
        size_t len;
        int err;               /* errno of the first failed write */
} out;

static void usage(FILE *f) {
        fputs("usage: fenghuo simulate (--stations FILE | --synthetic N) [OPTIONS]\n"
              "Writes a storm scenario as readings (JSON Lines) to standard output.\n"
              "  --stations FILE        registry to simulate (CSV)\n"
              "  --synthetic N          a synthetic registry of N stations instead\n"
              "  --write-stations FILE  with --synthetic: also write that registry\n"
              "  --seed N               random seed (default 1)\n"
              "  --start TIME           first timestamp, RFC 3339 (default " DEFAULT_START ")\n"
              "  --duration D           scenario length (default 2d)\n"
              "  --step D               reading interval of every station (default 10m)\n"
              "  --bad SHARE            share of bad input lines, 0 to 0.99 (default 0)\n"
              "  --storm-scale X        1.0 = a storm reaching red in its core (default 1.0)\n"
              "  --tz OFFSET            offset written in timestamps (default +08:00)\n"
              "  --help                 this text\n", f);
}

static int bad_usage(const char *fmt, const char *arg) {
        fputs("fenghuo simulate: ", stderr);
        fprintf(stderr, fmt, arg);
        fputs("\nTry 'fenghuo simulate --help'.\n", stderr);
        return 2;
}

static int flush_out(out *o) {
        if (o->err == 0 && o->len > 0 && fwrite(o->buf, 1, o->len, o->f) != o->len)
                o->err = errno ? errno : EIO;
        o->len = 0;
        return o->err;
}

/* Lines go into our own buffer: a call into stdio per line would cost more
 * than generating it. */
static int on_line(void *userdata, const char *line, size_t len) {
        out *o = userdata;

        if (o->len + len + 1 > OUT_BUF_SIZE && flush_out(o) != 0)
                return -o->err;
        if (len + 1 > OUT_BUF_SIZE) {
                /* Longer than the whole buffer: cannot happen with the
                 * generator's caps, but write it straight through anyway. */
                if (fwrite(line, 1, len, o->f) != len || fputc('\n', o->f) == EOF)
                        o->err = errno ? errno : EIO;
                return o->err ? -o->err : 0;
        }
        memcpy(o->buf + o->len, line, len);
        o->buf[o->len + len] = '\n';
        o->len += len + 1;
        return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;

        if (!s[0] || s[0] == '-' || s[0] == '+')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_double(const char *s, double lo, double hi, double *ret) {
        char *end;

        if (!s[0])
                return -EINVAL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || *end || !(v >= lo && v <= hi))
                return -EINVAL;
        *ret = v;
        return 0;
}

static int write_file(const char *path, const char *text, size_t len) {
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        size_t n = fwrite(text, 1, len, f);
        int r = n == len ? 0 : -(errno ? errno : EIO);
        if (fclose(f) != 0 && r == 0)
                r = -(errno ? errno : EIO);
        return r;
}

int fh_cmd_simulate(int argc, char **argv) {
        enum {
                OPT_STATIONS = 0x100, OPT_SYNTHETIC, OPT_WRITE_STATIONS, OPT_SEED, OPT_START,
                OPT_DURATION, OPT_STEP, OPT_BAD, OPT_STORM_SCALE, OPT_TZ, OPT_HELP,
        };
        static const struct option options[] = {
                { "stations", required_argument, NULL, OPT_STATIONS },
                { "synthetic", required_argument, NULL, OPT_SYNTHETIC },
                { "write-stations", required_argument, NULL, OPT_WRITE_STATIONS },
                { "seed", required_argument, NULL, OPT_SEED },
                { "start", required_argument, NULL, OPT_START },
                { "duration", required_argument, NULL, OPT_DURATION },
                { "step", required_argument, NULL, OPT_STEP },
                { "bad", required_argument, NULL, OPT_BAD },
                { "storm-scale", required_argument, NULL, OPT_STORM_SCALE },
                { "tz", required_argument, NULL, OPT_TZ },
                { "help", no_argument, NULL, OPT_HELP },
                { NULL, 0, NULL, 0 }
        };
        fh_sim_options opt = {
                .seed = 1,
                .duration_ms = 2 * 86400000LL,
                .step_ms = 10 * 60000LL,
                .bad_share = 0,
                .tz_offset_min = 480,
                .storm_scale = 1.0,
        };
        const char *stations = NULL, *write_stations = NULL;
        uint64_t synthetic = 0;
        fh_diags diags = FH_DIAGS_NULL;
        fh_registry *reg = NULL;
        char *text = NULL;
        size_t len = 0;
        out o = { .f = stdout };
        int c, r, ret = 1;

        fh_time_parse_rfc3339(DEFAULT_START, strlen(DEFAULT_START), &opt.start_ms, NULL);
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
                switch (c) {
                case OPT_STATIONS:
                        stations = optarg;
                        break;
                case OPT_SYNTHETIC:
                        if (parse_u64(optarg, FH_REGISTRY_STATIONS_MAX, &synthetic) < 0 || synthetic == 0)
                                return bad_usage("--synthetic wants a station count from 1 to 1000000, not '%s'", optarg);
                        break;
                case OPT_WRITE_STATIONS:
                        write_stations = optarg;
                        break;
                case OPT_SEED:
                        if (parse_u64(optarg, UINT64_MAX, &opt.seed) < 0)
                                return bad_usage("--seed wants an unsigned integer, not '%s'", optarg);
                        break;
                case OPT_START:
                        if (fh_time_parse_rfc3339(optarg, strlen(optarg), &opt.start_ms, NULL) < 0)
                                return bad_usage("--start wants an RFC 3339 time with offset, not '%s'", optarg);
                        break;
                case OPT_DURATION:
                        if (fh_duration_parse(optarg, strlen(optarg), &opt.duration_ms) < 0)
                                return bad_usage("--duration wants a duration like 2d or 36h, not '%s'", optarg);
                        break;
                case OPT_STEP:
                        if (fh_duration_parse(optarg, strlen(optarg), &opt.step_ms) < 0 || opt.step_ms <= 0)
                                return bad_usage("--step wants a positive duration like 10m, not '%s'", optarg);
                        break;
                case OPT_BAD:
                        if (parse_double(optarg, 0, 0.99, &opt.bad_share) < 0)
                                return bad_usage("--bad wants a share from 0 to 0.99, not '%s'", optarg);
                        break;
                case OPT_STORM_SCALE:
                        if (parse_double(optarg, 0, 100, &opt.storm_scale) < 0)
                                return bad_usage("--storm-scale wants a number from 0 to 100, not '%s'", optarg);
                        break;
                case OPT_TZ:
                        if (fh_offset_parse(optarg, strlen(optarg), &opt.tz_offset_min) < 0)
                                return bad_usage("--tz wants an offset like +08:00 or Z, not '%s'", optarg);
                        break;
                case OPT_HELP:
                        usage(stdout);
                        return 0;
                case ':':
                        return bad_usage("%s needs a value", argv[optind - 1]);
                default:
                        return bad_usage("unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return bad_usage("unexpected argument '%s'", argv[optind]);
        if (!stations == !synthetic)
                return bad_usage("%s", "give exactly one of --stations FILE or --synthetic N");
        if (write_stations && !synthetic)
                return bad_usage("%s", "--write-stations needs --synthetic");
        if (opt.start_ms > FH_TIME_MAX_MS - opt.duration_ms)
                return bad_usage("%s", "--start plus --duration is past the year 9999");
        /* Late readings reach up to an hour before the start. */
        if (opt.start_ms < FH_TIME_MIN_MS + 3600000LL)
                return bad_usage("%s", "--start is too close to the year 0001");

        if (stations) {
                r = fh_load_registry(stations, &reg, &diags);
                if (r < 0) {
                        fh_diags_sort(&diags);
                        fh_print_diags(&diags);
                        goto finish;
                }
        } else {
                fh_simulate_registry((size_t)synthetic, opt.seed, &text, &len);
                if (write_stations) {
                        r = write_file(write_stations, text, len);
                        if (r < 0) {
                                fprintf(stderr, "fenghuo simulate: failed to write %s: %s\n",
                                        write_stations, strerror(-r));
                                goto finish;
                        }
                }
                r = fh_registry_parse("<synthetic>", text, len, &reg, &diags);
                if (r < 0) {
                        /* Our own generator wrote it: a bug, but say what. */
                        fh_print_diags(&diags);
                        goto finish;
                }
        }
        /* Warnings (e.g. an unused column) are worth seeing; they do not stop us. */
        fh_print_diags(&diags);

        /* A reader that closes the pipe early (`| head`) has what it wanted:
         * end quietly. Any other write error is reported and exits 1. */
        signal(SIGPIPE, SIG_IGN);
        o.buf = fh_malloc(OUT_BUF_SIZE);
        r = fh_simulate(reg, &opt, on_line, &o);
        if (r == 0)
                flush_out(&o);
        if (o.err == 0 && fflush(stdout) != 0)
                o.err = errno ? errno : EIO;
        if (o.err == EPIPE) {
                ret = 0;
                goto finish;
        }
        if (o.err != 0) {
                errno = o.err;
                fprintf(stderr, "fenghuo simulate: failed to write output: %m\n");
                goto finish;
        }
        if (r < 0) {
                fprintf(stderr, "fenghuo simulate: %s\n", strerror(-r));
                goto finish;
        }
        ret = 0;
finish:
        free(o.buf);
        free(text);
        fh_registry_free(reg);
        fh_diags_clear(&diags);
        return ret;
}
