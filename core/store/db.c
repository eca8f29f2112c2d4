/* Bound statements in one call, for the core's own SQL, and the drivers known. */
#include "db.h"

#include <stdarg.h>
#include <string.h>

static chatd_stmt *vbind(chatd_db *db, const char *sql, const char *fmt, va_list ap)
{
    const struct db_driver *d = db->drv;
    chatd_stmt *st = d->prepare(db, sql);
    for (int i = 0; st && fmt[i]; i++) {
        int rc;
        if (fmt[i] == 'i') {
            rc = d->bind_int(st, i + 1, va_arg(ap, int64_t));
        } else {
            const char *v = va_arg(ap, const char *);
            rc = v ? d->bind_text(st, i + 1, v, strlen(v)) : d->bind_null(st, i + 1);
        }
        if (rc < 0) {
            d->reset(st);
            st = NULL;
        }
    }
    return st;
}

chatd_stmt *db_bind(chatd_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chatd_stmt *st = vbind(db, sql, fmt, ap);
    va_end(ap);
    return st;
}

int db_run(chatd_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    chatd_stmt *st = vbind(db, sql, fmt, ap);
    va_end(ap);
    if (!st)
        return CHATD_EINTERNAL;
    int rc;
    while ((rc = db->drv->step(st)) == CHATD_ROW)
        ;
    db->drv->reset(st);
    return rc == CHATD_DONE ? 0 : rc < 0 ? rc : CHATD_EINTERNAL;
}

static const struct db_driver *drivers[DB_DRIVERS_MAX] = {&db_sqlite, &db_mariadb};

const struct db_driver *db_driver_find(const char *name)
{
    for (int i = 0; i < DB_DRIVERS_MAX && drivers[i]; i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

int db_driver_add(const struct db_driver *d)
{
    if (!d || !d->name || !*d->name || db_driver_find(d->name))
        return CHATD_EINVAL;
    for (int i = 0; i < DB_DRIVERS_MAX; i++)
        if (!drivers[i]) {
            drivers[i] = d;
            return 0;
        }
    return CHATD_ELIMIT;
}
