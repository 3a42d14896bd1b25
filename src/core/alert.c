#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fenghuo/engine.h"
#include "fenghuo/timeutil.h"
#include "engine-internal.h"

static const char *rule_title(const fh_rule *r) {
        return r->title ? r->title : r->id;
}

static void put_value_1dp(fh_buf *out, double v) {
        char tmp[64];

        if (!isfinite(v))
                return;
        snprintf(tmp, sizeof(tmp), "%.1f", v);
        /* "-0.0" reads as a sign error on an SMS: a tiny negative is 0.0. */
        fh_buf_puts(out, strcmp(tmp, "-0.0") == 0 ? "0.0" : tmp);
}

static void put_station_column(const fh_engine *e, const fh_station *st, const char *col, fh_buf *out) {
        int c = fh_registry_column(e->reg, col, strlen(col));
        const fh_attr *a = fh_station_attr(st, c);

        if (a)
                fh_buf_append(out, a->str, a->len);
}

static void render(const fh_engine *e, const fh_alert *a, const fh_template *t, fh_buf *out) {
        char tbuf[FH_TIME_LOCAL_MAX];

        for (size_t i = 0; i < t->n_parts; i++) {
                const fh_tpl_part *p = &t->parts[i];
                switch (p->kind) {
                case FH_TPL_TEXT:
                        fh_buf_append(out, p->text, p->len);
                        break;
                case FH_TPL_SENSOR:
                        fh_buf_append(out, a->station->id, a->station->id_len);
                        break;
                case FH_TPL_STATION:
                        put_station_column(e, a->station, p->text, out);
                        break;
                case FH_TPL_TITLE:
                        fh_buf_puts(out, rule_title(a->rule));
                        break;
                case FH_TPL_LEVEL:
                        fh_buf_puts(out, fh_level_name(a->level));
                        break;
                case FH_TPL_LEVEL_CN:
                        fh_buf_puts(out, fh_level_name_cn(a->level));
                        break;
                case FH_TPL_VALUE:
                        put_value_1dp(out, a->value);
                        break;
                case FH_TPL_TS:
                        fh_time_format_local(a->ts_ms, e->cfg.tz_offset_min, tbuf);
                        fh_buf_puts(out, tbuf);
                        break;
                case FH_TPL_UNIT:
                        /* Load refuses {unit} without a unit. */
                        if (a->rule->unit)
                                fh_buf_puts(out, a->rule->unit);
                        break;
                }
        }
}

static void render_default(const fh_engine *e, const fh_alert *a, fh_buf *out) {
        char tbuf[FH_TIME_LOCAL_MAX];

        /* 【暴雨预警】石城镇黄峪口（MY-RG-0012）橙色预警，当前值63.5，2023-07-30 14:05 */
        fh_buf_puts(out, "【");
        fh_buf_puts(out, rule_title(a->rule));
        fh_buf_puts(out, "】");
        fh_buf_append(out, a->station->name, a->station->name_len);
        fh_buf_puts(out, "（");
        fh_buf_append(out, a->station->id, a->station->id_len);
        fh_buf_puts(out, "）");
        if (a->event == FH_EVENT_CLEARED) {
                fh_buf_puts(out, "预警解除");
        } else {
                fh_buf_puts(out, fh_level_name_cn(a->level));
                fh_buf_puts(out, "预警");
        }
        if (isfinite(a->value)) {
                fh_buf_puts(out, "，当前值");
                put_value_1dp(out, a->value);
        }
        fh_buf_puts(out, "，");
        fh_time_format_local(a->ts_ms, e->cfg.tz_offset_min, tbuf);
        fh_buf_puts(out, tbuf);
}

/* An alert ended by a reload: the rule's own template speaks of readings,
 * which are not why it ended, so the text says what happened instead.
 * 【暴雨预警】石城镇黄峪口（MY-RG-0012）预警解除：预警规则已修改，2023-07-30 14:05 */
static void render_ended(const fh_engine *e, const fh_alert *a, fh_buf *out) {
        static const char *const why[FH_END__MAX] = {
                [FH_END_RULE_CHANGED] = "预警规则已修改",
                [FH_END_RULE_REMOVED] = "预警规则已删除",
                [FH_END_STATION_REMOVED] = "站点已从站点表删除",
                [FH_END_RULE_UNMATCHED] = "预警规则不再适用于该站点",
        };
        char tbuf[FH_TIME_LOCAL_MAX];

        fh_buf_puts(out, "【");
        fh_buf_puts(out, rule_title(a->rule));
        fh_buf_puts(out, "】");
        fh_buf_append(out, a->station->name, a->station->name_len);
        fh_buf_puts(out, "（");
        fh_buf_append(out, a->station->id, a->station->id_len);
        fh_buf_puts(out, "）预警解除：");
        fh_buf_puts(out, why[a->reason]);
        fh_buf_puts(out, "，");
        fh_time_format_local(a->ts_ms, e->cfg.tz_offset_min, tbuf);
        fh_buf_puts(out, tbuf);
}

void fh_alert_message(const fh_engine *e, const fh_alert *a, fh_buf *out) {
        if (a->reason > FH_END_NONE && a->reason < FH_END__MAX)
                render_ended(e, a, out);
        else if (a->rule->message)
                render(e, a, a->rule->message, out);
        else
                render_default(e, a, out);
}

void fh_alert_to_json(const fh_engine *e, const fh_alert *a, fh_buf *out) {
        const fh_registry *reg = e->reg;
        const fh_station *st = a->station;
        char tbuf[FH_TIME_RFC3339_MAX];
        char id[FH_RULE_ID_MAX + FH_SENSOR_ID_MAX + 32];
        int n = snprintf(id, sizeof(id), "%s:%.*s:%lld", a->rule->id, (int) st->id_len, st->id,
                         (long long) a->raised_ms);

        /* Nothing here allocates but out's growth: out is reused from one
         * alert to the next, and an alert costs no malloc once it is big
         * enough (tests/test_alloc.c). */
        fh_buf_puts(out, "{\"alert_id\":");
        fh_buf_json_string(out, id, n < 0 ? 0 : FH_MIN((size_t) n, sizeof(id) - 1));
        fh_buf_puts(out, ",\"event\":\"");
        fh_buf_puts(out, fh_event_name(a->event));
        fh_buf_puts(out, "\",\"rule\":");
        fh_buf_json_string(out, a->rule->id, strlen(a->rule->id));
        fh_buf_puts(out, ",\"sensor\":");
        fh_buf_json_string(out, st->id, st->id_len);
        fh_buf_printf(out, ",\"level\":\"%s\",\"previous\":\"%s\",\"severity\":%d,\"ts\":\"",
                      fh_level_name(a->level), fh_level_name(a->previous), fh_level_severity(a->level));
        fh_time_format_rfc3339(a->ts_ms, e->cfg.tz_offset_min, tbuf);
        fh_buf_puts(out, tbuf);
        fh_buf_puts(out, "\",\"value\":");
        fh_buf_json_number(out, a->value);
        if (fh_end_reason_name(a->reason)) {
                fh_buf_puts(out, ",\"reason\":\"");
                fh_buf_puts(out, fh_end_reason_name(a->reason));
                fh_buf_putc(out, '"');
        }
        fh_buf_puts(out, ",\"title\":");
        fh_buf_json_string(out, rule_title(a->rule), strlen(rule_title(a->rule)));

        /* The station as the registry describes it, so a gateway can route
         * and map an alert without a registry of its own. */
        fh_buf_puts(out, ",\"station\":{\"name\":");
        fh_buf_json_string(out, st->name, st->name_len);
        for (size_t c = 0; c < reg->n_columns; c++) {
                const char *col = reg->columns[c];
                const fh_attr *at = &st->attrs[c];
                if (!at->present || !strcmp(col, "id") || !strcmp(col, "kind") || !strcmp(col, "name"))
                        continue;
                fh_buf_putc(out, ',');
                fh_buf_json_string(out, col, strlen(col));
                fh_buf_putc(out, ':');
                if (at->is_number)
                        fh_buf_json_number(out, at->num);
                else
                        fh_buf_json_string(out, at->str, at->len);
        }
        fh_buf_puts(out, "},\"message\":");
        size_t msg = out->len;
        fh_alert_message(e, a, out);
        fh_buf_json_quote_tail(out, msg);
        fh_buf_putc(out, '}');
}

typedef struct station_env {
        const fh_engine *e;
        const fh_station *st;
} station_env;

static double env_station(void *ctx, unsigned attr) {
        station_env *se = ctx;
        const fh_attr *at = fh_station_attr(se->st, se->e->attr_col[attr]);
        return at && at->is_number ? at->num : NAN;
}

static double env_none(void *ctx) {
        return NAN;
}

static double env_no_field(void *ctx, fh_opcode op, unsigned field, unsigned window) {
        return NAN;
}

bool fh_rule_threshold(const fh_engine *e, const fh_rule *rule, const fh_station *st, fh_level l,
                       fh_threshold *ret) {
        const fh_program *p = l > FH_LEVEL_NONE && l < FH_LEVEL__MAX ? rule->levels[l] : NULL;
        fh_compare cmp;

        /* The comparison must be the whole condition: in `not (x > 1)` or
         * `x > 1 and y > 2` its bound is not what the tier crossed. */
        if (!p || fh_program_compares(p, &cmp, 1) != 1 || p->code[p->n - 1].op != cmp.op)
                return false;
        /* A bound that reads a field evaluates to NaN here: no threshold. */
        station_env se = { e, st };
        fh_eval_env env = { env_no_field, env_station, env_none, &se };
        double v = fh_program_eval(&cmp.right, &env);
        if (!isfinite(v))
                return false;
        *ret = (fh_threshold) { .op = cmp.op, .bound = v, .quantity = cmp.left };
        return true;
}

int fh_alert_key_of(const char *alert_id, size_t id_len, const char *event, size_t event_len, int64_t ts_ms,
                    char *buf, size_t n) {
        int w = snprintf(buf, n, "%.*s|%.*s|%lld", (int) id_len, alert_id, (int) event_len, event, (long long) ts_ms);

        return w < 0 || (size_t) w >= n ? -ENOSPC : 0;
}

int fh_alert_key(const fh_alert *a, char *buf, size_t n) {
        char id[FH_RULE_ID_MAX + FH_SENSOR_ID_MAX + 32];
        const char *ev = fh_event_name(a->event);
        int w = snprintf(id, sizeof(id), "%s:%.*s:%lld", a->rule->id, (int) a->station->id_len, a->station->id,
                         (long long) a->raised_ms);

        if (w < 0 || (size_t) w >= sizeof(id))
                return -ENOSPC;
        return fh_alert_key_of(id, (size_t) w, ev, strlen(ev), a->ts_ms, buf, n);
}
