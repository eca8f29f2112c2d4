/*
 * What the programs that test the MariaDB driver on a real server share:
 * the driver and settings from the command line (chatd settings such as
 * mariadb.port=...), a connection, and FAIL, which exits 1 with a line on
 * stderr prefixed by TEST_NAME (defined before this file is included).
 */
#ifndef CHATD_TESTS_DRIVER_TEST_H
#define CHATD_TESTS_DRIVER_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"

static const struct db_driver *drv;
static struct settings s;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, TEST_NAME ": " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

/* The settings of argv and the MariaDB driver, or exit 1. */
static void driver_setup(int argc, char **argv)
{
    char err[256] = "";
    if (config_load(NULL, (const char *const *)argv + 1, argc - 1, &s, err, sizeof err) < 0)
        FAIL("settings: %s", err);
    if (!(drv = db_driver_find("mariadb")))
        FAIL("no mariadb driver");
}

static chatd_db *open_db(void)
{
    chatd_db *db = NULL;
    char err[256] = "";
    if (drv->open(&s, &db, err, sizeof err) < 0)
        FAIL("open: %s", err);
    return db;
}

#endif
