#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "tracker.h"

typedef struct part {
        char *topic;
        int32_t partition;
        fh_track *head, *tail;   /* messages in offset order, oldest first */
        int64_t done_next;       /* committable: -1 before the first */
        int64_t processed_next;  /* after the last message handed to the engine */
        bool forgotten;
        struct part *next;
} part;

struct fh_track {
        part *p;
        int64_t offset;
        uint32_t holds;
        fh_track *next;
};

/* Tracks are made TRACK_BLOCK at a time and reused: every message behind
 * an alert not yet delivered has one, so their number follows the alert
 * latency times the input rate, and a burst grows them by blocks, not
 * one malloc per message. */
#define TRACK_BLOCK 1024

typedef struct track_block {
        struct track_block *next;
        fh_track v[TRACK_BLOCK];
} track_block;

struct fh_tracker {
        part *parts;
        /* The partition of the last message begun: consecutive messages
         * mostly come from one partition (a fetch brings a run of each),
         * so most lookups compare one name, not one per partition. */
        part *last;
        fh_track *free_list;
        track_block *blocks;
        size_t pending;
        part *orphans;           /* forgotten partitions with tracks still held */
};

fh_tracker *fh_tracker_new(void) {
        return fh_calloc(1, sizeof(fh_tracker));
}

static void part_free(part *p) {
        free(p->topic);
        free(p);
}

fh_tracker *fh_tracker_free(fh_tracker *t) {
        if (!t)
                return NULL;
        for (int pass = 0; pass < 2; pass++)
                for (part *p = pass ? t->orphans : t->parts, *n; p; p = n) {
                        n = p->next;
                        part_free(p);
                }
        for (track_block *b = t->blocks, *n; b; b = n) {
                n = b->next;
                free(b);
        }
        free(t);
        return NULL;
}

static part *find_part(fh_tracker *t, const char *topic, int32_t partition, bool create) {
        if (t->last && t->last->partition == partition && strcmp(t->last->topic, topic) == 0)
                return t->last;
        for (part *p = t->parts; p; p = p->next)
                if (p->partition == partition && strcmp(p->topic, topic) == 0) {
                        t->last = p;
                        return p;
                }
        if (!create)
                return NULL;
        part *p = fh_calloc(1, sizeof(*p));
        p->topic = fh_strdup(topic);
        p->partition = partition;
        p->done_next = -1;
        p->processed_next = -1;
        p->next = t->parts;
        t->parts = p;
        t->last = p;
        return p;
}

fh_track *fh_tracker_begin(fh_tracker *t, const char *topic, int32_t partition, int64_t offset) {
        part *p = find_part(t, topic, partition, true);
        fh_track *k;

        if (!t->free_list) {
                track_block *b = fh_malloc(sizeof(*b));
                b->next = t->blocks;
                t->blocks = b;
                for (size_t i = TRACK_BLOCK; i-- > 0;) {
                        b->v[i].next = t->free_list;
                        t->free_list = &b->v[i];
                }
        }
        k = t->free_list;
        t->free_list = k->next;
        *k = (fh_track) { .p = p, .offset = offset, .holds = 1 };
        if (offset + 1 > p->processed_next)
                p->processed_next = offset + 1;
        if (p->tail)
                p->tail->next = k;
        else
                p->head = k;
        p->tail = k;
        t->pending++;
        return k;
}

void fh_track_hold(fh_track *k) {
        k->holds++;
}

void fh_tracker_release(fh_tracker *t, fh_track *k) {
        part *p = k->p;

        if (--k->holds > 0)
                return;
        /* Only the oldest message can move the committable offset; a later
         * one that finishes first waits for it. */
        while (p->head && p->head->holds == 0) {
                fh_track *h = p->head;
                p->done_next = h->offset + 1;
                p->head = h->next;
                if (!p->head)
                        p->tail = NULL;
                h->next = t->free_list;
                t->free_list = h;
                t->pending--;
        }
        if (p->forgotten && !p->head) {
                part **pp = &t->orphans;
                while (*pp != p)
                        pp = &(*pp)->next;
                *pp = p->next;
                part_free(p);
        }
}

void fh_tracker_foreach_committable(const fh_tracker *t, fh_offset_fn fn, void *userdata) {
        for (part *p = t->parts; p; p = p->next)
                if (p->done_next >= 0)
                        fn(userdata, p->topic, p->partition, p->done_next);
}

void fh_tracker_foreach_processed(const fh_tracker *t, fh_offset_fn fn, void *userdata) {
        for (part *p = t->parts; p; p = p->next)
                if (p->processed_next >= 0)
                        fn(userdata, p->topic, p->partition, p->processed_next);
}

int64_t fh_tracker_processed(const fh_tracker *t, const char *topic, int32_t partition) {
        for (part *p = t->parts; p; p = p->next)
                if (p->partition == partition && strcmp(p->topic, topic) == 0)
                        return p->processed_next;
        return -1;
}

size_t fh_tracker_pending(const fh_tracker *t) {
        return t->pending;
}

void fh_tracker_forget(fh_tracker *t, const char *topic, int32_t partition) {
        part **pp = &t->parts;

        while (*pp && !((*pp)->partition == partition && strcmp((*pp)->topic, topic) == 0))
                pp = &(*pp)->next;
        if (!*pp)
                return;
        part *p = *pp;
        *pp = p->next;
        t->last = NULL;
        if (!p->head) {
                part_free(p);
                return;
        }
        p->forgotten = true;
        p->next = t->orphans;
        t->orphans = p;
}
