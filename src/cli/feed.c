#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fenghuo/reading.h"
#include "cli.h"

#define CHUNK (1u << 20)

/* Reads lines of any length without holding more than one chunk plus the
 * longest acceptable line: a 1 GiB line costs no memory, it is reported as
 * too long and skipped. */
typedef struct line_reader {
        int fd;
        char *buf;
        size_t cap, start, end;
        bool eof;
} line_reader;

/* Returns 1 with a line (without '\n'), 0 at the end, -errno on read error.
 * *ret_too_long is set for a line over the cap (its bytes are not returned). */
static int next_line(line_reader *lr, const char **ret, size_t *ret_len, bool *ret_too_long) {
        bool too_long = false;

        for (;;) {
                char *nl = memchr(lr->buf + lr->start, '\n', lr->end - lr->start);
                if (nl) {
                        *ret = lr->buf + lr->start;
                        *ret_len = (size_t) (nl - (lr->buf + lr->start));
                        lr->start = (size_t) (nl - lr->buf) + 1;
                        *ret_too_long = too_long;
                        return 1;
                }
                if (lr->end - lr->start > FH_READING_BYTES_MAX + 1) {
                        /* Keep a byte so the line still counts once. */
                        too_long = true;
                        lr->start = lr->end - 1;
                }
                if (lr->eof) {
                        if (lr->end > lr->start) {
                                *ret = lr->buf + lr->start;
                                *ret_len = lr->end - lr->start;
                                lr->start = lr->end;
                                *ret_too_long = too_long;
                                return 1;
                        }
                        return 0;
                }
                if (lr->start > 0) {
                        memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
                        lr->end -= lr->start;
                        lr->start = 0;
                }
                ssize_t n = read(lr->fd, lr->buf + lr->end, lr->cap - lr->end);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        lr->eof = true;
                lr->end += (size_t) n;
        }
}

int fh_feed(int fd, fh_engine *const *engines, size_t n_engines, const fh_feed_opts *opts,
            unsigned long long *ret_lines) {
        bool say_rejects = opts && opts->say_rejects;
        line_reader lr = { .fd = fd, .cap = CHUNK + FH_READING_BYTES_MAX + 2 };
        unsigned long long lineno = 0;
        const char *line = NULL;
        size_t len = 0;
        bool too_long = false;
        fh_reading reading;
        char why[256];
        int r;

        lr.buf = fh_malloc(lr.cap);
        while ((r = next_line(&lr, &line, &len, &too_long)) > 0) {
                fh_reject rej;

                lineno++;
                if (too_long) {
                        rej = FH_REJECT_TOO_LONG;
                        snprintf(why, sizeof(why), "line longer than %u bytes", FH_READING_BYTES_MAX);
                } else {
                        /* A blank line is not a reading, and not an error worth a line. */
                        size_t k = 0;
                        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
                                k++;
                        if (k == len)
                                continue;
                        rej = fh_reading_parse(line, len, &reading, why, sizeof(why));
                }
                if (rej != FH_REJECT_NONE) {
                        for (size_t i = 0; i < n_engines; i++)
                                fh_engine_count_reject(engines[i], rej);
                        if (say_rejects)
                                fprintf(stderr, "line %llu: rejected (%s): %s\n", lineno, fh_reject_name(rej), why);
                        continue;
                }
                fh_outcome o = FH_OUTCOME_ACCEPTED;
                for (size_t i = 0; i < n_engines; i++) {
                        fh_outcome oi = fh_engine_ingest(engines[i], &reading);
                        if (i == 0)
                                o = oi;
                }
                if (fh_outcome_reject(o) != FH_REJECT_NONE && say_rejects) {
                        fh_engine_explain(engines[0], &reading, o, why, sizeof(why));
                        fprintf(stderr, "line %llu: rejected (%s): %s\n", lineno, fh_reject_name(fh_outcome_reject(o)), why);
                }
                if ((o == FH_OUTCOME_ACCEPTED || o == FH_OUTCOME_LATE) && opts && opts->on_reading)
                        opts->on_reading(opts->userdata, &reading);
        }
        free(lr.buf);
        *ret_lines = lineno;
        return r < 0 ? r : 0;
}

int fh_open_input(const char *cmd, const char *path) {
        int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                fprintf(stderr, "fenghuo %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return fd;
}

int fh_open_input_rewindable(const char *cmd, const char *path) {
        if (strcmp(path, "-") != 0)
                return fh_open_input(cmd, path);

        const char *dir = getenv("TMPDIR");
        char *name = NULL;
        if (asprintf(&name, "%s/fenghuo-input-XXXXXX", dir && *dir ? dir : "/tmp") < 0)
                fh_oom();
        int fd = mkstemp(name);
        if (fd < 0) {
                fprintf(stderr, "fenghuo %s: cannot make a temporary copy of standard input in %s: %s\n", cmd,
                        dir && *dir ? dir : "/tmp", strerror(errno));
                free(name);
                return -1;
        }
        unlink(name);
        free(name);
        static char buf[1 << 16];
        for (;;) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "fenghuo %s: cannot read standard input: %s\n", cmd, strerror(errno));
                        close(fd);
                        return -1;
                }
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(fd, buf + off, (size_t) (n - off));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                fprintf(stderr, "fenghuo %s: cannot copy standard input: %s\n", cmd, strerror(errno));
                                close(fd);
                                return -1;
                        }
                        off += w;
                }
        }
        lseek(fd, 0, SEEK_SET);
        return fd;
}
