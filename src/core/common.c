#include <errno.h>
#include <string.h>

#include "fenghuo/common.h"

static const char *const level_names[FH_LEVEL__MAX] = { "none", "blue", "yellow", "orange", "red" };
static const char *const level_names_cn[FH_LEVEL__MAX] = { "解除", "蓝色", "黄色", "橙色", "红色" };
static const char *const kind_names[FH_KIND__MAX] = { "rain", "water_level", "landslide", "bridge" };

const char *fh_level_name(fh_level l) {
        return (unsigned) l < FH_LEVEL__MAX ? level_names[l] : "?";
}

const char *fh_level_name_cn(fh_level l) {
        return (unsigned) l < FH_LEVEL__MAX ? level_names_cn[l] : "?";
}

int fh_level_severity(fh_level l) {
        /* China's tiers count down: red is I, blue is IV. */
        return l == FH_LEVEL_NONE ? 0 : FH_LEVEL_RED + 1 - (int) l;
}

int fh_level_from_string(const char *s, size_t len, fh_level *ret) {
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                if (strlen(level_names[l]) == len && memcmp(level_names[l], s, len) == 0) {
                        *ret = (fh_level) l;
                        return 0;
                }
        return -EINVAL;
}

const char *fh_kind_name(fh_kind k) {
        return (unsigned) k < FH_KIND__MAX ? kind_names[k] : "?";
}

int fh_kind_from_string(const char *s, size_t len, fh_kind *ret) {
        for (int k = 0; k < FH_KIND__MAX; k++)
                if (strlen(kind_names[k]) == len && memcmp(kind_names[k], s, len) == 0) {
                        *ret = (fh_kind) k;
                        return 0;
                }
        return -EINVAL;
}

bool fh_is_identifier(const char *s, size_t len) {
        if (len == 0 || !(s[0] >= 'a' && s[0] <= 'z'))
                return false;
        for (size_t i = 1; i < len; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
                        return false;
        }
        return true;
}

size_t fh_edit_distance(const char *a, size_t na, const char *b, size_t nb) {
        size_t row[65];

        if (na > 64 || nb > 64)
                return SIZE_MAX;
        for (size_t j = 0; j <= nb; j++)
                row[j] = j;
        for (size_t i = 1; i <= na; i++) {
                size_t diag = row[0];
                row[0] = i;
                for (size_t j = 1; j <= nb; j++) {
                        size_t up = row[j];
                        size_t best = diag + (a[i - 1] != b[j - 1]);
                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[nb];
}

uint64_t fh_fnv1a(uint64_t h, const void *p, size_t n) {
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}
