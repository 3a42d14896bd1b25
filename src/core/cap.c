#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/cap.h"
#include "fenghuo/timeutil.h"
#include "engine-internal.h"

/* XML 1.0 text: the five markup characters as entities; control characters
 * and invalid UTF-8, which XML cannot carry even as references, as U+FFFD,
 * so that no station name or rule title can make a message unparseable. */
static void put_xml(fh_buf *out, const char *s, size_t n) {
        static const char repl[] = "\xEF\xBF\xBD";
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < n) {
                unsigned c = p[i];
                if (c < 0x80) {
                        switch (c) {
                        case '&': fh_buf_puts(out, "&amp;"); break;
                        case '<': fh_buf_puts(out, "&lt;"); break;
                        case '>': fh_buf_puts(out, "&gt;"); break;
                        case '"': fh_buf_puts(out, "&quot;"); break;
                        case '\'': fh_buf_puts(out, "&apos;"); break;
                        default:
                                if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                                        fh_buf_puts(out, repl);
                                else
                                        fh_buf_putc(out, (char) c);
                        }
                        i++;
                        continue;
                }
                size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
                unsigned cp = len == 4 ? c & 0x07 : len == 3 ? c & 0x0F : c & 0x1F;
                bool ok = len > 0 && c <= 0xF4 && i + len <= n;
                for (size_t k = 1; ok && k < len; k++) {
                        if ((p[i + k] & 0xC0) != 0x80)
                                ok = false;
                        cp = (cp << 6) | (p[i + k] & 0x3F);
                }
                /* Overlong forms, surrogates and U+FFFE/FFFF are not XML characters. */
                if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp >= 0xFFFE)) ||
                           (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
                        ok = false;
                if (ok) {
                        fh_buf_append(out, p + i, len);
                        i += len;
                } else {
                        fh_buf_puts(out, repl);
                        i++;
                }
        }
}

static void put_elem(fh_buf *out, const char *indent, const char *name, const char *s, size_t n) {
        fh_buf_printf(out, "%s<%s>", indent, name);
        put_xml(out, s, n);
        fh_buf_printf(out, "</%s>\n", name);
}

static void put_elem_s(fh_buf *out, const char *indent, const char *name, const char *s) {
        put_elem(out, indent, name, s, strlen(s));
}

/* CAP's dateTime: seconds, and an explicit offset (never 'Z'). */
static void format_sent(int64_t ts_ms, int offset_min, char buf[FH_TIME_RFC3339_MAX]) {
        fh_time_format_rfc3339(fh_floor_div(ts_ms, 1000) * 1000, offset_min, buf);
}

static const char *msg_type(fh_event e) {
        switch (e) {
        case FH_EVENT_RAISED: return "Alert";
        case FH_EVENT_CLEARED: return "Cancel";
        default: return "Update";
        }
}

/* CAP 1.2 severity of a tier: the national profile's Red/Orange/Yellow/Blue
 * (I-IV: 特别重大/重大/较大/一般) in CAP's own vocabulary. */
static const char *severity(fh_level l) {
        switch (l) {
        case FH_LEVEL_RED: return "Extreme";
        case FH_LEVEL_ORANGE: return "Severe";
        case FH_LEVEL_YELLOW: return "Moderate";
        case FH_LEVEL_BLUE: return "Minor";
        default: return "Unknown";
        }
}

static const char *urgency(const fh_alert *a) {
        if (a->event == FH_EVENT_CLEARED)
                return "Past";
        return a->level >= FH_LEVEL_ORANGE ? "Immediate" : "Expected";
}

static const char *category(fh_kind k) {
        switch (k) {
        case FH_KIND_LANDSLIDE: return "Geo";
        case FH_KIND_BRIDGE: return "Infra";
        default: return "Met";    /* rain and floods are meteorological in CAP */
        }
}

static const char *tier_roman(fh_level l) {
        static const char *const r[] = { "", "IV", "III", "II", "I" };
        return l < FH_LEVEL__MAX ? r[l] : "";
}

static void alert_id(const fh_alert *a, fh_buf *out) {
        fh_buf_printf(out, "%s:%s:%lld", a->rule->id, a->station->id, (long long) a->raised_ms);
}

int fh_cap_config_check(const fh_cap_config *cfg, char *why, size_t why_size) {
        if (!cfg->unit || strlen(cfg->unit) != FH_CAP_UNIT_LEN || strspn(cfg->unit, "0123456789") != FH_CAP_UNIT_LEN) {
                snprintf(why, why_size, "the issuing-unit code must be %d digits (GB/T 2260 district code, "
                         "GB/T 4657 institution code, then 00000), got '%s'", FH_CAP_UNIT_LEN, cfg->unit ? cfg->unit : "");
                return -EINVAL;
        }
        size_t n = cfg->sender ? strlen(cfg->sender) : 0;
        if (n == 0 || n > FH_CAP_SENDER_MAX || strpbrk(cfg->sender, " \t\r\n,<&")) {
                snprintf(why, why_size, "the sender must be 1-%d bytes without spaces, commas, '<' or '&' "
                         "(CAP 1.2 puts it into references), got '%s'", FH_CAP_SENDER_MAX, cfg->sender ? cfg->sender : "");
                return -EINVAL;
        }
        if (!(cfg->radius_km > 0 && cfg->radius_km <= 1000)) {
                snprintf(why, why_size, "the area radius must be in (0, 1000] km");
                return -EINVAL;
        }
        return 0;
}

void fh_cap_identifier(const fh_cap_config *cfg, const char *id, fh_event event, int64_t ts_ms, fh_buf *out) {
        char t[FH_TIME_RFC3339_MAX];
        uint64_t h = FH_FNV1A_INIT;
        char ts[24];

        /* "2023-07-30T14:05:00+08:00" -> "20230730140500" */
        format_sent(ts_ms, cfg->tz_offset_min, t);
        fh_buf_puts(out, cfg->unit);
        fh_buf_putc(out, '_');
        fh_buf_append(out, t, 4);
        fh_buf_append(out, t + 5, 2);
        fh_buf_append(out, t + 8, 2);
        fh_buf_append(out, t + 11, 2);
        fh_buf_append(out, t + 14, 2);
        fh_buf_append(out, t + 17, 2);
        /* The standard's sequence counts the unit's messages within one
         * second; a counter would differ between a replay and a restarted
         * daemon, so the number is a 64-bit hash of what makes the message
         * unique instead (the same pair never has two events at one ts). */
        h = fh_fnv1a(h, id, strlen(id) + 1);
        h = fh_fnv1a(h, fh_event_name(event), strlen(fh_event_name(event)) + 1);
        snprintf(ts, sizeof(ts), "%lld", (long long) ts_ms);
        h = fh_fnv1a(h, ts, strlen(ts));
        fh_buf_printf(out, "_%llu", (unsigned long long) h);
}

static const fh_attr *attr(const fh_engine *e, const fh_station *st, const char *col) {
        return fh_station_attr(st, fh_registry_column(e->reg, col, strlen(col)));
}

/* A registry `polygon` cell in CAP syntax: at least four "lat,lon" pairs
 * separated by spaces, the last equal to the first. */
static bool valid_polygon(const char *s, size_t n) {
        const char *p = s, *end = s + n, *first = NULL, *last = NULL;
        size_t first_len = 0, last_len = 0, pairs = 0;

        while (p < end) {
                const char *q = p;
                while (q < end && *q != ' ')
                        q++;
                if (q == p)
                        return false;
                char tmp[64];
                if ((size_t) (q - p) >= sizeof(tmp))
                        return false;
                memcpy(tmp, p, (size_t) (q - p));
                tmp[q - p] = 0;
                char *comma = strchr(tmp, ','), *e1, *e2;
                if (!comma)
                        return false;
                double lat = strtod(tmp, &e1), lon = strtod(comma + 1, &e2);
                if (e1 != comma || *e2 || !(lat >= -90 && lat <= 90) || !(lon >= -180 && lon <= 180))
                        return false;
                if (!first) {
                        first = p;
                        first_len = (size_t) (q - p);
                }
                last = p;
                last_len = (size_t) (q - p);
                pairs++;
                p = q < end ? q + 1 : q;
        }
        return pairs >= 4 && first_len == last_len && !memcmp(first, last, first_len);
}

static void put_param(fh_buf *out, const char *name, const char *value, size_t n) {
        fh_buf_puts(out, "    <parameter>\n");
        put_elem_s(out, "      ", "valueName", name);
        put_elem(out, "      ", "value", value, n);
        fh_buf_puts(out, "    </parameter>\n");
}

static void put_param_number(fh_buf *out, const char *name, double v) {
        fh_buf num = FH_BUF_NULL;
        fh_buf_json_number(&num, v);
        put_param(out, name, num.data, num.len);
        fh_buf_free(&num);
}

/* The level condition a tier's alert crossed. */
static const fh_program *condition(const fh_alert *a, fh_level l) {
        return l > FH_LEVEL_NONE && l < FH_LEVEL__MAX ? a->rule->levels[l] : NULL;
}

static void put_area(const fh_engine *e, const fh_cap_config *cfg, const fh_station *st, fh_buf *out) {
        const fh_attr *desc = attr(e, st, "town");
        const fh_attr *poly = attr(e, st, "polygon");
        const fh_attr *lat = attr(e, st, "lat"), *lon = attr(e, st, "lon");

        if (!desc)
                desc = attr(e, st, "region");
        fh_buf_puts(out, "    <area>\n");
        if (desc)
                put_elem(out, "      ", "areaDesc", desc->str, desc->len);
        else
                put_elem(out, "      ", "areaDesc", st->name, st->name_len);
        if (poly && valid_polygon(poly->str, poly->len))
                put_elem(out, "      ", "polygon", poly->str, poly->len);
        if (lat && lon && lat->is_number && lon->is_number && fabs(lat->num) <= 90 && fabs(lon->num) <= 180)
                fh_buf_printf(out, "      <circle>%.6g,%.7g %g</circle>\n", lat->num, lon->num, cfg->radius_km);
        /* The station's own district when the registry says it (a 6-digit
         * `district_code`), else the issuing unit's. */
        const fh_attr *dc = attr(e, st, "district_code");
        bool own = dc && dc->len == 6 && strspn(dc->str, "0123456789") == 6;
        fh_buf_puts(out, "      <geocode>\n        <valueName>GB/T 2260</valueName>\n        <value>");
        fh_buf_append(out, own ? dc->str : cfg->unit, 6);
        fh_buf_puts(out, "</value>\n      </geocode>\n    </area>\n");
}

void fh_cap_write(const fh_engine *e, const fh_cap_config *cfg, const fh_alert *a,
                  const char *references, fh_buf *out) {
        const fh_station *st = a->station;
        const char *title = a->rule->title ? a->rule->title : a->rule->id;
        /* A Cancel speaks of the tier it ends. */
        fh_level tier = a->event == FH_EVENT_CLEARED ? a->previous : a->level;
        char sent[FH_TIME_RFC3339_MAX];
        fh_buf id = FH_BUF_NULL, tmp = FH_BUF_NULL;
        /* "暴雨预警" -> "暴雨", for "暴雨橙色预警". */
        size_t tl = strlen(title);
        if (tl >= strlen("预警") && !strcmp(title + tl - strlen("预警"), "预警"))
                tl -= strlen("预警");

        alert_id(a, &id);
        format_sent(a->ts_ms, cfg->tz_offset_min, sent);

        fh_buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n  <identifier>");
        fh_cap_identifier(cfg, id.data, a->event, a->ts_ms, out);
        fh_buf_puts(out, "</identifier>\n");
        put_elem_s(out, "  ", "sender", cfg->sender);
        put_elem_s(out, "  ", "sent", sent);
        put_elem_s(out, "  ", "status", cfg->exercise ? "Exercise" : "Actual");
        put_elem_s(out, "  ", "msgType", msg_type(a->event));
        put_elem_s(out, "  ", "scope", "Public");
        if (cfg->exercise || a->event == FH_EVENT_CLEARED) {
                fh_buf_reset(&tmp);
                if (cfg->exercise)
                        fh_buf_puts(&tmp, "演练：由历史或模拟数据回放生成，非实际预警。");
                if (a->event == FH_EVENT_CLEARED && a->reason != FH_END_NONE) {
                        /* Ended by a reload, not by the readings. */
                        static const char *const why[FH_END__MAX] = {
                                [FH_END_RULE_CHANGED] = "预警规则已修改",
                                [FH_END_RULE_REMOVED] = "预警规则已删除",
                                [FH_END_STATION_REMOVED] = "监测站已从站点表中移除",
                                [FH_END_RULE_UNMATCHED] = "预警规则已不适用于该站",
                        };
                        fh_buf_printf(&tmp, "解除原因：%s（%s）。", a->reason < FH_END__MAX && why[a->reason]
                                      ? why[a->reason] : "配置变更", fh_end_reason_name(a->reason));
                } else if (a->event == FH_EVENT_CLEARED) {
                        fh_buf_puts(&tmp, "解除原因：监测值已低于");
                        fh_buf_append(&tmp, title, tl);
                        fh_buf_printf(&tmp, "%s预警标准。", fh_level_name_cn(tier));
                }
                put_elem(out, "  ", "note", tmp.data, tmp.len);
        }
        if (references && *references)
                put_elem_s(out, "  ", "references", references);
        /* alert_id is made of identifier characters only: one CAP incident. */
        put_elem(out, "  ", "incidents", id.data, id.len);

        fh_buf_puts(out, "  <info>\n");
        put_elem_s(out, "    ", "language", "zh-CN");
        put_elem_s(out, "    ", "category", category(st->kind));
        put_elem_s(out, "    ", "event", title);
        put_elem_s(out, "    ", "urgency", urgency(a));
        put_elem_s(out, "    ", "severity", severity(tier));
        put_elem_s(out, "    ", "certainty", "Observed");
        fh_buf_puts(out, "    <eventCode>\n      <valueName>fenghuo:rule</valueName>\n");
        put_elem_s(out, "      ", "value", a->rule->id);
        fh_buf_puts(out, "    </eventCode>\n");
        put_elem_s(out, "    ", "effective", sent);
        put_elem_s(out, "    ", "senderName", cfg->sender);

        /* GB/T 35965.1 headline: <sender>发布|解除<event><colour>预警; the
         * station added because one rule alerts many stations. */
        fh_buf_reset(&tmp);
        fh_buf_puts(&tmp, cfg->sender);
        fh_buf_puts(&tmp, a->event == FH_EVENT_CLEARED ? "解除" : "发布");
        fh_buf_append(&tmp, title, tl);
        fh_buf_puts(&tmp, fh_level_name_cn(tier));
        fh_buf_puts(&tmp, "预警（");
        fh_buf_append(&tmp, st->name, st->name_len);
        fh_buf_puts(&tmp, "）");
        put_elem(out, "    ", "headline", tmp.data, tmp.len);
        fh_buf_reset(&tmp);
        fh_alert_message(e, a, &tmp);
        put_elem(out, "    ", "description", tmp.data ? tmp.data : "", tmp.len);

        put_param(out, "alert_id", id.data, id.len);
        put_param(out, "rule", a->rule->id, strlen(a->rule->id));
        put_param(out, "sensor", st->id, st->id_len);
        put_param(out, "level", fh_level_name(a->level), strlen(fh_level_name(a->level)));
        put_param(out, "previous", fh_level_name(a->previous), strlen(fh_level_name(a->previous)));
        fh_buf_reset(&tmp);
        fh_buf_printf(&tmp, "%s预警（%s级）", fh_level_name_cn(tier), tier_roman(tier));
        put_param(out, "预警级别", tmp.data, tmp.len);
        if (isfinite(a->value))
                put_param_number(out, "value", a->value);
        const fh_program *cond = condition(a, tier);
        fh_threshold th;
        if (cond) {
                put_param(out, "condition", cond->source, strlen(cond->source));
                if (fh_rule_threshold(e, a->rule, st, tier, &th))
                        put_param_number(out, "threshold", th.bound);
        }
        put_area(e, cfg, st, out);
        fh_buf_puts(out, "  </info>\n</alert>\n");
        fh_buf_free(&id);
        fh_buf_free(&tmp);
}

/* ---- references ---- */

static void put_ref(const fh_cap_config *cfg, const char *id, fh_event ev, int64_t ts_ms, fh_buf *out) {
        char sent[FH_TIME_RFC3339_MAX];

        format_sent(ts_ms, cfg->tz_offset_min, sent);
        fh_buf_puts(out, cfg->sender);
        fh_buf_putc(out, ',');
        fh_cap_identifier(cfg, id, ev, ts_ms, out);
        fh_buf_putc(out, ',');
        fh_buf_puts(out, sent);
}

void fh_cap_references(const fh_cap_config *cfg, const fh_alert *a, fh_buf *out) {
        fh_buf id = FH_BUF_NULL;

        if (a->event == FH_EVENT_RAISED)
                return;
        alert_id(a, &id);
        put_ref(cfg, id.data, FH_EVENT_RAISED, a->raised_ms, out);
        if (a->has_prior && !(a->prior_event == FH_EVENT_RAISED && a->prior_ts == a->raised_ms)) {
                fh_buf_putc(out, ' ');
                put_ref(cfg, id.data, a->prior_event, a->prior_ts, out);
        }
        fh_buf_free(&id);
}

void fh_cap_message(const fh_engine *e, const fh_cap_config *cfg, const fh_alert *a,
                    fh_buf *ret_identifier, fh_buf *out) {
        fh_buf refs = FH_BUF_NULL;

        fh_cap_references(cfg, a, &refs);
        fh_cap_write(e, cfg, a, refs.data, out);
        if (ret_identifier) {
                fh_buf id = FH_BUF_NULL;
                alert_id(a, &id);
                fh_cap_identifier(cfg, id.data, a->event, a->ts_ms, ret_identifier);
                fh_buf_free(&id);
        }
        fh_buf_free(&refs);
}
