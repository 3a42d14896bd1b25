/* CAP output: every alert event also becomes a CAP 1.2 message
 * (fenghuo/cap.h), an outbox item of its own (FH_OUT_CAP) that goes to the
 * CAP topic (FH_SINK_KAFKA, outbox.c) and to cap_dir (FH_SINK_FILE, here).
 * Its identifier and references follow from the alert event alone, so
 * after a crash the regenerated message is byte for byte the one published
 * before: the read-back at start-up (dedupe.c) keeps it off the topic, and
 * its file is replaced by an identical one. Runs on the loop thread. */
#include "daemon-internal.h"
#include "fenghuo/cap.h"

struct fhd_cap {
        fh_cap_config cfg;
        fh_buf xml, id, path, tmp;
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
        fh_buf_free(&d->cap->path);
        fh_buf_free(&d->cap->tmp);
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

        fh_out *o = fhd_out_new(d, track);
        fh_outbox_item *it = &o->it;
        it->kind = FH_OUT_CAP;
        it->key = fh_strndup(a->station->id, a->station->id_len);
        it->key_len = a->station->id_len;
        it->value = fh_strndup(cap->xml.data, cap->xml.len);
        it->value_len = cap->xml.len;
        it->dedupe = fh_strndup(cap->id.data, cap->id.len);
        fhd_out_send(d, o, FH_SINK_KAFKA | FH_SINK_FILE);
}

/* dir/<identifier>.xml through a hidden temporary file (a reader that
 * lists *.xml never sees half a message), durably: once confirmed, the
 * file survives a power cut. An identifier holds only digits and '_'.
 * A missing directory is created (its parent must exist). 0 or -errno. */
static int write_file(struct fhd_cap *cap, const char *dir, const fh_outbox_item *it) {
        fh_buf_reset(&cap->path);
        fh_buf_printf(&cap->path, "%s.xml", it->dedupe);
        fh_buf_reset(&cap->tmp);
        fh_buf_printf(&cap->tmp, ".%s.xml.tmp", it->dedupe);
        int r = fh_write_file_durably(dir, cap->path.data, cap->tmp.data, it->value, it->value_len, 0644);
        if (r == -ENOENT && mkdir(dir, 0755) == 0)
                r = fh_write_file_durably(dir, cap->path.data, cap->tmp.data, it->value, it->value_len, 0644);
        return r;
}

void fhd_cap_file(fh_daemon *d, fh_out *o) {
        struct fhd_cap *cap = d->cap;
        const char *dir = d->cfg.cap_dir;

        if (!cap || !dir) {
                /* Re-sent from a checkpoint of a run that had cap_dir. */
                log_warning("CAP: message %s was due in a CAP directory, but cap_dir is no longer set; dropped",
                            o->it.dedupe);
                fhd_out_confirm(o, FH_SINK_FILE);
                return;
        }
        int r = write_file(cap, dir, &o->it);
        if (r < 0) {
                cap->failed++;
                if (!cap->failing)
                        log_err("CAP: cannot write %s/%s: %s; CAP messages wait in the outbox (their readings stay "
                                "uncommitted) and are written when it can be, tried every %d s",
                                dir, cap->path.data, strerror(-r), CAP_FILE_RETRY_MS / 1000);
                cap->failing = true;
                fhd_out_retry(d, o, FH_SINK_FILE, CAP_FILE_RETRY_MS);
                return;
        }
        if (cap->failing)
                log_notice("CAP: %s is writable again; waiting CAP messages are being written", dir);
        cap->failing = false;
        cap->written++;
        fhd_out_confirm(o, FH_SINK_FILE);
}
