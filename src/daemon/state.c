#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

#define STATE_MAGIC "FHSTATE2"

void fh_offsets_add(fh_offsets *o, const char *topic, int32_t partition, int64_t offset) {
        for (size_t i = 0; i < o->n; i++)
                if (o->v[i].partition == partition && !strcmp(o->v[i].topic, topic)) {
                        o->v[i].offset = offset;
                        return;
                }
        o->v = fh_realloc(o->v, (o->n + 1) * sizeof(*o->v));
        o->v[o->n++] = (fh_offset) { fh_strdup(topic), partition, offset };
}

int64_t fh_offsets_get(const fh_offsets *o, const char *topic, int32_t partition) {
        for (size_t i = 0; i < o->n; i++)
                if (o->v[i].partition == partition && !strcmp(o->v[i].topic, topic))
                        return o->v[i].offset;
        return -1;
}

void fh_offsets_clear(fh_offsets *o) {
        for (size_t i = 0; i < o->n; i++)
                free(o->v[i].topic);
        free(o->v);
        *o = (fh_offsets) { 0 };
}

void fh_outbox_item_clear(fh_outbox_item *it) {
        fh_payload_unref(it->p);
        *it = (fh_outbox_item) { 0 };
}

void fh_checkpoint_clear(fh_checkpoint *c) {
        fh_offsets_clear(&c->positions);
        fh_offsets_clear(&c->watermarks);
        for (size_t i = 0; i < c->n_outbox; i++)
                fh_outbox_item_clear(&c->outbox[i]);
        free(c->outbox);
        fh_offsets_clear(&c->partitions);
        for (size_t i = 0; i < c->n_sensors; i++)
                free(c->sensor_ids[i]);
        free(c->sensor_ids);
        free(c->sensor_part);
        *c = (fh_checkpoint) { 0 };
}

static void put_offsets(fh_buf *b, const fh_offsets *o) {
        fh_buf_u32(b, (uint32_t) o->n);
        for (size_t i = 0; i < o->n; i++) {
                fh_buf_str(b, o->v[i].topic, strlen(o->v[i].topic));
                fh_buf_u32(b, (uint32_t) o->v[i].partition);
                fh_buf_u64(b, (uint64_t) o->v[i].offset);
        }
}

static int get_offsets(fh_rd *rd, fh_offsets *o) {
        uint32_t n;
        /* Each count is checked against the bytes left for what it counts
         * (a topic's length, partition and offset: 16 bytes at least), so a
         * crafted count cannot make a huge allocation or a long loop. */
        if (fh_rd_u32(rd, &n) < 0 || n > 1000000 || (size_t) n * 16 > rd->n - rd->off)
                return -EBADMSG;
        for (uint32_t i = 0; i < n; i++) {
                const char *topic;
                size_t len;
                uint32_t part;
                uint64_t off;
                if (fh_rd_str(rd, &topic, &len) < 0 || fh_rd_u32(rd, &part) < 0 || fh_rd_u64(rd, &off) < 0)
                        return -EBADMSG;
                char *t = fh_strndup(topic, len);
                fh_offsets_add(o, t, (int32_t) part, (int64_t) off);
                free(t);
        }
        return 0;
}

static void put_s(fh_buf *b, const char *s, size_t n) {
        if (!s) {
                fh_buf_u32(b, UINT32_MAX);
                return;
        }
        fh_buf_str(b, s, n);
}

/* A string of put_s, pointing into the file's bytes (NULL when absent). */
static int get_s(fh_rd *rd, const char **ret, size_t *ret_len) {
        size_t save = rd->off;
        uint32_t n;

        if (fh_rd_u32(rd, &n) < 0)
                return -EBADMSG;
        if (n == UINT32_MAX) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        rd->off = save;
        return fh_rd_str(rd, ret, ret_len) < 0 ? -EBADMSG : 0;
}

static size_t len_or_0(const char *s) {
        return s ? strlen(s) : 0;
}

/* The layout is the one of the outbox items before payloads were shared,
 * so state files of either version load in the other. */
static void put_outbox(fh_buf *b, const fh_outbox_item *v, size_t n) {
        fh_buf_u32(b, (uint32_t) n);
        for (size_t i = 0; i < n; i++) {
                const fh_payload *p = v[i].p;
                fh_buf_u8(b, p->kind);
                fh_buf_u8(b, v[i].sinks);
                fh_buf_u8(b, p->cleared);
                put_s(b, p->key, p->key_len);
                put_s(b, p->value, p->value_len);
                put_s(b, p->field, p->field_len);
                put_s(b, p->level, len_or_0(p->level));
                put_s(b, p->dedupe, len_or_0(p->dedupe));
                put_s(b, p->reason, len_or_0(p->reason));
                put_s(b, p->detail, len_or_0(p->detail));
                put_s(b, p->src_topic, len_or_0(p->src_topic));
                fh_buf_u32(b, (uint32_t) p->src_partition);
                fh_buf_u64(b, (uint64_t) p->src_offset);
        }
}

static int get_outbox(fh_rd *rd, fh_checkpoint *c) {
        uint32_t n;
        /* An item is 47 bytes at least: three u8, eight string lengths, the
         * partition and the offset. */
        if (fh_rd_u32(rd, &n) < 0 || n > 100000000 || (size_t) n * 47 > rd->n - rd->off)
                return -EBADMSG;
        c->outbox = n ? fh_calloc(n, sizeof(*c->outbox)) : NULL;
        for (uint32_t i = 0; i < n; i++) {
                fh_payload_parts pp = { 0 };
                uint8_t cleared, sinks;
                uint32_t part;
                uint64_t off;
                if (fh_rd_u8(rd, &pp.kind) < 0 || fh_rd_u8(rd, &sinks) < 0 || fh_rd_u8(rd, &cleared) < 0 ||
                    get_s(rd, &pp.key, &pp.key_len) < 0 || get_s(rd, &pp.value, &pp.value_len) < 0 ||
                    get_s(rd, &pp.field, &pp.field_len) < 0 || get_s(rd, &pp.level, &pp.level_len) < 0 ||
                    get_s(rd, &pp.dedupe, &pp.dedupe_len) < 0 || get_s(rd, &pp.reason, &pp.reason_len) < 0 ||
                    get_s(rd, &pp.detail, &pp.detail_len) < 0 || get_s(rd, &pp.src_topic, &pp.src_topic_len) < 0 ||
                    fh_rd_u32(rd, &part) < 0 || fh_rd_u64(rd, &off) < 0)
                        return -EBADMSG;
                if (!pp.value || (pp.kind != FH_OUT_ALERT && pp.kind != FH_OUT_DEAD_LETTER && pp.kind != FH_OUT_CAP) ||
                    (pp.kind == FH_OUT_CAP && !pp.dedupe))
                        return -EBADMSG;
                pp.cleared = cleared;
                pp.src_partition = (int32_t) part;
                pp.src_offset = (int64_t) off;
                c->outbox[i] = (fh_outbox_item) { .sinks = sinks, .p = fh_payload_new(&pp) };
                c->n_outbox = i + 1;
        }
        return 0;
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

int fh_write_file_durably(const char *dir, const char *name, const char *tmp_name, const void *data, size_t len,
                          mode_t mode) {
        char path[PATH_MAX], tmp[PATH_MAX];
        int fd, r;

        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path) ||
            snprintf(tmp, sizeof(tmp), "%s/%s", dir, tmp_name) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, data, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        /* The rename is durable only once the directory is. */
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                if (fsync(fd) < 0)
                        r = -errno;
                close(fd);
        }
        return r;
}

int fh_state_save(const char *dir, const fh_engine *const *es, size_t n_es, const fh_checkpoint *c) {
        fh_buf b = FH_BUF_NULL;
        int r;

        fh_buf_append(&b, STATE_MAGIC, 8);
        put_offsets(&b, &c->positions);
        put_offsets(&b, &c->watermarks);
        put_outbox(&b, c->outbox, c->n_outbox);
        put_offsets(&b, &c->partitions);
        fh_buf_u32(&b, (uint32_t) c->n_sensors);
        for (size_t i = 0; i < c->n_sensors; i++) {
                fh_buf_str(&b, c->sensor_ids[i], strlen(c->sensor_ids[i]));
                fh_buf_u32(&b, c->sensor_part[i]);
        }
        size_t at = b.len;
        fh_buf_u64(&b, 0);
        fh_engine_snapshot_many(es, n_es, NULL, NULL, &b);
        uint64_t snap_len = b.len - at - 8;
        for (int i = 0; i < 8; i++)
                b.data[at + i] = (char) (snap_len >> (8 * i));
        fh_buf_u64(&b, fh_checksum(b.data, b.len));
        r = fh_write_file_durably(dir, "state", "state.tmp", b.data, b.len, 0600);
        fh_buf_free(&b);
        return r;
}

int fh_state_decode(const void *data, size_t len, fh_engine *e, fh_checkpoint *ret) {
        const uint8_t *p = data;
        fh_checkpoint o = { 0 };
        int r = -EBADMSG;

        if (len < 8 + 4 + 8 + 8 || memcmp(p, STATE_MAGIC, 8) != 0)
                return -EBADMSG;
        fh_rd tail = { p + len - 8, 8, 0 };
        uint64_t sum;
        if (fh_rd_u64(&tail, &sum) < 0 || sum != fh_checksum(p, len - 8))
                return -EBADMSG;
        fh_rd rd = { p, len - 8, 8 };
        if (get_offsets(&rd, &o.positions) < 0 || get_offsets(&rd, &o.watermarks) < 0 || get_outbox(&rd, &o) < 0 ||
            get_offsets(&rd, &o.partitions) < 0)
                goto out;
        uint32_t ns;
        if (fh_rd_u32(&rd, &ns) < 0 || ns > 100000000 || (size_t) ns * 8 > rd.n - rd.off)
                goto out;
        o.sensor_ids = fh_calloc(ns + 1, sizeof(*o.sensor_ids));
        o.sensor_part = fh_calloc(ns + 1, sizeof(*o.sensor_part));
        for (uint32_t i = 0; i < ns; i++) {
                const char *id;
                size_t idlen;
                o.n_sensors = i;
                if (fh_rd_str(&rd, &id, &idlen) < 0 || fh_rd_u32(&rd, &o.sensor_part[i]) < 0 ||
                    o.sensor_part[i] >= o.partitions.n)
                        goto out;
                o.sensor_ids[i] = fh_strndup(id, idlen);
                o.n_sensors = i + 1;
        }
        uint64_t snap_len;
        if (fh_rd_u64(&rd, &snap_len) < 0 || snap_len != rd.n - rd.off)
                goto out;
        r = fh_engine_restore(e, rd.p + rd.off, (size_t) snap_len);
        if (r < 0)
                goto out;
        *ret = o;
        o = (fh_checkpoint) { 0 };
        r = 0;
out:
        fh_checkpoint_clear(&o);
        return r;
}

int fh_state_load(const char *dir, fh_engine *e, fh_checkpoint *ret) {
        char path[PATH_MAX];
        FILE *f;
        fh_buf b = FH_BUF_NULL;
        int r;

        if (snprintf(path, sizeof(path), "%s/state", dir) >= (int) sizeof(path))
                return -ENAMETOOLONG;
        f = fopen(path, "re");
        if (!f)
                return -errno;
        for (;;) {
                fh_buf_reserve(&b, 1 << 16);
                size_t n = fread(b.data + b.len, 1, b.cap - b.len - 1, f);
                b.len += n;
                if (n == 0)
                        break;
        }
        bool read_error = ferror(f);
        fclose(f);
        if (read_error) {
                fh_buf_free(&b);
                return -EIO;
        }
        r = fh_state_decode(b.data, b.len, e, ret);
        fh_buf_free(&b);
        return r;
}

int fh_state_save_fork(const char *dir, const fh_engine *const *es, size_t n_es, const fh_checkpoint *c,
                       pid_t *ret_pid) {
        sigset_t all, old;
        pid_t pid;

        /* The child must never run the parent's signal handlers: libuv's
         * write into a pipe the parent's loop reads, and systemd signals
         * the whole control group on stop. Blocked from before the fork, so
         * no signal slips in between. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid_t parent = getpid();
        pid = fork();
        if (pid == 0) {
                /* Dies with the daemon: a child outliving a kill -9 would
                 * go on to rename an old cut over what the restarted
                 * daemon writes, or write state.tmp alongside it. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(EIO);
                /* Only this thread exists here: no librdkafka, no libuv,
                 * nothing that takes another thread's lock but malloc,
                 * which glibc makes safe after fork. */
                int r = fh_state_save(dir, es, n_es, c);
                _exit(r < 0 ? (-r > 0 && -r < 255 ? -r : EIO) : 0);
        }
        int err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid < 0)
                return -err;
        *ret_pid = pid;
        return 0;
}

int fh_state_save_wait(pid_t pid, bool block, int *ret_result) {
        int status;
        pid_t w;

        do
                w = waitpid(pid, &status, block ? 0 : WNOHANG);
        while (w < 0 && errno == EINTR);
        if (w == 0)
                return 0;
        if (w < 0)
                return -errno;
        if (WIFEXITED(status))
                *ret_result = -WEXITSTATUS(status);
        else
                *ret_result = -EIO;   /* killed: out of memory, most likely */
        return 1;
}
