/*
 * The store's health check for /healthz: every backend answers a trivial
 * read, and one whose last write failed must also take a real write.
 */
#include <stdlib.h>

#include "clock.h"
#include "db.h"
#include "store.h"

struct health_check {
    void (*done)(void *arg, int ok);
    void *arg;
    int pending, ok;
};

struct health_probe {
    struct health_check *h;
    struct store_backend *b;
};

static int health_run(chatd_db *db, void *arg)
{
    (void)arg;
    chatd_stmt *st = db_bind(db, "SELECT 1", "");
    int rc = st ? db->drv->step(st) : CHATD_EUNAVAIL;
    if (st)
        db->drv->reset(st);
    return rc == CHATD_ROW ? 0 : CHATD_EUNAVAIL;
}

/* A real write, for a store whose last write failed: it is healthy again
 * when this commits. */
static int health_write(chatd_db *db, void *arg)
{
    (void)arg;
    int rc =
        db_run(db, "UPDATE chatd_health SET checked_at = ? WHERE id = 1", "i", clock_wall_ms());
    return rc < 0 ? rc : 0;
}

/* One answer to a health check (b: the failing backend a write probe was for). */
static void health_answer(struct health_check *h, struct store_backend *b, int status)
{
    if (b && status >= 0)
        store_backend_write_ok(b);
    if (status < 0)
        h->ok = 0;
    if (--h->pending == 0) {
        h->done(h->arg, h->ok);
        free(h);
    }
}

static void health_done(void *arg, int status)
{
    struct health_probe *p = arg;
    health_answer(p->h, p->b, status);
    free(p);
}

int store_health_check(void (*done)(void *arg, int ok), void *arg)
{
    struct health_check *h = calloc(1, sizeof *h);
    if (!h)
        return CHATD_ENOMEM;
    *h = (struct health_check){done, arg, 1, 1};
    for (struct store_backend *b = store_backend_next(NULL); b; b = store_backend_next(b)) {
        /* Every backend answers a read; one whose last write failed must also
         * take a write. */
        for (int write = 0; write <= store_backend_write_failing(b); write++) {
            struct health_probe *p = calloc(1, sizeof *p);
            if (p)
                *p = (struct health_probe){h, write ? b : NULL};
            h->pending++;
            /* the primary's read: a replica answering says nothing of it */
            if (!p || store_submit(b, write ? CHATD_JOB_WRITE : CHATD_JOB_READ | CHATD_JOB_PRIMARY,
                                   write ? health_write : health_run, health_done, p) < 0) {
                free(p);
                health_answer(h, NULL, CHATD_ENOMEM);
            }
        }
    }
    health_answer(h, NULL, 0); /* drop the starting count; answers now if no backend */
    return 0;
}
