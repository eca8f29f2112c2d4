/*
 * Storage jobs: worker pools that run jobs off the loop thread, with group
 * commit for writes, and a completion queue that hands results back to the
 * loop. Also carries host->post() calls from any thread.
 */
#ifndef CHATD_STORE_H
#define CHATD_STORE_H

#include <event2/event.h>
#include <stdint.h>

#include "chatd/plugin.h"

struct settings;
struct store_backend;

/* Start the completion queue on base and the CPU pool. Loop thread, start-up.
 * 0 or CHATD_ENOMEM. */
int store_init(struct event_base *base, const struct settings *s, const char *sql_dir);
/* Open (once) the named backend: migrations, then its write and read pools.
 * Returns NULL with a reason in err. */
struct store_backend *store_backend_open(const char *name, char *err, size_t errlen);

/* The backend's driver name ("sqlite"). */
const char *store_backend_name(const struct store_backend *b);
/* Queue a job (see chatd_job_run). Loop thread. 0 or a negative code. */
int store_submit(struct store_backend *b, int flags, chatd_job_run run, chatd_job_done done,
                 void *arg);
/* The same, where write jobs of one nonzero key run one after another in
 * the order submitted (on one writer); key 0 is store_submit's. */
int store_submit_keyed(struct store_backend *b, int flags, uint64_t key, chatd_job_run run,
                       chatd_job_done done, void *arg);
/* Write jobs of run may be run together by run_batch (chatd_job_run_batch).
 * Loop thread, before such jobs are submitted. 0, CHATD_EINVAL (run named
 * with another, or NULL) or CHATD_ENOMEM (too many). */
int store_batch_register(chatd_job_run run, chatd_job_run_batch run_batch);
/* Run a read job on the calling thread with a connection of its own: its
 * status, or why the connection failed. Start-up only. */
int store_run_sync(struct store_backend *b, chatd_job_run run, void *arg);
/* Run fn(arg) on the loop thread soon. Any thread. 0 or CHATD_ENOMEM (fn
 * will not run). */
int store_post(void (*fn)(void *arg), void *arg);

/* Jobs queued or running, not yet completed on the loop. */
long store_in_flight(void);
/* Jobs waiting in the queues (for /metrics). */
long store_queue_depth(void);
/* Ask every opened backend a trivial query (and a write of one whose last
 * write failed); done(arg, ok) on the loop thread when all answered (ok = 1)
 * or one failed (ok = 0). Loop thread. 0, or CHATD_ENOMEM (done not called). */
int store_health_check(void (*done)(void *arg, int ok), void *arg);

/* The opened backends, one after another: the first for NULL, then NULL
 * after the last. Loop thread. */
struct store_backend *store_backend_next(struct store_backend *b);
/* Whether the backend's last write found it unable to write (read-only,
 * disk full), and telling it a write went through again. Loop thread. */
int store_backend_write_failing(const struct store_backend *b);
void store_backend_write_ok(struct store_backend *b);

/* Stop the pools after their queues are empty and join the threads. */
void store_shutdown(void);

#endif
