/* Loading what an engine is built from: rule files and the station
 * registry, with every problem reported as a diagnostic. Shared by the
 * command line, the daemon and the console. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "fenghuo/load.h"

int fh_read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
        fh_buf b = FH_BUF_NULL;

        if (fd < 0)
                return -errno;
        for (;;) {
                fh_buf_reserve(&b, 65536);
                ssize_t n = read(fd, b.data + b.len, b.cap - b.len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        if (fd != STDIN_FILENO)
                                close(fd);
                        fh_buf_free(&b);
                        return r;
                }
                if (n == 0)
                        break;
                b.len += (size_t) n;
                if (b.len > max) {
                        if (fd != STDIN_FILENO)
                                close(fd);
                        fh_buf_free(&b);
                        return -EFBIG;
                }
        }
        if (fd != STDIN_FILENO)
                close(fd);
        fh_buf_reserve(&b, 0);
        b.data[b.len] = 0;
        *ret = b.data;
        *ret_len = b.len;
        return 0;
}

static int yaml_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);
        return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* A rules directory from before field declarations (rules/fields.yaml)
 * still loads, but a misspelt field in it goes unnoticed: say so, once. */
static void warn_unchecked_fields(const char *dir, const fh_ruleset *rs, fh_diags *diags) {
        bool unchecked[FH_KIND__MAX] = { false };
        fh_buf kinds = FH_BUF_NULL;

        for (size_t i = 0; i < rs->n_rules; i++) {
                const fh_rule *rule = &rs->rules[i];
                bool reads = rule->report && rule->report->n_refs > 0;
                for (int l = 0; l < FH_LEVEL__MAX; l++)
                        reads |= rule->levels[l] && rule->levels[l]->n_refs > 0;
                unchecked[rule->kind] |= reads && !rs->declared[rule->kind];
        }
        for (int k = 0; k < FH_KIND__MAX; k++)
                if (unchecked[k])
                        fh_buf_printf(&kinds, "%s%s", kinds.len ? ", " : "", fh_kind_name((fh_kind) k));
        if (kinds.len)
                fh_diags_warn(diags, dir, 0, 0, "field names in rules of kind %s are not checked: no 'fields:' "
                              "declares that kind's fields (see docs/rules.md, 'Fields and units')", kinds.data);
        fh_buf_free(&kinds);
}

int fh_load_rules(const char *dir, fh_ruleset **ret, fh_diags *diags) {
        struct dirent **names = NULL;
        fh_ruleset *rs = NULL;
        int n, r = 0;

        n = scandir(dir, &names, yaml_filter, alphasort);
        if (n < 0) {
                fh_diags_error(diags, dir, 0, 0, "cannot read rules directory: %s", strerror(errno));
                return -errno;
        }
        fh_ruleset_new(&rs);
        for (int i = 0; i < n; i++) {
                char *path, *text;
                size_t len;
                int k;

                if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
                        fh_oom();
                k = fh_read_file(path, FH_RULE_FILE_MAX, &text, &len);
                if (k < 0) {
                        fh_diags_error(diags, path, 0, 0, "cannot read rule file: %s",
                                       k == -EFBIG ? "larger than 4 MiB" : strerror(-k));
                        r = -EINVAL;
                } else {
                        if (fh_ruleset_parse(rs, path, text, len, diags) < 0)
                                r = -EINVAL;
                        free(text);
                }
                free(path);
                free(names[i]);
        }
        free(names);
        if (fh_ruleset_finish(rs, diags) < 0)
                r = -EINVAL;
        warn_unchecked_fields(dir, rs, diags);
        if (r < 0) {
                fh_ruleset_free(rs);
                return r;
        }
        *ret = rs;
        return 0;
}

int fh_load_registry(const char *path, fh_registry **ret, fh_diags *diags) {
        char *text;
        size_t len;
        int r = fh_read_file(path, FH_STATION_FILE_MAX, &text, &len);

        if (r < 0) {
                fh_diags_error(diags, path, 0, 0, "cannot read station registry: %s",
                               r == -EFBIG ? "larger than 512 MiB" : strerror(-r));
                return r;
        }
        r = fh_registry_parse(path, text, len, ret, diags);
        free(text);
        return r;
}

int fh_load_engine(const char *rules_dir, const char *stations, const fh_engine_config *cfg,
                   fh_engine **ret, fh_diags *diags) {
        fh_ruleset *rs = NULL;
        fh_registry *reg = NULL;
        int r1, r2;

        /* Load both even when one fails: the engineer sees every error. */
        r1 = fh_load_rules(rules_dir, &rs, diags);
        r2 = fh_load_registry(stations, &reg, diags);
        if (r1 < 0 || r2 < 0) {
                fh_ruleset_free(rs);
                fh_registry_free(reg);
                return -EINVAL;
        }
        return fh_engine_new(ret, rs, reg, cfg, diags);
}

void fh_print_diags(const fh_diags *diags) {
        char line[4096];

        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < diags->n; i++) {
                        const fh_diag *d = &diags->v[i];
                        if ((pass == 0) != (d->severity == FH_DIAG_ERROR))
                                continue;
                        fh_diag_format(d, line, sizeof(line));
                        fprintf(stderr, "%s\n", line);
                }
}
