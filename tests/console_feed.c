/* Test helper for tests/console_browser.py: writes one alert event to Redis
 * through the daemon's own sink (the Lua script that checks silences), as
 * `fenghuo run` does, and exits once Redis has answered.
 *   console_feed PORT FIELD LEVEL EVENT_ID JSON */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "redis_sink.h"

static void on_closed(void *userdata, size_t undelivered) {
        *(size_t *) userdata = undelivered + 1;
}

int main(int argc, char **argv) {
        uv_loop_t loop;
        fh_redis_config c;
        fh_redis *r;
        size_t closed = 0;

        if (argc != 6) {
                fputs("usage: console_feed PORT FIELD LEVEL EVENT_ID JSON\n", stderr);
                return 2;
        }
        uv_loop_init(&loop);
        fh_redis_config_defaults(&c);
        c.port = atoi(argv[1]);
        if (fh_redis_new(&r, &loop, &c, NULL, NULL) < 0 ||
            fh_redis_send_once(r, argv[5], strlen(argv[5]), argv[2], argv[3], !strcmp(argv[3], "none"), argv[4],
                               NULL) < 0) {
                fputs("console_feed: cannot queue the event\n", stderr);
                return 1;
        }
        /* Closing waits for the backlog, up to the deadline. */
        fh_redis_close(r, 5000, on_closed, &closed);
        while (!closed)
                uv_run(&loop, UV_RUN_ONCE);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        if (closed > 1) {
                fputs("console_feed: Redis did not take the event\n", stderr);
                return 1;
        }
        return 0;
}
