/* CAP output: every alert event also becomes a CAP 1.2 message
 * (fenghuo/cap.h), an outbox item of its own (FH_OUT_CAP) that goes to the
 * CAP topic (FH_SINK_KAFKA, outbox.c) and to cap_dir (FH_SINK_FILE, here).
 * Its identifier and references follow from the alert event alone, so
 * after a crash the regenerated message is byte for byte the one published
 * before: the read-back at start-up (dedupe.c) keeps it off the topic, and
 * its file is replaced by an identical one. Runs on the loop thread but
 * for the file writes: their fsyncs (milliseconds each on a disk, for
 * every event of a storm) would hold up the loop, so they run in batches
 * on libuv's thread pool, one batch at a time. */
#include "daemon-internal.h"
#include "fenghuo/cap.h"

/* One batch of files on the thread pool. The items stay alive meanwhile:
 * their FH_SINK_FILE is unconfirmed until file_done, and the worker reads
 * only their identifier and XML, which nothing changes. */
typedef struct file_job {
        uv_work_t req;
        fh_daemon *d;
        const char *dir;
        fh_out **outs;
        int *results;             /* 0 or -errno, per item */
        size_t n;
} file_job;

struct fhd_cap {
        fh_cap_config cfg;
        fh_buf xml, id;
        fh_out **queue;           /* files waiting for the next batch */
        size_t nq, capq;
        bool busy;                /* a batch is on the thread pool */
        bool failing;             /* the last file write failed: said once, until one succeeds */
        uint64_t written, failed;
};

/* Until a write succeeds again, a failing cap_dir is tried this often. */
#define CAP_FILE_RETRY_MS 2000

int fhd_cap_init(fh_daemon *d) {
        const fh_daemon_config *c = &d->cfg;
        fh_cap_config cfg = FH_CAP_CONFIG_DEFAULT;
        char why[512];

        if (!c->cap_topic && !c->cap_dir)
                return 0;
        if (c->cap_unit)
                cfg.unit = c->cap_unit;
        if (c->cap_sender)
                cfg.sender = c->cap_sender;
        cfg.exercise = c->cap_exercise;
        cfg.tz_offset_min = c->tz_offset_min;
        if (fh_cap_config_check(&cfg, why, sizeof(why)) < 0) {
                log_err("CAP: %s", why);
                return -EINVAL;
        }
        d->cap = fh_calloc(1, sizeof(*d->cap));
        d->cap->cfg = cfg;
        /* A missing directory is created now; one that cannot be is
         * reported with the first message and tried again then. */
        if (c->cap_dir && mkdir(c->cap_dir, 0755) < 0 && errno != EEXIST)
                log_warning("CAP: cannot create the directory %s: %s; CAP files wait until it can be written",
                            c->cap_dir, strerror(errno));
        log_info("CAP output: status=%s unit=%s topic=%s dir=%s", cfg.exercise ? "Exercise" : "Actual", cfg.unit,
                 c->cap_topic ? c->cap_topic : "-", c->cap_dir ? c->cap_dir : "-");
        return 0;
}

void fhd_cap_free(fh_daemon *d) {
        if (!d->cap)
                return;
        fh_buf_free(&d->cap->xml);
        fh_buf_free(&d->cap->id);
        free(d->cap->queue);
        free(d->cap);
        d->cap = NULL;
}

void fhd_cap_publish(fh_daemon *d, const fh_alert *a, fh_track *track) {
        struct fhd_cap *cap = d->cap;

        if (!cap)
                return;
        fh_buf_reset(&cap->xml);
        fh_buf_reset(&cap->id);
        fh_cap_message(fhd_engine0(d), &cap->cfg, a, &cap->id, &cap->xml);

        fh_payload *p = fh_payload_new(&(fh_payload_parts) {
                .kind = FH_OUT_CAP,
                .key = a->station->id,
                .key_len = a->station->id_len,
                .value = cap->xml.data,
                .value_len = cap->xml.len,
                .dedupe = cap->id.data,
                .dedupe_len = cap->id.len,
        });
        fhd_out_send(d, fhd_out_new(d, track, p), FH_SINK_KAFKA | FH_SINK_FILE);
}

/* dir/<identifier>.xml through a hidden temporary file (a reader that
 * lists *.xml never sees half a message), durably: once confirmed, the
 * file survives a power cut. An identifier holds only digits and '_'.
 * A missing directory is created (its parent must exist). 0 or -errno.
 * On the thread pool. */
static int write_file(const char *dir, const fh_payload *it) {
        char name[256], tmp[264];

        if ((size_t) snprintf(name, sizeof(name), "%s.xml", it->dedupe) >= sizeof(name) ||
            (size_t) snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= sizeof(tmp))
                return -ENAMETOOLONG;
        int r = fh_write_file_durably(dir, name, tmp, it->value, it->value_len, 0644);
        if (r == -ENOENT && mkdir(dir, 0755) == 0)
                r = fh_write_file_durably(dir, name, tmp, it->value, it->value_len, 0644);
        return r;
}

static void file_work(uv_work_t *req) {
        file_job *j = req->data;

        for (size_t i = 0; i < j->n; i++)
                j->results[i] = write_file(j->dir, j->outs[i]->it.p);
}

static void start_batch(fh_daemon *d);

static void file_done(uv_work_t *req, int status) {
        file_job *j = req->data;
        fh_daemon *d = j->d;
        struct fhd_cap *cap = d->cap;

        cap->busy = false;
        for (size_t i = 0; i < j->n; i++) {
                fh_out *o = j->outs[i];
                int r = status < 0 ? status : j->results[i];
                if (r < 0) {
                        cap->failed++;
                        if (!cap->failing)
                                log_err("CAP: cannot write %s/%s.xml: %s; CAP messages wait in the outbox (their "
                                        "readings stay uncommitted) and are written when it can be, tried every %d s",
                                        j->dir, o->it.p->dedupe, strerror(-r), CAP_FILE_RETRY_MS / 1000);
                        cap->failing = true;
                        /* Once stopping, the timers are closing: the item
                         * waits in the state saved at the stop instead. */
                        if (!d->stopping && !d->stopped)
                                fhd_out_retry(d, o, FH_SINK_FILE, CAP_FILE_RETRY_MS);
                        continue;
                }
                if (cap->failing)
                        log_notice("CAP: %s is writable again; waiting CAP messages are being written", j->dir);
                cap->failing = false;
                cap->written++;
                /* Can free o. */
                fhd_out_confirm(o, FH_SINK_FILE);
        }
        free(j->outs);
        free(j->results);
        free(j);
        if (cap->nq > 0)
                start_batch(d);
}

static void start_batch(fh_daemon *d) {
        struct fhd_cap *cap = d->cap;
        file_job *j = fh_calloc(1, sizeof(*j));

        j->d = d;
        j->dir = d->cfg.cap_dir;
        j->outs = cap->queue;
        j->n = cap->nq;
        j->results = fh_calloc(j->n, sizeof(*j->results));
        j->req.data = j;
        cap->queue = NULL;
        cap->nq = cap->capq = 0;
        cap->busy = true;
        if (uv_queue_work(d->loop, &j->req, file_work, file_done) < 0) {
                /* Cannot happen with a valid loop and callbacks; should it,
                 * the batch is written here rather than not at all. */
                file_work(&j->req);
                file_done(&j->req, 0);
        }
}

void fhd_cap_file(fh_daemon *d, fh_out *o) {
        struct fhd_cap *cap = d->cap;

        if (!cap || !d->cfg.cap_dir) {
                /* Re-sent from a checkpoint of a run that had cap_dir. */
                log_warning("CAP: message %s was due in a CAP directory, but cap_dir is no longer set; dropped",
                            o->it.p->dedupe);
                fhd_out_confirm(o, FH_SINK_FILE);
                return;
        }
        if (cap->nq == cap->capq) {
                cap->capq = cap->capq ? cap->capq * 2 : 64;
                cap->queue = fh_realloc(cap->queue, cap->capq * sizeof(*cap->queue));
        }
        cap->queue[cap->nq++] = o;
        if (!cap->busy)
                start_batch(d);
}
