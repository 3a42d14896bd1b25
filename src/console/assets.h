/* The console's pages, compiled in from src/console/assets by embed.py so
 * the binary serves them with no data directory and no network. */
#ifndef FENGHUO_CONSOLE_ASSETS_H
#define FENGHUO_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct fh_console_asset {
        const char *path;          /* "/app.js"; "/" is index.html */
        const char *type;          /* Content-Type */
        const unsigned char *data;
        size_t len;
} fh_console_asset;

/* The asset served at url (the query string already removed by
 * libmicrohttpd), or NULL. */
const fh_console_asset *fh_console_asset_find(const char *url);

#endif
