/* `fenghuo demo`: the real daemon pipeline on an in-process Kafka
 * (librdkafka's mock cluster), fed a simulated storm over the Miyun
 * registry at an accelerated pace, with each alert shown as it happens.
 * Needs nothing installed; uses Redis only when told where it is. */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/load.h"
#include "fenghuo/reading.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"
#include "daemon.h"
#include "log.h"

typedef struct line {
        char *text;
        size_t len;
        int64_t ts;        /* FH_TIME_NONE for bad lines: sent with the previous step */
        int kind;          /* topic; bad lines go to the rain topic */
        char key[FH_SENSOR_ID_MAX + 1];
} line;

typedef struct demo {
        uv_loop_t loop;
        fh_daemon *daemon;
        rd_kafka_t *rk;          /* the feeding producer; hosts the mock cluster */
        const fh_registry *reg;
        line *lines;
        size_t n_lines, cap_lines, next;
        size_t produced;
        int64_t step_ms;
        int64_t sim_now;
        uint64_t seed;
        uint64_t pace_ms;
        uv_timer_t pace;
        uv_signal_t sigint, sigterm;
        bool color;
        bool json;               /* alerts as JSON Lines on stdout, the rest on stderr */
        FILE *out;               /* where the header, progress and summary go */
        bool stopping;
        bool feeding_done;
        uint64_t drain_deadline;
        uint64_t wait_since;     /* when the daemon last fell behind the feed */
        int exit_code;
        size_t by_event[FH_EVENT__MAX];
        size_t by_level[FH_LEVEL__MAX];
        size_t active;
        char topics[FH_KIND__MAX][32];
} demo;

/* What an operator reads is in Chinese, as the rule titles, the station
 * names and the SMS texts are: the national tier names, the verbs of the
 * alert lifecycle. The usage text and errors stay those of the CLI. */
static const char *const tier_name[FH_LEVEL__MAX] = { "解除", "蓝色IV", "黄色III", "橙色II", "红色I" };
static const char *const level_color[FH_LEVEL__MAX] = { "\033[30;42m", "\033[97;44m", "\033[30;43m",
                                                        "\033[30;48;5;208m", "\033[97;41m" };
static const char *const event_verb[FH_EVENT__MAX] = { "发布", "升级", "降级", "解除" };

enum { WIDTH = 80 };

/* ---- display columns ---- */

/* One UTF-8 character at s: its length in bytes, the code point in *cp
 * (U+FFFD for a broken sequence, which then counts one byte). */
static size_t next_char(const char *s, size_t n, uint32_t *cp) {
        unsigned char c = (unsigned char) s[0];
        size_t len = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t v = len == 1 ? c : c & (0x7Fu >> len);

        if (len > n)
                len = 1;
        for (size_t i = 1; i < len; i++) {
                if (((unsigned char) s[i] & 0xC0) != 0x80) {
                        *cp = 0xFFFD;
                        return 1;
                }
                v = v << 6 | ((unsigned char) s[i] & 0x3F);
        }
        *cp = len == 1 && c >= 0x80 ? 0xFFFD : v;
        return len;
}

/* Terminal columns of a code point: two for East Asian Wide and Fullwidth
 * (UAX #11: Han, kana, Hangul, fullwidth punctuation like "："), none for
 * combining marks, one for the rest, the ambiguous ones (·, ≥, µ, …, ─)
 * included, as glibc's wcwidth() counts them in every UTF-8 locale. */
static size_t cp_cols(uint32_t c) {
        static const uint32_t wide[][2] = {
                { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF },
                { 0x4E00, 0x9FFF }, { 0xA000, 0xA4CF }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF },
                { 0xFE30, 0xFE4F }, { 0xFF00, 0xFF60 }, { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F },
                { 0x20000, 0x3FFFD },
        };
        if ((c >= 0x0300 && c <= 0x036F) || (c >= 0x200B && c <= 0x200F) || (c >= 0xFE00 && c <= 0xFE0F))
                return 0;
        for (size_t i = 0; i < FH_ARRAY_SIZE(wide); i++)
                if (c >= wide[i][0] && c <= wide[i][1])
                        return 2;
        return 1;
}

/* The length of a colour sequence (ESC [ ... m) at s, 0 when none. */
static size_t escape_len(const char *s, size_t n) {
        size_t i = 2;

        if (n < 2 || s[0] != '\033' || s[1] != '[')
                return 0;
        while (i < n && s[i] != 'm')
                i++;
        return i < n ? i + 1 : 0;
}

static size_t text_cols(const char *s, size_t n) {
        size_t cols = 0;

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t k = escape_len(s + i, n - i);
                if (k) {
                        i += k;
                        continue;
                }
                i += next_char(s + i, n - i, &cp);
                cols += cp_cols(cp);
        }
        return cols;
}

/* Appends s[0..n) in at most `cols` columns, cut with "…" when wider
 * (never wrapped), and when `pad` filled with spaces to exactly `cols`. */
static void put_cols(fh_buf *out, const char *s, size_t n, size_t cols, bool pad) {
        size_t used = 0, i = 0;
        bool colored = false;

        if (text_cols(s, n) <= cols) {
                fh_buf_append(out, s, n);
                used = text_cols(s, n);
        } else {
                while (i < n) {
                        uint32_t cp;
                        size_t k = escape_len(s + i, n - i);
                        if (k) {
                                fh_buf_append(out, s + i, k);
                                colored = true;
                                i += k;
                                continue;
                        }
                        k = next_char(s + i, n - i, &cp);
                        if (used + cp_cols(cp) + 1 > cols)
                                break;
                        fh_buf_append(out, s + i, k);
                        used += cp_cols(cp);
                        i += k;
                }
                if (cols > 0) {
                        fh_buf_puts(out, "…");
                        used++;
                }
                if (colored)
                        fh_buf_puts(out, "\033[0m");
        }
        while (pad && used++ < cols)
                fh_buf_putc(out, ' ');
}

static void put_cols_s(fh_buf *out, const char *s, size_t cols) {
        put_cols(out, s, strlen(s), cols, true);
}

/* Every line the demo prints, alerts and all: one terminal line of at
 * most WIDTH columns. */
static void put_line(FILE *f, const fh_buf *text) {
        fh_buf b = FH_BUF_NULL;

        put_cols(&b, text->data ? text->data : "", text->len, WIDTH, false);
        fh_buf_putc(&b, '\n');
        fwrite(b.data, 1, b.len, f);
        fflush(f);
        fh_buf_free(&b);
}

__attribute__((format(printf, 2, 3))) static void say(FILE *f, const char *fmt, ...) {
        char text[1024];
        va_list ap;

        va_start(ap, fmt);
        int n = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        fh_buf b = { .data = text, .len = n < 0 ? 0 : (size_t) n < sizeof(text) ? (size_t) n : sizeof(text) - 1 };
        put_line(f, &b);
}

/* ---- what an alert line shows ---- */

/* 50, 157.5, 0.35: no trailing zeros, and never "-0". */
static void put_number(fh_buf *out, double v) {
        char tmp[64];
        int n = snprintf(tmp, sizeof(tmp), "%.2f", v);

        while (n > 0 && tmp[n - 1] == '0')
                n--;
        if (n > 0 && tmp[n - 1] == '.')
                n--;
        tmp[n] = 0;
        fh_buf_puts(out, strcmp(tmp, "-0") == 0 ? "0" : tmp);
}

/* "  52.2 mm  ": the value in the rule's unit (rules/fields.yaml), in 11
 * columns whatever the unit ("mm/d", "µε", none). */
static void put_value(fh_buf *out, const fh_rule *r, double v) {
        char tmp[64];

        if (isfinite(v))
                snprintf(tmp, sizeof(tmp), "%6.1f %s", v, r->unit ? r->unit : "");
        else
                snprintf(tmp, sizeof(tmp), "%6s", "-");
        put_cols_s(out, tmp, 11);
}

/* Whether q is the rule's report over other windows (`sum(rain_mm, 6h)`
 * for a report `sum(rain_mm, 3h)`): the same quantity in the same unit,
 * over the window returned in *ret_ms. A rate's unit has its window in it,
 * so rates never qualify. */
static bool same_but_window(const fh_ruleset *rs, const fh_program *q, const fh_program *report, int64_t *ret_ms) {
        int64_t ms = 0;

        if (!report || q->n != report->n)
                return false;
        for (uint32_t i = 0; i < q->n; i++) {
                const fh_insn *x = &q->code[i], *y = &report->code[i];
                if (x->op != y->op || x->field != y->field || memcmp(&x->k, &y->k, sizeof(x->k)) != 0)
                        return false;
                if (x->arg == y->arg)
                        continue;
                if (x->op < FH_OP_SUM || x->op > FH_OP_DELTA || ms)
                        return false;
                ms = rs->syms.windows[x->arg].ms;
        }
        if (!ms)
                return false;
        *ret_ms = ms;
        return true;
}

/* The threshold tier l crosses at st, in terms the operator can set
 * against the value: "≥100 mm" for the report itself, "≥50 mm(6h)" for
 * the report over another window, ">90 min" for a silence (age() counts
 * seconds); just the bound for another quantity. Empty when the tier has
 * no single threshold (fh_rule_threshold). */
static void put_threshold(fh_buf *out, const demo *dm, const fh_rule *r, const fh_station *st, fh_level l) {
        static const char *const cmp_sign[] = { [FH_OP_LT] = "<", [FH_OP_LE] = "≤", [FH_OP_GT] = ">",
                                                [FH_OP_GE] = "≥", [FH_OP_EQ] = "=", [FH_OP_NE] = "≠" };
        const fh_engine *e = fh_daemon_engine(dm->daemon);
        fh_threshold th;
        int64_t ms;
        char dur[32];

        if (!fh_rule_threshold(e, r, st, l, &th))
                return;
        fh_buf_puts(out, cmp_sign[th.op]);
        if (th.quantity.n == 1 && th.quantity.code[0].op == FH_OP_AGE && th.bound >= 0 && th.bound < 1e12) {
                /* In the largest unit that is exact, by its SI symbol as the
                 * other units are: "90 min", not "90m", which reads as
                 * metres next to a water level. */
                static const struct { int64_t s; const char *name; } per[] = {
                        { 86400, " d" }, { 3600, " h" }, { 60, " min" }, { 1, " s" },
                };
                int64_t sec = (int64_t) llround(th.bound);
                for (size_t i = 0; i < FH_ARRAY_SIZE(per); i++)
                        if (sec % per[i].s == 0 || per[i].s == 1) {
                                fh_buf_printf(out, "%lld%s", (long long) (sec / per[i].s), per[i].name);
                                break;
                        }
                return;
        }
        put_number(out, th.bound);
        bool report = fh_program_same(&th.quantity, r->report);
        bool windowed = !report && same_but_window(fh_engine_rules(e), &th.quantity, r->report, &ms);
        if ((report || windowed) && r->unit && r->unit[0])
                fh_buf_printf(out, " %s", r->unit);
        if (windowed) {
                fh_duration_format(ms, dur, sizeof(dur));
                fh_buf_printf(out, "(%s)", dur);
        }
}

/* The tier in its colour, or in brackets without colour: nine columns. */
static void put_badge(fh_buf *out, const demo *dm, fh_level tier, bool cleared) {
        char tmp[32];

        if (dm->color) {
                fh_buf_puts(out, level_color[cleared ? FH_LEVEL_NONE : tier]);
                fh_buf_putc(out, ' ');
                put_cols_s(out, tier_name[tier], 7);
                fh_buf_puts(out, " \033[0m");
        } else {
                snprintf(tmp, sizeof(tmp), "[%s]", tier_name[tier]);
                put_cols_s(out, tmp, 9);
        }
}

static int collect(void *userdata, const char *text, size_t len) {
        demo *dm = userdata;
        fh_reading r;
        line *l;

        if (dm->n_lines == dm->cap_lines) {
                dm->cap_lines = dm->cap_lines ? dm->cap_lines * 2 : 4096;
                dm->lines = fh_realloc(dm->lines, dm->cap_lines * sizeof(*dm->lines));
        }
        l = &dm->lines[dm->n_lines++];
        *l = (line) { .text = fh_strndup(text, len), .len = len, .ts = FH_TIME_NONE, .kind = FH_KIND_RAIN };
        if (fh_reading_parse(text, len, &r, NULL, 0) == FH_REJECT_NONE) {
                const fh_station *st = fh_registry_find(dm->reg, r.sensor, r.sensor_len);
                l->ts = r.ts_ms;
                if (st)
                        l->kind = st->kind;
                memcpy(l->key, r.sensor, r.sensor_len + 1u);
        }
        return 0;
}

static void show_alert(void *userdata, const fh_alert *a, const char *json, size_t len) {
        demo *dm = userdata;
        char ts[FH_TIME_LOCAL_MAX];

        dm->by_event[a->event]++;
        dm->by_level[a->level]++;
        if (a->event == FH_EVENT_RAISED)
                dm->active++;
        else if (a->event == FH_EVENT_CLEARED)
                dm->active--;
        if (dm->json) {
                /* The same lines `replay` prints, so the two can be compared. */
                fwrite(json, 1, len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
                return;
        }
        /* A clear speaks of the tier it ends, and of that tier's threshold. */
        bool cleared = a->event == FH_EVENT_CLEARED;
        fh_level tier = cleared ? a->previous : a->level;
        fh_buf text = FH_BUF_NULL, th = FH_BUF_NULL;
        fh_time_format_local(a->ts_ms, 480, ts);
        fh_buf_printf(&text, "%s ", ts + 5);
        put_badge(&text, dm, tier, cleared);
        fh_buf_printf(&text, " %s ", event_verb[a->event]);
        put_value(&text, a->rule, a->value);
        fh_buf_putc(&text, ' ');
        put_threshold(&th, dm, a->rule, a->station, tier);
        put_cols(&text, th.data ? th.data : "", th.len, 11, true);
        fh_buf_printf(&text, " %s %s", a->rule->title ? a->rule->title : a->rule->id, a->station->name);
        put_line(stdout, &text);
        fh_buf_free(&text);
        fh_buf_free(&th);
}

/* The column heads of the alert lines, aligned with show_alert's. */
static void alert_heads(demo *dm) {
        fh_buf text = FH_BUF_NULL;

        put_cols_s(&text, "时间", 12);
        put_cols_s(&text, "级别", 10);
        put_cols_s(&text, "事件", 5);
        put_cols_s(&text, "    值", 12);
        put_cols_s(&text, "阈值", 12);
        fh_buf_puts(&text, "预警 站点");
        put_line(dm->out, &text);
        fh_buf_free(&text);
}

typedef struct active_alert {
        const fh_rule *rule;
        const fh_station *station;
        fh_level level;
        int64_t raised_ms;
        double value;
} active_alert;

typedef struct active_list {
        active_alert *items;
        size_t n, cap;
} active_list;

static void collect_active(void *userdata, const fh_alert *a) {
        active_list *l = userdata;

        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 64;
                l->items = fh_realloc(l->items, l->cap * sizeof(*l->items));
        }
        l->items[l->n++] = (active_alert) { a->rule, a->station, a->level, a->raised_ms, a->value };
}

/* Red first; within a tier the oldest first. */
static int active_order(const void *x, const void *y) {
        const active_alert *a = x, *b = y;

        if (a->level != b->level)
                return a->level > b->level ? -1 : 1;
        if (a->raised_ms != b->raised_ms)
                return a->raised_ms < b->raised_ms ? -1 : 1;
        return strcmp(a->station->id, b->station->id);
}

/* What an operator still has to deal with when the storm is over: the
 * engine's own active alerts (those `replay` leaves open), each with the
 * value of its last level change. */
static void active_alerts(demo *dm) {
        active_list l = { 0 };
        fh_buf text = FH_BUF_NULL;
        char ts[FH_TIME_LOCAL_MAX];

        fh_daemon_foreach_active(dm->daemon, collect_active, &l);
        qsort(l.items, l.n, sizeof(*l.items), active_order);
        say(dm->out, "%s", "");
        if (l.n == 0) {
                say(dm->out, "%s── 结束时没有仍生效的预警 ──%s", dm->color ? "\033[1m" : "", dm->color ? "\033[0m" : "");
                return;
        }
        say(dm->out, "%s── 结束时仍生效的预警：%zu 条 ──%s", dm->color ? "\033[1m" : "", l.n,
            dm->color ? "\033[0m" : "");
        put_cols_s(&text, "级别", 10);
        put_cols_s(&text, "站点编号", 11);
        put_cols_s(&text, "发布时间", 12);
        put_cols_s(&text, "变更时的值", 12);
        fh_buf_puts(&text, "预警 站点");
        put_line(dm->out, &text);
        for (size_t i = 0; i < l.n; i++) {
                const active_alert *a = &l.items[i];
                fh_buf_reset(&text);
                put_badge(&text, dm, a->level, false);
                fh_buf_putc(&text, ' ');
                put_cols_s(&text, a->station->id, 10);
                fh_time_format_local(a->raised_ms, 480, ts);
                fh_buf_printf(&text, " %s ", ts + 5);
                put_value(&text, a->rule, a->value);
                fh_buf_printf(&text, " %s %s", a->rule->title ? a->rule->title : a->rule->id, a->station->name);
                put_line(dm->out, &text);
        }
        fh_buf_free(&text);
        free(l.items);
}

static void summary(demo *dm) {
        fh_engine_stats all;
        const fh_engine_stats *s = &all;
        size_t total = 0;

        fh_daemon_engine_stats(dm->daemon, &all);

        for (int i = 0; i < FH_EVENT__MAX; i++)
                total += dm->by_event[i];
        say(dm->out, "%s", "");
        say(dm->out, "%s── 小结 ──%s", dm->color ? "\033[1m" : "", dm->color ? "\033[0m" : "");
        say(dm->out, "读数：发送 %zu 条，读入 %llu 条，接受 %llu 条（重复 %llu，迟到 %llu），死信 %llu 条",
            dm->produced, (unsigned long long) fh_daemon_consumed(dm->daemon), (unsigned long long) s->accepted,
            (unsigned long long) s->duplicates, (unsigned long long) s->late,
            (unsigned long long) fh_daemon_dead_letters(dm->daemon));
        say(dm->out, "预警事件 %zu 条：发布 %zu，升级 %zu，降级 %zu，解除 %zu", total,
            dm->by_event[FH_EVENT_RAISED], dm->by_event[FH_EVENT_ESCALATED], dm->by_event[FH_EVENT_DEESCALATED],
            dm->by_event[FH_EVENT_CLEARED]);
        say(dm->out, "各级别事件：红色I %zu，橙色II %zu，黄色III %zu，蓝色IV %zu", dm->by_level[FH_LEVEL_RED],
            dm->by_level[FH_LEVEL_ORANGE], dm->by_level[FH_LEVEL_YELLOW], dm->by_level[FH_LEVEL_BLUE]);
        active_alerts(dm);
        say(dm->out, "%s", "");
        say(dm->out, "每条预警也已发到内嵌集群的 Kafka 主题 fenghuo.alerts。");
        say(dm->out, "用命令行得到同样的预警：");
        say(dm->out, "  fenghuo simulate --stations stations/miyun.csv --bad 0.003 --seed %llu |",
            (unsigned long long) dm->seed);
        say(dm->out, "    fenghuo replay --rules rules --stations stations/miyun.csv");
}

static void on_daemon_stopped(void *userdata, int code) {
        demo *dm = userdata;

        summary(dm);
        if (code)
                dm->exit_code = code;
        uv_timer_stop(&dm->pace);
        uv_close((uv_handle_t *) &dm->pace, NULL);
        uv_close((uv_handle_t *) &dm->sigint, NULL);
        uv_close((uv_handle_t *) &dm->sigterm, NULL);
}

static void stop(demo *dm) {
        if (dm->stopping)
                return;
        dm->stopping = true;
        fh_daemon_stop(dm->daemon);
}

static void on_pace(uv_timer_t *h) {
        demo *dm = h->data;

        rd_kafka_poll(dm->rk, 0);
        if (dm->stopping)
                return;
        if (dm->next >= dm->n_lines) {
                if (!dm->feeding_done) {
                        dm->feeding_done = true;
                        dm->drain_deadline = uv_now(&dm->loop) + 15000;
                        rd_kafka_flush(dm->rk, 5000);
                }
                /* Done when the daemon has taken in everything we sent. */
                if (fh_daemon_consumed(dm->daemon) >= dm->produced || uv_now(&dm->loop) > dm->drain_deadline)
                        stop(dm);
                return;
        }
        /* Lockstep: the next step only once the daemon has taken in every
         * reading sent so far. The daemon's event clock is the newest
         * timestamp of any partition, and the 16 input partitions are
         * fetched independently: a step sent early lets one partition run
         * ahead, the clock jumps, and age() ticks judge the sensors of a
         * partition that lags behind silent (false alerts, cleared at an
         * earlier time than raised when their readings arrive). With every
         * reading of one timestamp in before any of the next, the daemon
         * sees readings and tick boundaries in the order `replay` does, and
         * raises exactly its alerts; on a slow machine the demo slows down
         * instead. */
        if (fh_daemon_consumed(dm->daemon) < dm->produced) {
                if (!dm->wait_since)
                        dm->wait_since = uv_now(&dm->loop);
                else if (uv_now(&dm->loop) - dm->wait_since > 60000) {
                        fprintf(stderr, "fenghuo demo: the daemon took in %llu of %zu readings in a minute; stopping\n",
                                (unsigned long long) fh_daemon_consumed(dm->daemon), dm->produced);
                        dm->exit_code = 1;
                        stop(dm);
                }
                return;
        }
        dm->wait_since = 0;
        /* One simulated step per tick: all readings stamped at or before
         * sim_now, with the bad lines that sit among them. */
        dm->sim_now += dm->step_ms;
        while (dm->next < dm->n_lines && (dm->lines[dm->next].ts == FH_TIME_NONE || dm->lines[dm->next].ts <= dm->sim_now)) {
                line *l = &dm->lines[dm->next++];
                rd_kafka_resp_err_t err;
                do {
                        err = rd_kafka_producev(dm->rk, RD_KAFKA_V_TOPIC(dm->topics[l->kind]),
                                                RD_KAFKA_V_KEY(l->key, strlen(l->key)),
                                                RD_KAFKA_V_VALUE(l->text, l->len),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(dm->rk, 10);
                } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
                dm->produced++;
        }
        if ((dm->sim_now / dm->step_ms) % 36 == 0) {
                char ts[FH_TIME_LOCAL_MAX];
                fh_time_format_local(dm->sim_now, 480, ts);
                say(dm->out, "%s── %s · 已发送读数 %zu 条 · 生效预警 %zu 条 ──%s", dm->color ? "\033[2m" : "", ts,
                    dm->produced, dm->active, dm->color ? "\033[0m" : "");
        }
}

static void on_signal(uv_signal_t *h, int signum) {
        demo *dm = h->data;
        (void) signum;
        say(dm->out, "%s", "");
        say(dm->out, "（正在停止）");
        stop(dm);
}

static bool exists(const char *p) {
        return access(p, R_OK) == 0;
}

/* The demo runs from the source tree (./dev demo) or an install: look for
 * the bundled rules and registry where each would put them. */
static void find_data(char *rules, char *stations, size_t n) {
        char exe[PATH_MAX];
        ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        const char *bases[3] = { ".", NULL, "/usr/share/fenghuo" };

        if (k > 0) {
                exe[k] = 0;
                char *slash = strrchr(exe, '/');
                if (slash)
                        strcpy(slash, "/..");
                bases[1] = exe;
        }
        for (int i = 0; i < 3; i++) {
                if (!bases[i])
                        continue;
                snprintf(rules, n, "%s/rules", bases[i]);
                snprintf(stations, n, "%s/stations/miyun.csv", bases[i]);
                if (exists(rules) && exists(stations))
                        return;
        }
        snprintf(rules, n, "rules");
        snprintf(stations, n, "stations/miyun.csv");
}

static void usage(FILE *f) {
        fputs("usage: fenghuo demo [--seconds N] [--seed N] [--redis HOST:PORT] [--rules DIR] [--stations FILE] [--json]\n"
              "A simulated storm over Miyun through the real daemon pipeline, on an embedded\n"
              "Kafka cluster; about two minutes, Ctrl-C stops early. --json prints the alerts\n"
              "as JSON Lines on stdout, as `replay` does, and everything else on stderr.\n", f);
}

int fh_cmd_demo(int argc, char **argv) {
        static const struct option opts[] = {
                { "seconds", required_argument, NULL, 's' },
                { "seed", required_argument, NULL, 'e' },
                { "redis", required_argument, NULL, 'r' },
                { "rules", required_argument, NULL, 'R' },
                { "stations", required_argument, NULL, 'S' },
                { "verbose", no_argument, NULL, 'v' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        char rules[PATH_MAX], stations[PATH_MAX], err[512];
        const char *redis = NULL;
        double seconds = 100;
        uint64_t seed = 7;
        bool verbose = false;
        demo dm = { 0 };
        fh_diags diags = FH_DIAGS_NULL;
        fh_registry *reg = NULL;
        int c;

        find_data(rules, stations, sizeof(rules));
        optind = 1;
        while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1)
                switch (c) {
                case 's': seconds = strtod(optarg, NULL); break;
                case 'e': seed = strtoull(optarg, NULL, 10); break;
                case 'r': redis = optarg; break;
                case 'R': snprintf(rules, sizeof(rules), "%s", optarg); break;
                case 'S': snprintf(stations, sizeof(stations), "%s", optarg); break;
                case 'v': verbose = true; break;
                case 'j': dm.json = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (!(seconds >= 1 && seconds <= 3600)) {
                fputs("fenghuo demo: --seconds wants 1..3600\n", stderr);
                return 2;
        }
        fh_log_init(verbose ? LOG_INFO : LOG_WARNING);
        signal(SIGPIPE, SIG_IGN);
        dm.out = dm.json ? stderr : stdout;
        dm.color = isatty(fileno(dm.out)) && !getenv("NO_COLOR");

        if (fh_load_registry(stations, &reg, &diags) < 0) {
                fh_print_diags(&diags);
                fh_diags_clear(&diags);
                return 1;
        }
        fh_diags_clear(&diags);
        dm.reg = reg;

        fh_sim_options so = {
                .seed = seed,
                .duration_ms = 2 * 86400000LL,
                .step_ms = 10 * 60000LL,
                .bad_share = 0.003,
                .tz_offset_min = 480,
                .storm_scale = 1.0,
        };
        fh_time_parse_rfc3339("2023-07-29T00:00:00+08:00", 25, &so.start_ms, NULL);
        dm.seed = seed;
        fh_simulate(reg, &so, collect, &dm);
        dm.step_ms = so.step_ms;
        dm.sim_now = so.start_ms - so.step_ms;
        dm.pace_ms = (uint64_t) (seconds * 1000.0 / (double) (so.duration_ms / so.step_ms));
        if (dm.pace_ms == 0)
                dm.pace_ms = 1;

        /* The embedded Kafka: a mock cluster hosted by the feeding producer. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err));
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        dm.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!dm.rk) {
                fprintf(stderr, "fenghuo demo: failed to start the embedded Kafka: %s\n", err);
                fh_registry_free(reg);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(dm.rk);
        const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
        for (int k = 0; k < FH_KIND__MAX; k++) {
                snprintf(dm.topics[k], sizeof(dm.topics[k]), "miyun.%s", fh_kind_name((fh_kind) k));
                rd_kafka_mock_topic_create(mc, dm.topics[k], 4, 1);
        }
        rd_kafka_mock_topic_create(mc, "fenghuo.alerts", 4, 1);
        rd_kafka_mock_topic_create(mc, "fenghuo.deadletter", 1, 1);

        fh_daemon_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        {
                /* The same defaults a config file starts from. */
                char tmpl[] = "/tmp/fenghuo-demo-XXXXXX";
                int fd = mkstemp(tmpl);
                FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
                if (!f) {
                        fprintf(stderr, "fenghuo demo: cannot write a temporary config: %m\n");
                        rd_kafka_destroy(dm.rk);
                        fh_registry_free(reg);
                        return 1;
                }
                /* One shard: the alerts print in the order replay gives
                 * them, not as two shard threads interleave them. */
                fprintf(f, "rules: \"%s\"\nstations: \"%s\"\nclock: event\nshards: 1\nstats_interval: 0s\ncheckpoint_interval: 0s\n"
                           "shutdown_timeout: 5s\nlog_level: %s\n"
                           "kafka:\n  brokers: \"%s\"\n  group_id: fenghuo-demo\n  alerts_topic: fenghuo.alerts\n"
                           "  dead_letter_topic: fenghuo.deadletter\n  topics:\n",
                        rules, stations, verbose ? "info" : "warning", bootstraps);
                for (int k = 0; k < FH_KIND__MAX; k++)
                        fprintf(f, "    %s: %s\n", fh_kind_name((fh_kind) k), dm.topics[k]);
                /* The broker answers a fetch at once when it has data, else after
                 * fetch.wait.max.ms: in lockstep (on_pace) that wait is paid
                 * at every step, so it is short. */
                fprintf(f, "  properties:\n    log_level: \"3\"\n  consumer_properties:\n    session.timeout.ms: \"6000\"\n"
                           "    fetch.wait.max.ms: \"5\"\n");
                if (redis) {
                        const char *colon = strrchr(redis, ':');
                        fprintf(f, "redis:\n  host: \"%.*s\"\n  port: %s\n", colon ? (int) (colon - redis) : (int) strlen(redis),
                                redis, colon ? colon + 1 : "6379");
                }
                fclose(f);
                int r = fh_daemon_config_load(tmpl, &cfg, &diags);
                unlink(tmpl);
                if (r < 0) {
                        fh_print_diags(&diags);
                        fh_diags_clear(&diags);
                        rd_kafka_destroy(dm.rk);
                        fh_registry_free(reg);
                        return 1;
                }
        }

        uv_loop_init(&dm.loop);
        fh_daemon_hooks hooks = { .on_alert = show_alert, .on_stopped = on_daemon_stopped, .userdata = &dm };
        const fh_ruleset *rs = NULL;
        if (fh_daemon_new(&dm.daemon, &dm.loop, &cfg, &hooks) < 0) {
                /* What the start left on the loop is closing: let it finish. */
                uv_run(&dm.loop, UV_RUN_DEFAULT);
                uv_loop_close(&dm.loop);
                rd_kafka_destroy(dm.rk);
                fh_registry_free(reg);
                return 1;
        }
        rs = fh_engine_rules(fh_daemon_engine(dm.daemon));

        say(dm.out, "%s烽火 fenghuo · 密云暴雨模拟%s", dm.color ? "\033[1m" : "", dm.color ? "\033[0m" : "");
        say(dm.out, "站点 %zu 个，规则 %zu 条（%s）", reg->n_stations, rs->n_rules, rules);
        say(dm.out, "内嵌 Kafka（librdkafka 模拟集群）：%s%s%s", bootstraps, redis ? "；Redis：" : "",
            redis ? redis : "");
        say(dm.out, "模拟 2023-07-29 00:00 至 2023-07-31 00:00，读数 %zu 条（坏数据 %.1f%%）", dm.n_lines,
            so.bad_share * 100);
        say(dm.out, "约 %.0f 秒放完，Ctrl-C 提前停止。", seconds);
        say(dm.out, "%s", "");
        if (!dm.json)
                alert_heads(&dm);

        uv_timer_init(&dm.loop, &dm.pace);
        dm.pace.data = &dm;
        uv_timer_start(&dm.pace, on_pace, 3000, dm.pace_ms);   /* first, let the consumer join */
        uv_signal_init(&dm.loop, &dm.sigint);
        uv_signal_init(&dm.loop, &dm.sigterm);
        dm.sigint.data = dm.sigterm.data = &dm;
        uv_signal_start(&dm.sigint, on_signal, SIGINT);
        uv_signal_start(&dm.sigterm, on_signal, SIGTERM);

        uv_run(&dm.loop, UV_RUN_DEFAULT);
        fh_daemon_free(dm.daemon);
        uv_run(&dm.loop, UV_RUN_NOWAIT);
        uv_loop_close(&dm.loop);
        rd_kafka_destroy(dm.rk);
        for (size_t i = 0; i < dm.n_lines; i++)
                free(dm.lines[i].text);
        free(dm.lines);
        fh_registry_free(reg);
        return dm.exit_code;
}
