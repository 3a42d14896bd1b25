/* End to end: `fenghuo replay --cap DIR` over a storm, every message it
 * writes validated against the OASIS CAP 1.2 schema with libxml2, and each
 * alert's lifecycle checked against the alert events replay prints: one
 * message per event, Alert then Updates then Cancel, each naming exactly
 * its alert's Alert and the message just before in `references`. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "it_harness.h"

typedef struct msg {
        char file[256];
        char *identifier, *sender, *sent, *status, *msg_type, *references, *incidents;
        bool used;
} msg;

static char *child_text(xmlNode *parent, const char *name) {
        for (xmlNode *n = parent->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && !strcmp((const char *) n->name, name)) {
                        xmlChar *c = xmlNodeGetContent(n);
                        char *s = strdup((const char *) c);
                        xmlFree(c);
                        return s;
                }
        return NULL;
}

/* Parses and validates every file of dir; fails the test on the first
 * invalid one with libxml2's reasons. */
static msg *load_dir(const char *dir, xmlSchemaPtr schema, size_t *ret_n) {
        DIR *d = opendir(dir);
        struct dirent *de;
        msg *v = NULL;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[1024];
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                xmlDocPtr doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
                if (!doc)
                        fail_msg("%s is not well-formed XML", path);
                xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(schema);
                int r = xmlSchemaValidateDoc(vc, doc);
                xmlSchemaFreeValidCtxt(vc);
                if (r != 0)
                        fail_msg("%s does not validate against CAP-v1.2.xsd (see libxml2's reasons above)", path);
                v = realloc(v, (n + 1) * sizeof(*v));
                msg *m = &v[n++];
                memset(m, 0, sizeof(*m));
                snprintf(m->file, sizeof(m->file), "%s", de->d_name);
                xmlNode *root = xmlDocGetRootElement(doc);
                assert_string_equal((const char *) root->ns->href, "urn:oasis:names:tc:emergency:cap:1.2");
                m->identifier = child_text(root, "identifier");
                m->sender = child_text(root, "sender");
                m->sent = child_text(root, "sent");
                m->status = child_text(root, "status");
                m->msg_type = child_text(root, "msgType");
                m->references = child_text(root, "references");
                m->incidents = child_text(root, "incidents");
                xmlFreeDoc(doc);
        }
        closedir(d);
        *ret_n = n;
        return v;
}

static void free_msgs(msg *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].identifier);
                free(v[i].sender);
                free(v[i].sent);
                free(v[i].status);
                free(v[i].msg_type);
                free(v[i].references);
                free(v[i].incidents);
        }
        free(v);
}

static const char *want_type(const char *event) {
        if (!strcmp(event, "raised"))
                return "Alert";
        if (!strcmp(event, "cleared"))
                return "Cancel";
        return "Update";
}

/* The alert's "ts" as CAP's sent: the same instant without milliseconds. */
static void ts_to_sent(const char *ts, char *out, size_t n) {
        const char *dot = strchr(ts, '.');
        if (!dot) {
                snprintf(out, n, "%s", ts);
                return;
        }
        const char *off = dot + 1;
        while (*off >= '0' && *off <= '9')
                off++;
        snprintf(out, n, "%.*s%s", (int) (dot - ts), ts, off);
}

static void replay_writes_valid_cap_following_each_lifecycle(const char *name, const char *input,
                                                            const char *rules, const char *stations) {
        char dir[512], alerts[512], err[512];
        snprintf(dir, sizeof(dir), "%s/%s-cap", it.tmpdir, name);
        snprintf(alerts, sizeof(alerts), "%s/%s-alerts.jsonl", it.tmpdir, name);
        snprintf(err, sizeof(err), "%s/%s-err.txt", it.tmpdir, name);
        const char *argv[] = { it.bin, "replay", "--rules", rules, "--stations", stations, "--cap", dir, input, NULL };
        assert_int_equal(it_run(argv, NULL, alerts, err), 0);

        char xsd[512];
        snprintf(xsd, sizeof(xsd), "%s/tests/data/cap/CAP-v1.2.xsd", it.src);
        xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(xsd);
        xmlSchemaPtr schema = xmlSchemaParse(pc);
        xmlSchemaFreeParserCtxt(pc);
        assert_non_null(schema);

        size_t n_msgs;
        msg *msgs = load_dir(dir, schema, &n_msgs);
        xmlSchemaFree(schema);

        char *text = it_read_file(alerts, NULL);
        it_strs lines = it_strs_lines(text);
        free(text);
        /* One message per event: no two events share an identifier. */
        assert_true(lines.n > 0);
        assert_int_equal(n_msgs, lines.n);
        for (size_t i = 0; i < n_msgs; i++) {
                char want_file[300];
                snprintf(want_file, sizeof(want_file), "%s.xml", msgs[i].identifier);
                assert_string_equal(msgs[i].file, want_file);
                assert_string_equal(msgs[i].status, "Exercise");
        }

        /* Walk the events in replay's order; per alert, the references so far. */
        typedef struct chain { char id[160]; char first[512], refs[1024]; bool cancelled; } chain;
        chain *chains = calloc(lines.n, sizeof(*chains));
        size_t n_chains = 0, n_alerts = 0, n_updates = 0, n_cancels = 0;
        for (size_t i = 0; i < lines.n; i++) {
                char id[160], event[32], ts[64], sent[64];
                it_json_str(lines.v[i], "alert_id", id, sizeof(id));
                it_json_str(lines.v[i], "event", event, sizeof(event));
                it_json_str(lines.v[i], "ts", ts, sizeof(ts));
                ts_to_sent(ts, sent, sizeof(sent));

                msg *m = NULL;
                for (size_t k = 0; k < n_msgs && !m; k++)
                        if (!msgs[k].used && !strcmp(msgs[k].incidents, id) && !strcmp(msgs[k].sent, sent) &&
                            !strcmp(msgs[k].msg_type, want_type(event)))
                                m = &msgs[k];
                if (!m)
                        fail_msg("no CAP message for event %zu: %s", i + 1, lines.v[i]);
                m->used = true;

                chain *c = NULL;
                for (size_t k = 0; k < n_chains && !c; k++)
                        if (!strcmp(chains[k].id, id))
                                c = &chains[k];
                if (!strcmp(event, "raised")) {
                        assert_null(c);      /* an alert_id is raised once */
                        assert_null(m->references);
                        c = &chains[n_chains++];
                        snprintf(c->id, sizeof(c->id), "%s", id);
                        n_alerts++;
                } else {
                        if (!c)
                                fail_msg("%s %s before its raise", id, event);
                        assert_false(c->cancelled);
                        if (!m->references || strcmp(m->references, c->refs))
                                fail_msg("%s of %s references\n  %s\nwant\n  %s", m->msg_type, id,
                                         m->references ? m->references : "(none)", c->refs);
                        if (!strcmp(event, "cleared")) {
                                c->cancelled = true;
                                n_cancels++;
                        } else {
                                n_updates++;
                        }
                }
                /* What the next message must name: the Alert, and this
                 * message when it is not the Alert. */
                if (!c->first[0]) {
                        snprintf(c->first, sizeof(c->first), "%s,%s,%s", m->sender, m->identifier, m->sent);
                        snprintf(c->refs, sizeof(c->refs), "%s", c->first);
                } else {
                        snprintf(c->refs, sizeof(c->refs), "%s %s,%s,%s", c->first, m->sender, m->identifier,
                                 m->sent);
                }
        }
        /* The storm exercised every kind of message. */
        assert_true(n_alerts > 0 && n_updates > 0 && n_cancels > 0);
        print_message("%s: %zu messages (%zu Alert, %zu Update, %zu Cancel), all valid CAP 1.2\n",
                      name, n_msgs, n_alerts, n_updates, n_cancels);
        free(chains);
        it_strs_free(&lines);
        free_msgs(msgs, n_msgs);
}

static void cap_of_the_small_storm_validates_and_chains(void **state) {
        char input[512], rules[512], stations[512];
        snprintf(input, sizeof(input), "%s/tests/data/storm-small.jsonl", it.src);
        snprintf(rules, sizeof(rules), "%s/tests/data/rules-small", it.src);
        snprintf(stations, sizeof(stations), "%s/tests/data/stations-small.csv", it.src);
        replay_writes_valid_cap_following_each_lifecycle("small", input, rules, stations);
}

/* Miyun's registry has towns and coordinates: areas with circles. */
static void cap_of_a_simulated_miyun_storm_validates_and_chains(void **state) {
        char input[512], rules[512], stations[512];
        snprintf(input, sizeof(input), "%s/sim.jsonl", it.tmpdir);
        snprintf(rules, sizeof(rules), "%s/rules", it.src);
        snprintf(stations, sizeof(stations), "%s/stations/miyun.csv", it.src);
        const char *argv[] = { it.bin, "simulate", "--stations", stations, "--seed", "9", NULL };
        assert_int_equal(it_run(argv, NULL, input, NULL), 0);
        replay_writes_valid_cap_following_each_lifecycle("miyun", input, rules, stations);
}

/* The same input gives the same messages, byte for byte, in every run:
 * identifiers are derived from the events, never counted. */
static void two_replays_write_identical_messages(void **state) {
        char input[512], rules[512], stations[512], dir[2][512];
        snprintf(input, sizeof(input), "%s/tests/data/storm-small.jsonl", it.src);
        snprintf(rules, sizeof(rules), "%s/tests/data/rules-small", it.src);
        snprintf(stations, sizeof(stations), "%s/tests/data/stations-small.csv", it.src);
        for (int i = 0; i < 2; i++) {
                snprintf(dir[i], sizeof(dir[i]), "%s/again-%d", it.tmpdir, i);
                const char *argv[] = { it.bin, "replay", "--rules", rules, "--stations", stations, "--cap", dir[i],
                                       input, NULL };
                assert_int_equal(it_run(argv, NULL, NULL, "/dev/null"), 0);
        }
        DIR *d = opendir(dir[0]);
        struct dirent *de;
        size_t n = 0;
        assert_non_null(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char a[1024], b[1024];
                snprintf(a, sizeof(a), "%s/%s", dir[0], de->d_name);
                snprintf(b, sizeof(b), "%s/%s", dir[1], de->d_name);
                char *ta = it_read_file(a, NULL), *tb = it_read_file(b, NULL);
                assert_string_equal(ta, tb);
                free(ta);
                free(tb);
                n++;
        }
        closedir(d);
        assert_true(n > 0);
}

static void a_sender_cap_cannot_carry_is_a_usage_error(void **state) {
        char input[512], rules[512], stations[512], err[512];
        snprintf(input, sizeof(input), "%s/tests/data/storm-small.jsonl", it.src);
        snprintf(rules, sizeof(rules), "%s/tests/data/rules-small", it.src);
        snprintf(stations, sizeof(stations), "%s/tests/data/stations-small.csv", it.src);
        snprintf(err, sizeof(err), "%s/bad-sender.txt", it.tmpdir);
        const char *argv[] = { it.bin, "replay", "--rules", rules, "--stations", stations, "--cap", it.tmpdir,
                               "--cap-sender", "Miyun, Beijing", input, NULL };
        assert_int_equal(it_run(argv, NULL, NULL, err), 2);
        assert_true(it_file_count(err, "commas") == 1);
}

static int setup(void **state) {
        return it_init("fenghuo-cap");
}

static int teardown(void **state) {
        xmlCleanupParser();
        return it_remove_tmpdir();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(cap_of_the_small_storm_validates_and_chains),
                cmocka_unit_test(cap_of_a_simulated_miyun_storm_validates_and_chains),
                cmocka_unit_test(two_replays_write_identical_messages),
                cmocka_unit_test(a_sender_cap_cannot_carry_is_a_usage_error),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
