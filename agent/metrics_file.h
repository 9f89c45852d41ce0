/*
 * The metrics_file of agent.conf: the metrics text rewritten every
 * metrics_interval for node_exporter's textfile collector. The text is
 * rendered on the event loop; a worker thread writes it to a temporary
 * file in the same directory (".NAME.XXXXXX", which the collector's
 * "*.prom" pattern never matches), syncs it, makes it mode 0644 and
 * renames it over the file, so a reader sees the old text or the new,
 * never part of one.
 */
#ifndef RAMKEY_METRICS_FILE_H
#define RAMKEY_METRICS_FILE_H

#include <stddef.h>
#include <stdint.h>

struct evloop;
struct metrics;
struct metrics_file;
struct worker_pool;

int metrics_file_new(struct evloop *loop, struct worker_pool *workers,
    struct metrics *m, struct metrics_file **ret);
/* Write to path (NULL: stop writing) every interval_s seconds, the first
 * time now. Called again (reload), it takes the new settings. */
int metrics_file_configure(struct metrics_file *mf, const char *path,
    uint64_t interval_s);
/* A write in flight finishes on its worker; nothing is written after. */
void metrics_file_free(struct metrics_file *mf);

/*
 * Replace path with text atomically: a temporary file beside it, written,
 * fsync'ed, mode 0644, renamed over path. On failure *why (whylen bytes)
 * says what failed. Blocks: call it on a worker, not on the loop.
 */
int metrics_file_write(const char *path, const char *text, size_t len,
    char *why, size_t whylen);

#endif
