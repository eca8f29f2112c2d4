/* Schema migrations: numbered SQL files applied once each, in order. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "log.h"

struct mfile {
    long version;
    char *path;
};

static int cmp_mfile(const void *a, const void *b)
{
    const struct mfile *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = '\0';
            }
        }
    }
    fclose(f);
    return buf;
}

/* Numbered files "NNN_name.sql" of dir, sorted by number. */
static int list_migrations(const char *dir, struct mfile **out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return CHATD_ENOTFOUND;
    struct mfile *files = NULL;
    size_t n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        size_t len = strlen(e->d_name);
        if (end == e->d_name || *end != '_' || len < 5 || strcmp(e->d_name + len - 4, ".sql"))
            continue;
        struct mfile *nf = realloc(files, (n + 1) * sizeof *files);
        if (!nf) {
            rc = CHATD_ENOMEM;
            break;
        }
        files = nf;
        size_t plen = strlen(dir) + len + 2;
        if (!(files[n].path = malloc(plen))) {
            rc = CHATD_ENOMEM;
            break;
        }
        snprintf(files[n].path, plen, "%s/%s", dir, e->d_name);
        files[n++].version = v;
    }
    closedir(d);
    if (n > 1) /* an empty folder has no array at all, and qsort must not see NULL */
        qsort(files, n, sizeof *files, cmp_mfile);
    *out = files;
    *n_out = n;
    return rc;
}

static int applied(chatd_db *db, long version)
{
    chatd_stmt *st =
        db_bind(db, "SELECT 1 FROM schema_migrations WHERE version = ?", "i", (int64_t)version);
    if (!st)
        return CHATD_EINTERNAL;
    int rc = db->drv->step(st);
    db->drv->reset(st);
    return rc == CHATD_ROW ? 1 : rc == CHATD_DONE ? 0 : rc;
}

/* Apply one migration unless it is applied already; the check is inside the
 * transaction, so two processes on one SQLite file apply it once. */
static int apply_one(chatd_db *db, const struct mfile *m, char *err, size_t errlen)
{
    const struct db_driver *drv = db->drv;
    char *sql = read_file(m->path);
    if (!sql) {
        snprintf(err, errlen, "cannot read migration %s", m->path);
        return CHATD_EINVAL;
    }
    int rc = drv->begin(db, 1), done = 0;
    if (rc == 0 && (done = applied(db, m->version)) < 0)
        rc = done;
    if (rc == 0 && !done)
        rc = drv->exec(db, sql);
    if (rc == 0 && !done)
        rc = db_run(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", "ii",
                    (int64_t)m->version, clock_wall_s());
    if (rc == 0)
        rc = drv->commit(db);
    free(sql);
    if (rc < 0) {
        drv->rollback(db);
        snprintf(err, errlen, "migration %s failed (see the log above)", m->path);
        return rc;
    }
    if (!done)
        log_info("applied migration %s", m->path);
    return 0;
}

int db_migrate(const struct db_driver *drv, const struct settings *s, const char *dir, char *err,
               size_t errlen)
{
    char path[4096];
    chatd_db *db = NULL;
    struct mfile *files = NULL;
    size_t n = 0;
    int locked = 0;
    snprintf(path, sizeof path, "%s/%s", dir, drv->name);
    int rc = list_migrations(path, &files, &n);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the migrations folder %s", path);
        goto out;
    }
    if ((rc = drv->open(s, &db, err, errlen)) < 0)
        goto out;
    /* Nodes started together migrate one at a time (MariaDB's DDL commits by
     * itself, so a transaction cannot serialise them). */
    if (drv->migrate_lock && (rc = drv->migrate_lock(db, 1)) < 0) {
        snprintf(err, errlen, "cannot take the migration lock of %s", drv->name);
        goto out;
    }
    locked = drv->migrate_lock != NULL;
    rc = drv->exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(db, &files[i], err, errlen);
    if (rc < 0 && !*err)
        snprintf(err, errlen, "cannot apply migrations from %s", path);
out:
    if (locked)
        drv->migrate_lock(db, 0);
    if (db)
        drv->close(db);
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
    return rc;
}
