/*
 * Small open-addressing hash maps used across the core: keys are uint64 ids
 * or NUL-terminated strings; values are pointers the caller owns. Not
 * thread-safe: each map belongs to one thread.
 */
#ifndef CHATD_HMAP_H
#define CHATD_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap hmap;

/* A map with uint64 keys (string = 0) or string keys (string = 1; the map copies keys). */
hmap *hmap_new(int string_keys);
/* Free the map (not the values). NULL is fine. */
void hmap_free(hmap *m);
size_t hmap_count(const hmap *m);

/* Insert or replace; returns 0 or CHATD_ENOMEM. */
int hmap_put_id(hmap *m, uint64_t key, void *value);
int hmap_put_str(hmap *m, const char *key, void *value);
/* Lookup; NULL when absent. */
void *hmap_get_id(const hmap *m, uint64_t key);
void *hmap_get_str(const hmap *m, const char *key);
/* Remove; returns the value that was there or NULL. */
void *hmap_del_id(hmap *m, uint64_t key);
void *hmap_del_str(hmap *m, const char *key);

/* Iterate: *pos starts at 0; returns 0 at the end. The map must not change
 * during the walk: collect the keys to delete, then delete them after it. */
int hmap_iter(const hmap *m, size_t *pos, uint64_t *id_key, const char **str_key, void **value);

/* Remove every entry for which drop(key, value, arg) returns nonzero (drop
 * frees the value if it must; it may not change the map otherwise). Each
 * entry is seen once. Returns how many were removed. */
size_t hmap_sweep(hmap *m,
                  int (*drop)(uint64_t id_key, const char *str_key, void *value, void *arg),
                  void *arg);

#endif
