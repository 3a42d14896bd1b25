/* `fenghuo run` refusing to start, as an operator meets it: a bad Kafka
 * property, a subscription librdkafka refuses once everything else is up,
 * a state directory that cannot exist, properties that would switch off
 * the daemon's guarantees. Each must say why, exit 1, leak nothing and
 * touch no freed memory (valgrind, or the sanitizers of the ASan build),
 * and never show a property's value. No server is needed: nothing gets as
 * far as talking to one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "it_harness.h"

typedef struct result {
        int code;
        char *out;
        char *err;
} result;

static bool no_daemon;

static char *path(const char *rel) {
        static char buf[4][512];
        static int k;
        k = (k + 1) % 4;
        snprintf(buf[k], sizeof(buf[k]), "%s/%s", it.src, rel);
        return buf[k];
}

static bool use_valgrind(void) {
        /* valgrind cannot run a binary built with AddressSanitizer; the
         * sanitizer run of the suite sets this, and the sanitizers judge. */
        return !getenv("FENGHUO_NO_VALGRIND") && system("command -v valgrind >/dev/null 2>&1") == 0;
}

/* `fenghuo run` (or `run --check`) on a configuration made of the common
 * head and `rest`, under valgrind where it can be. Still-reachable blocks
 * are left out: libsasl2, which librdkafka initialises, keeps its plugin
 * table for the life of the process. */
static result run_config(const char *name, const char *rest, bool check) {
        char cfg[512], out[512], err[512];
        FILE *f;
        result r = { 0 };

        snprintf(cfg, sizeof(cfg), "%s/%s.yaml", it.tmpdir, name);
        f = fopen(cfg, "we");
        assert_non_null(f);
        fprintf(f, "rules: %s\nstations: %s\n%s", path("rules"), path("stations/miyun.csv"), rest);
        fclose(f);
        snprintf(out, sizeof(out), "%s/%s.out", it.tmpdir, name);
        snprintf(err, sizeof(err), "%s/%s.err", it.tmpdir, name);
        /* The synonyms: valgrind replaces jemalloc's malloc as it does
         * libc's, where the program is linked with it (meson.build). */
        const char *vg[] = { "valgrind", "-q", "--soname-synonyms=somalloc=*jemalloc*", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
                             "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99",
                             it.bin, "run", "--config", cfg, check ? "--check" : NULL, NULL };
        const char *plain[] = { it.bin, "run", "--config", cfg, check ? "--check" : NULL, NULL };
        const char *const *argv = use_valgrind() ? vg : plain;
        if (argv == vg) {
                /* it_run wants a path for argv[0] */
                static char valgrind[256];
                FILE *p = popen("command -v valgrind", "r");
                assert_non_null(fgets(valgrind, sizeof(valgrind), p));
                pclose(p);
                valgrind[strcspn(valgrind, "\n")] = '\0';
                vg[0] = valgrind;
        }
        r.code = it_run(argv, NULL, out, err);
        r.out = it_read_file(out, NULL);
        r.err = it_read_file(err, NULL);
        if (r.code == 2 && strstr(r.err, "no daemon"))
                no_daemon = true;
        return r;
}

static void result_free(result *r) {
        free(r->out);
        free(r->err);
}

static void refused_cleanly(result *r, const char *why) {
        if (r->code != 1 || !strstr(r->err, why))
                fprintf(stderr, "exit %d, stderr:\n%s\n", r->code, r->err);
        assert_int_equal(r->code, 1);        /* 99: valgrind found an error or a leak */
        assert_non_null(strstr(r->err, why));
        /* ASan and UBSan say so on stderr even where the exit code is kept */
        assert_null(strstr(r->err, "Sanitizer"));
        assert_null(strstr(r->err, "runtime error"));
}

static void a_kafka_client_librdkafka_refuses_stops_the_start_cleanly(void **state) {
        /* Accepted property by property, refused by rd_kafka_new(). */
        result r = run_config("ssl", "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n  dead_letter_topic: dlq\n"
                              "  properties:\n    security.protocol: ssl\n    ssl.ca.location: /nonexistent/ca.pem\n",
                              false);
        if (no_daemon) {
                result_free(&r);
                skip();
        }
        refused_cleanly(&r, "failed to create Kafka producer: ssl.ca.location");
        result_free(&r);
}

static void a_failure_once_redis_and_the_loop_handles_exist_unwinds_them_all(void **state) {
        /* An invalid topic pattern is refused by rd_kafka_subscribe(), the
         * last step: Redis, the timers, the queue watchers and the signal
         * handlers exist by then and must all be undone. */
        result r = run_config("subscribe", "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: \"^([\"}\n"
                              "  dead_letter_topic: dlq\nredis:\n  host: 127.0.0.1\n  port: 1\n",
                              false);
        if (no_daemon) {
                result_free(&r);
                skip();
        }
        refused_cleanly(&r, "failed to subscribe");
        result_free(&r);
}

static void a_state_directory_that_cannot_be_made_is_refused_at_start(void **state) {
        char rest[1024], file[512];

        snprintf(file, sizeof(file), "%s/plain-file", it.tmpdir);
        it_write_file(file, "not a directory\n");
        snprintf(rest, sizeof(rest), "state_dir: %s/state\nkafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                 "redis:\n  host: 127.0.0.1\n  port: 1\n", file);
        result r = run_config("state", rest, false);
        if (no_daemon) {
                result_free(&r);
                skip();
        }
        snprintf(rest, sizeof(rest), "refusing to start: cannot keep state in %s/state: Not a directory", file);
        refused_cleanly(&r, rest);
        result_free(&r);
}

/* Every property the daemon sets itself because a promise rests on it. */
static const char *const guarded[] = {
        "enable.idempotence", "acks", "request.required.acks", "message.timeout.ms", "delivery.timeout.ms",
        "retries", "message.send.max.retries", "transactional.id", "partitioner", "enable.auto.offset.store",
        "enable.auto.commit", "auto.offset.reset", "isolation.level", "partition.assignment.strategy", "group.id",
        "bootstrap.servers", "metadata.broker.list",
};

static void each_guarded_kafka_property_is_refused_naming_the_key_and_why(void **state) {
        static const char *const maps[] = { "properties", "consumer_properties", "producer_properties" };

        for (size_t m = 0; m < 3; m++) {
                char rest[8192];
                size_t off = (size_t) snprintf(rest, sizeof(rest), "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                                               "  %s:\n", maps[m]);
                for (size_t i = 0; i < sizeof(guarded) / sizeof(*guarded); i++)
                        off += (size_t) snprintf(rest + off, sizeof(rest) - off, "    %s: \"secret-%zu-value\"\n",
                                                 guarded[i], i);
                for (int check = 0; check < 2; check++) {
                        result r = run_config("guarded", rest, check);
                        if (no_daemon) {
                                result_free(&r);
                                skip();
                        }
                        assert_int_equal(r.code, 1);
                        for (size_t i = 0; i < sizeof(guarded) / sizeof(*guarded); i++) {
                                char want[256];
                                /* line 7 + i, column 5: the key itself */
                                snprintf(want, sizeof(want), "guarded.yaml:%zu:5: Kafka property '%s' cannot be set: ",
                                         7 + i, guarded[i]);
                                if (!strstr(r.err, want))
                                        fprintf(stderr, "missing \"%s\" in:\n%s\n", want, r.err);
                                assert_non_null(strstr(r.err, want));
                        }
                        assert_null(strstr(r.err, "secret-"));
                        assert_null(strstr(r.out, "secret-"));
                        result_free(&r);
                }
        }
}

static void a_rejected_property_value_never_reaches_the_output(void **state) {
        /* A mistyped password key, a value librdkafka quotes when it
         * refuses it, and one it refuses by range. */
        result r = run_config("values", "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n  properties:\n"
                              "    sasl.pasword: hunter2-password\n"
                              "    compression.codec: hunter3-codec\n"
                              "  consumer_properties:\n    fetch.wait.max.ms: \"99999999999\"\n",
                              true);
        if (no_daemon) {
                result_free(&r);
                skip();
        }
        assert_int_equal(r.code, 1);
        assert_non_null(strstr(r.err, "values.yaml:7:5: bad Kafka property 'sasl.pasword'"));
        assert_non_null(strstr(r.err, "values.yaml:8:5: bad Kafka property 'compression.codec'"));
        assert_non_null(strstr(r.err, "values.yaml:10:5: bad Kafka property 'fetch.wait.max.ms'"));
        assert_null(strstr(r.err, "hunter"));
        assert_null(strstr(r.err, "99999999999"));
        assert_null(strstr(r.out, "hunter"));
        result_free(&r);
}

static void secrets_from_files_and_credentials_are_read_and_never_shown(void **state) {
        char rest[2048], file[512], creds[300];

        snprintf(file, sizeof(file), "%s/redis-password", it.tmpdir);
        it_write_file(file, "file-s3cret\n");
        snprintf(creds, sizeof(creds), "%s/creds", it.tmpdir);
        snprintf(rest, sizeof(rest), "mkdir -p %s && printf 'cred-s3cret\\n' > %s/kafka-sasl", creds, creds);
        assert_int_equal(system(rest), 0);

        /* Good: a file for Redis, a credential for Kafka SASL. */
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        snprintf(rest, sizeof(rest), "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                 "  sasl_password_credential: kafka-sasl\n  properties: {sasl.username: fenghuo}\n"
                 "redis:\n  username: fenghuo\n  password_file: %s\n", file);
        result r = run_config("secrets", rest, true);
        if (no_daemon) {
                result_free(&r);
                unsetenv("CREDENTIALS_DIRECTORY");
                skip();
        }
        if (r.code != 0)
                fprintf(stderr, "%s\n", r.err);
        assert_int_equal(r.code, 0);
        result_free(&r);

        /* A credential without systemd's directory, an empty file, a secret
         * given twice, a user without a password: each refused by name. */
        unsetenv("CREDENTIALS_DIRECTORY");
        snprintf(file, sizeof(file), "%s/empty", it.tmpdir);
        it_write_file(file, "\n");
        snprintf(rest, sizeof(rest), "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                 "  sasl_password_credential: kafka-sasl\n"
                 "  properties: {sasl.password: prop-s3cret}\n"
                 "redis:\n  password: yaml-s3cret\n  password_file: %s/redis-password\n", it.tmpdir);
        r = run_config("twice", rest, true);
        assert_int_equal(r.code, 1);
        assert_non_null(strstr(r.err, "twice.yaml:6:29: 'sasl_password_credential' names a systemd credential, "
                                      "but $CREDENTIALS_DIRECTORY is not set"));
        assert_non_null(strstr(r.err, "give only one of 'redis.password', 'redis.password_file'"));
        assert_null(strstr(r.err, "s3cret"));
        result_free(&r);

        snprintf(rest, sizeof(rest), "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                 "redis:\n  username: fenghuo\n  password_file: %s\n", file);
        r = run_config("empty", rest, true);
        assert_int_equal(r.code, 1);
        snprintf(rest, sizeof(rest), "empty.yaml:8:18: 'password_file': %s is empty", file);
        assert_non_null(strstr(r.err, rest));
        result_free(&r);

        r = run_config("nouser", "kafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\nredis:\n  username: fenghuo\n", true);
        assert_int_equal(r.code, 1);
        assert_non_null(strstr(r.err, "'redis.username' needs a password"));
        result_free(&r);
}

static int free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        port = ntohs(a.sin_port);
        close(fd);
        return port;
}

/* The daemon itself, with a Redis 6 ACL user whose password comes from a
 * systemd credential: it gets in (the default user is off), and a wrong
 * password is reported without being shown. Kafka is not needed for this
 * and is not there. */
static void the_daemon_logs_in_to_redis_as_an_acl_user_with_a_credential(void **state) {
        char rest[1024], creds[300], log[512], cmd[2048];
        int port = free_port();
        pid_t redis;

        if (system("command -v redis-server >/dev/null 2>&1") != 0) {
                skip();
                return;
        }
        redis = fork();
        assert_true(redis >= 0);
        if (redis == 0) {
                char p[16];
                snprintf(p, sizeof(p), "%d", port);
                int devnull = open("/dev/null", O_WRONLY);
                if (devnull >= 0)
                        dup2(devnull, 1);
                execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                       "no", "--user", "default", "off", "--user", "fenghuo", "on", ">acl-s3cret", "~*", "&*", "+@all",
                       (char *) NULL);
                _exit(127);
        }
        snprintf(creds, sizeof(creds), "%s/creds", it.tmpdir);
        snprintf(cmd, sizeof(cmd), "mkdir -p %s && printf 'acl-s3cret\\n' > %s/redis && printf 'wrong-s3cret\\n' > %s/bad",
                 creds, creds, creds);
        assert_int_equal(system(cmd), 0);
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        for (int good = 1; good >= 0; good--) {
                snprintf(rest, sizeof(rest), "%s/acl-%d.yaml", it.tmpdir, good);
                FILE *f = fopen(rest, "we");
                fprintf(f, "rules: %s\nstations: %s\nkafka:\n  brokers: 127.0.0.1:1\n  topics: {rain: r}\n"
                        "  properties: {log_level: \"0\"}\n"
                        "redis:\n  host: 127.0.0.1\n  port: %d\n  username: fenghuo\n  password_credential: %s\n",
                        path("rules"), path("stations/miyun.csv"), port, good ? "redis" : "bad");
                fclose(f);
                snprintf(log, sizeof(log), "%s/acl-%d.log", it.tmpdir, good);
                it_proc d;
                it_daemon_start(&d, rest, log, 30);
                if (good)
                        it_daemon_wait_log(&d, "Redis connected", 1, 30);
                else
                        it_nap_ms(1500);
                it_daemon_stop(&d, 15);
                char *text = it_read_file(log, NULL);
                if (good)
                        assert_non_null(strstr(text, "Redis connected"));
                else
                        assert_null(strstr(text, "Redis connected"));
                assert_null(strstr(text, "s3cret"));
                free(text);
        }
        unsetenv("CREDENTIALS_DIRECTORY");
        kill(redis, SIGKILL);
        waitpid(redis, NULL, 0);
}

static int setup(void **state) {
        return it_init("fenghuo-start");
}

static int teardown(void **state) {
        return it_remove_tmpdir();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(a_kafka_client_librdkafka_refuses_stops_the_start_cleanly),
                cmocka_unit_test(a_failure_once_redis_and_the_loop_handles_exist_unwinds_them_all),
                cmocka_unit_test(a_state_directory_that_cannot_be_made_is_refused_at_start),
                cmocka_unit_test(each_guarded_kafka_property_is_refused_naming_the_key_and_why),
                cmocka_unit_test(a_rejected_property_value_never_reaches_the_output),
                cmocka_unit_test(secrets_from_files_and_credentials_are_read_and_never_shown),
                cmocka_unit_test(the_daemon_logs_in_to_redis_as_an_acl_user_with_a_credential),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
