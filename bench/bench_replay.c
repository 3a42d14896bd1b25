/* The engine benchmark: what `fenghuo replay` does to every line (parse,
 * ingest, format the alerts), minus writing them out, timed on its own.
 *
 *   bench_replay --rules DIR --stations FILE [--limit N] [--no-caps] READINGS.jsonl
 *
 * The readings file is mapped, not read, so the loop measures the parser and
 * the engine rather than copies; the pages already read are let go as the
 * loop goes so the file does not show up in the peak RSS. Only the loop is
 * timed. Figures go to stdout as "name value" lines for bench/run.sh. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "fenghuo/load.h"
#include "fenghuo/reading.h"

/* Pages behind the cursor are dropped from the mapping this often. */
#define RELEASE_STEP (1u << 20)

typedef struct sink {
        const fh_engine *e;
        fh_buf json;
        unsigned long long alerts;
        unsigned long long bytes;
} sink;

static void on_alert(void *userdata, const fh_alert *a) {
        sink *s = userdata;

        fh_buf_reset(&s->json);
        fh_alert_to_json(s->e, a, &s->json);
        fh_buf_putc(&s->json, '\n');
        s->alerts++;
        s->bytes += s->json.len;
}

static double now_s(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static long max_rss_kib(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return ru.ru_maxrss;
}

static long current_rss_kib(void) {
        char line[256];
        long kib = -1;
        FILE *f = fopen("/proc/self/status", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static void usage(FILE *f) {
        fputs("usage: bench_replay --rules DIR --stations FILE [--limit LINES] READINGS.jsonl\n"
              "Parses and ingests every line of READINGS as `fenghuo replay` does, without\n"
              "writing the alerts, and prints the throughput and memory figures.\n", f);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "rules", required_argument, NULL, 'r' },
                { "stations", required_argument, NULL, 's' },
                { "limit", required_argument, NULL, 'n' },
                { "no-caps", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        const char *rules = NULL, *stations = NULL;
        unsigned long long limit = ~0ULL;


        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (c) {
                case 'r': rules = optarg; break;
                case 's': stations = optarg; break;
                case 'n': {
                        char *end;
                        errno = 0;
                        limit = strtoull(optarg, &end, 10);
                        if (errno || *end || optarg[0] == '-') {
                                fprintf(stderr, "bench_replay: --limit wants a line count, got '%s'\n", optarg);
                                return 2;
                        }
                        break;
                }
                case 'C':
                        /* The late-reading bench sends one gauge at 20
                         * readings/s on purpose, which the per-sensor caps
                         * would mostly reject. */
                        cfg.max_readings_per_minute = 0;
                        cfg.max_window_samples = 0;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!rules || !stations || argc - optind != 1) {
                usage(stderr);
                return 2;
        }
        const char *input = argv[optind];

        int fd = open(input, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "bench_replay: cannot open %s: %s\n", input, strerror(errno));
                return 2;
        }
        size_t size = (size_t) st.st_size;
        const char *data = NULL;
        if (size > 0) {
                data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
                if (data == MAP_FAILED) {
                        fprintf(stderr, "bench_replay: cannot map %s: %s\n", input, strerror(errno));
                        return 2;
                }
                madvise((void *) data, size, MADV_SEQUENTIAL);
        }
        close(fd);

        int r = fh_load_engine(rules, stations, &cfg, &e, &diags);
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        if (r < 0)
                return 1;

        sink out = { .e = e };
        fh_engine_set_alert_cb(e, on_alert, &out);
        size_t n_stations = fh_engine_registry(e)->n_stations;

        fh_reading reading;
        char why[256];
        unsigned long long lines = 0;
        size_t pos = 0, released = 0;
        long rss_before = current_rss_kib();
        long hwm_before = max_rss_kib();
        double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);

        while (pos < size && lines < limit) {
                const char *line = data + pos;
                const char *nl = memchr(line, '\n', size - pos);
                size_t len = nl ? (size_t) (nl - line) : size - pos;
                fh_reject rej;

                pos += len + (nl != NULL);
                lines++;
                if (len > FH_READING_BYTES_MAX) {
                        rej = FH_REJECT_TOO_LONG;
                } else {
                        size_t k = 0;
                        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
                                k++;
                        if (k == len)
                                continue;
                        rej = fh_reading_parse(line, len, &reading, why, sizeof(why));
                }
                if (rej != FH_REJECT_NONE)
                        fh_engine_count_reject(e, rej);
                else
                        fh_engine_ingest(e, &reading);
                if (pos - released >= RELEASE_STEP) {
                        size_t to = pos & ~(size_t) (sysconf(_SC_PAGESIZE) - 1);
                        madvise((void *) (data + released), to - released, MADV_DONTNEED);
                        released = to;
                }
        }

        double wall = now_s(CLOCK_MONOTONIC) - w0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        long hwm_after = max_rss_kib();
        const fh_engine_stats *s = fh_engine_stats_get(e);
        size_t mem = fh_engine_memory(e), samples = fh_engine_samples(e);
        /* The high-water mark before the loop covers loading the rules and
         * registry; what the loop adds on top of it is the per-station state. */
        long base = rss_before > hwm_before ? rss_before : hwm_before;
        long grown = hwm_after - base;

        printf("input %s\n", input);
        printf("stations %zu\n", n_stations);
        printf("lines %llu\n", lines);
        printf("accepted %llu\n", (unsigned long long) s->accepted);
        /* Parse rejects are counted into the engine's stats too. */
        unsigned long long rejects = 0;
        for (int i = 0; i < FH_REJECT__MAX; i++)
                rejects += s->rejected[i];
        printf("rejected %llu\n", rejects);
        printf("alerts %llu\n", out.alerts);
        printf("alert_json_bytes %llu\n", out.bytes);
        printf("wall_s %.3f\n", wall);
        printf("cpu_s %.3f\n", cpu);
        printf("readings_per_s_wall %.0f\n", wall > 0 ? (double) lines / wall : 0);
        printf("readings_per_s_cpu %.0f\n", cpu > 0 ? (double) lines / cpu : 0);
        printf("ns_per_reading_cpu %.1f\n", lines ? cpu * 1e9 / (double) lines : 0);
        printf("engine_bytes_per_station %.0f\n", n_stations ? (double) mem / (double) n_stations : 0);
        printf("engine_samples_per_station %.0f\n", n_stations ? (double) samples / (double) n_stations : 0);
        /* What the issue 8 goal (<= 1 KiB a station + <= 16 B a sample)
         * leaves per sample once a station's 1 KiB is taken off. */
        printf("engine_bytes_per_sample_after_1kib %.2f\n",
               samples ? ((double) mem - 1024.0 * (double) n_stations) / (double) samples : 0);
        printf("rss_before_kib %ld\n", rss_before);
        printf("peak_rss_kib %ld\n", hwm_after);
        printf("peak_rss_growth_bytes_per_station %.0f\n",
               n_stations ? (double) grown * 1024.0 / (double) n_stations : 0);

        if (size > 0)
                munmap((void *) data, size);
        fh_buf_free(&out.json);
        fh_engine_free(e);
        return 0;
}
