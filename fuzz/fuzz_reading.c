/* libFuzzer target for the reading parser. Beyond "never crashes": every
 * accepted reading must satisfy SPEC §1, must read back the same after
 * being written out again, and every rejection must come with a one-line
 * printable reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool sensor_ok(const fh_reading *r) {
        if (r->sensor_len < 1 || r->sensor_len > FH_SENSOR_ID_MAX || r->sensor[r->sensor_len] != '\0')
                return false;
        for (size_t i = 0; i < r->sensor_len; i++) {
                char c = r->sensor[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == ':' || c == '-'))
                        return false;
        }
        return true;
}

static bool name_ok(const fh_value *v) {
        if (v->name_len < 1 || v->name_len > FH_FIELD_NAME_MAX || v->name[v->name_len] != '\0')
                return false;
        if (!(v->name[0] >= 'a' && v->name[0] <= 'z'))
                return false;
        for (size_t i = 1; i < v->name_len; i++) {
                char c = v->name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
                        return false;
        }
        return true;
}

static void check_accepted(const fh_reading *r) {
        static char line[8192];
        char ts[FH_TIME_RFC3339_MAX];
        fh_reading back;
        int64_t ms;
        size_t n;

        if (!sensor_ok(r))
                abort();
        if (r->ts_ms < FH_TIME_MIN_MS || r->ts_ms > FH_TIME_MAX_MS)
                abort();
        if (r->n_values < 1 || r->n_values > FH_VALUES_MAX)
                abort();
        for (unsigned i = 0; i < r->n_values; i++) {
                if (!isfinite(r->values[i].v) || !name_ok(&r->values[i]))
                        abort();
                for (unsigned j = 0; j < i; j++)
                        if (strcmp(r->values[i].name, r->values[j].name) == 0)
                                abort();
        }

        /* Write it out, with the time as RFC 3339, and read it back. */
        fh_time_format_rfc3339(r->ts_ms, 480, ts);
        if (fh_time_parse_rfc3339(ts, strlen(ts), &ms, NULL) != 0 || ms != r->ts_ms)
                abort();
        n = (size_t)snprintf(line, sizeof(line), "{\"sensor\":\"%s\",\"ts\":\"%s\",\"values\":{", r->sensor, ts);
        for (unsigned i = 0; i < r->n_values; i++)
                n += (size_t)snprintf(line + n, sizeof(line) - n, "%s\"%s\":%.17g", i ? "," : "",
                                      r->values[i].name, r->values[i].v);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "}}");
        if (fh_reading_parse(line, n, &back, NULL, 0) != FH_REJECT_NONE)
                abort();
        if (strcmp(back.sensor, r->sensor) != 0 || back.ts_ms != r->ts_ms || back.n_values != r->n_values)
                abort();
        for (unsigned i = 0; i < r->n_values; i++)
                if (strcmp(back.values[i].name, r->values[i].name) != 0 ||
                    memcmp(&back.values[i].v, &r->values[i].v, sizeof(double)) != 0)
                        abort();
}

/* When the input could be a number, the parser must agree with strtod to
 * the bit. */
static void check_number(const uint8_t *data, size_t size) {
        static char line[1200];
        char text[1024];
        fh_reading r;
        double want;
        int n;

        if (size == 0 || size >= sizeof(text))
                return;
        for (size_t i = 0; i < size; i++)
                if (!strchr("0123456789.eE+-", data[i]) || data[i] == '\0')
                        return;
        memcpy(text, data, size);
        text[size] = '\0';
        n = snprintf(line, sizeof(line), "{\"sensor\":\"S\",\"ts\":0,\"values\":{\"v\":%s}}", text);
        if (fh_reading_parse(line, (size_t)n, &r, NULL, 0) != FH_REJECT_NONE)
                return;
        want = strtod(text, NULL);
        if (memcmp(&want, &r.values[0].v, sizeof(double)) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fh_reading r;
        char why[160];
        fh_reject e;

        check_number(data, size);
        memset(why, 'x', sizeof(why));
        e = fh_reading_parse((const char *)data, size, &r, why, sizeof(why));
        if (e == FH_REJECT_NONE) {
                if (why[0] != '\0')
                        abort();
                check_accepted(&r);
                return 0;
        }
        if (e >= FH_REJECT__MAX || e == FH_REJECT_UNKNOWN_SENSOR)
                abort();
        if (memchr(why, '\0', sizeof(why)) == NULL || why[0] == '\0')
                abort();
        for (const char *c = why; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        abort();
        return 0;
}
