/* Alert events as CAP 1.2 XML messages in the profile China's national
 * early-warning release system ingests (GB/T 35965.1-2018): `Alert` on
 * raise, `Update` on escalate/de-escalate, `Cancel` on clear, each later
 * message naming the earlier ones in `references`. docs/integration.md says
 * which element comes from where.
 *
 * Pure formatting like the rest of the engine library: no I/O, no clock.
 * Every identifier is a function of the alert event alone (alert_id, event,
 * ts), so a replay and a restarted daemon write the same identifiers. */
#ifndef FENGHUO_CAP_H
#define FENGHUO_CAP_H

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"

#define FH_CAP_UNIT_LEN    14     /* ZZZZZZDDDUUUXX */
#define FH_CAP_SENDER_MAX  256

typedef struct fh_cap_config {
        /* Issuing-unit code ZZZZZZDDDUUUXX: GB/T 2260 district code,
         * GB/T 4657 institution code, unit-internal code, extension. */
        const char *unit;
        /* <sender>: the issuing unit's full name. CAP forbids spaces,
         * commas, '<' and '&' in it (it is part of `references`). */
        const char *sender;
        bool exercise;            /* status Exercise instead of Actual */
        int tz_offset_min;        /* of <sent> and the identifier: Beijing time */
        double radius_km;         /* of the circle round a station's lat/lon */
} fh_cap_config;

#define FH_CAP_CONFIG_DEFAULT { "11011800000000", "北京市密云区", false, 480, 5.0 }

/* 0, or -EINVAL with a reason for people in why. */
int fh_cap_config_check(const fh_cap_config *cfg, char *why, size_t why_size);

/* The message identifier of an event of alert `alert_id`: unit, time of
 * the event (YYYYMMDDhhmmss, cfg's offset), and a sequence number derived
 * from (alert_id, event, ts) instead of counted, so that it is the same in
 * every run. Appended to out. */
void fh_cap_identifier(const fh_cap_config *cfg, const char *alert_id, fh_event event, int64_t ts_ms, fh_buf *out);

/* One message for one alert event, appended to out. `references` is the
 * CAP references text ("sender,identifier,sent" separated by spaces) or
 * NULL for none; fh_cap_message fills it in. */
void fh_cap_write(const fh_engine *e, const fh_cap_config *cfg, const fh_alert *a,
                  const char *references, fh_buf *out);

/* The references of `a` (CAP text: "sender,identifier,sent" separated
 * by spaces) appended to out: nothing for an `Alert`; otherwise the
 * `Alert` and, when it is another one, the message just before (which
 * superseded everything between). Both follow from the event alone
 * (raised_ms, prior_event, prior_ts), so a daemon restarted or handed a
 * partition mid-alert names exactly what a replay names, remembering
 * nothing. */
void fh_cap_references(const fh_cap_config *cfg, const fh_alert *a, fh_buf *out);

/* fh_cap_write with fh_cap_references: the message of `a` to out, its
 * identifier to ret_identifier when not NULL. */
void fh_cap_message(const fh_engine *e, const fh_cap_config *cfg, const fh_alert *a,
                    fh_buf *ret_identifier, fh_buf *out);

#endif
