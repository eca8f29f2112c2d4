#include "hmap.h"

#include <stdlib.h>
#include <string.h>

#include "chatd/plugin.h"

/* Linear probing with backward-shift deletion: no tombstones, so lookups
 * stay short however many connections come and go. */
struct slot {
    uint64_t hash; /* 0 = empty */
    uint64_t id;
    char *str;
    void *value;
};

struct hmap {
    struct slot *slots;
    size_t cap; /* power of two */
    size_t count;
    int string_keys;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x ? x : 1;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ULL;
    }
    return mix64(h);
}

hmap *hmap_new(int string_keys)
{
    hmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->string_keys = string_keys;
    return m;
}

void hmap_free(hmap *m)
{
    if (!m)
        return;
    if (m->string_keys)
        for (size_t i = 0; i < m->cap; i++)
            free(m->slots[i].str);
    free(m->slots);
    free(m);
}

size_t hmap_count(const hmap *m)
{
    return m->count;
}

static int slot_matches(const hmap *m, const struct slot *s, uint64_t h, uint64_t id,
                        const char *str)
{
    if (s->hash != h)
        return 0;
    return m->string_keys ? strcmp(s->str, str) == 0 : s->id == id;
}

static struct slot *find(const hmap *m, uint64_t h, uint64_t id, const char *str)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct slot *s = &m->slots[i];
        if (!s->hash)
            return NULL;
        if (slot_matches(m, s, h, id, str))
            return s;
    }
}

static int grow(hmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return CHATD_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct slot *s = &m->slots[i];
        if (!s->hash)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

static int put(hmap *m, uint64_t h, uint64_t id, const char *str, void *value)
{
    struct slot *s = find(m, h, id, str);
    if (s) {
        s->value = value;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return CHATD_ENOMEM;
    char *copy = NULL;
    if (str && !(copy = strdup(str)))
        return CHATD_ENOMEM;
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].hash)
        i = (i + 1) & mask;
    m->slots[i] = (struct slot){.hash = h, .id = id, .str = copy, .value = value};
    m->count++;
    return 0;
}

static void *del(hmap *m, uint64_t h, uint64_t id, const char *str)
{
    struct slot *s = find(m, h, id, str);
    if (!s)
        return NULL;
    void *value = s->value;
    free(s->str);
    size_t mask = m->cap - 1;
    size_t i = (size_t)(s - m->slots);
    /* Shift later members of the probe run back into the hole. */
    for (size_t j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = (struct slot){0};
    m->count--;
    return value;
}

int hmap_put_id(hmap *m, uint64_t key, void *value)
{
    return put(m, mix64(key), key, NULL, value);
}

int hmap_put_str(hmap *m, const char *key, void *value)
{
    return put(m, hash_str(key), 0, key, value);
}

void *hmap_get_id(const hmap *m, uint64_t key)
{
    struct slot *s = find(m, mix64(key), key, NULL);
    return s ? s->value : NULL;
}

void *hmap_get_str(const hmap *m, const char *key)
{
    struct slot *s = find(m, hash_str(key), 0, key);
    return s ? s->value : NULL;
}

void *hmap_del_id(hmap *m, uint64_t key)
{
    return del(m, mix64(key), key, NULL);
}

void *hmap_del_str(hmap *m, const char *key)
{
    return del(m, hash_str(key), 0, key);
}

int hmap_iter(const hmap *m, size_t *pos, uint64_t *id_key, const char **str_key, void **value)
{
    for (size_t i = *pos; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        if (id_key)
            *id_key = m->slots[i].id;
        if (str_key)
            *str_key = m->slots[i].str;
        if (value)
            *value = m->slots[i].value;
        *pos = i + 1;
        return 1;
    }
    return 0;
}

size_t hmap_sweep(hmap *m,
                  int (*drop)(uint64_t id_key, const char *str_key, void *value, void *arg),
                  void *arg)
{
    if (!m->count)
        return 0;
    /* Walk once around from an empty slot: no probe run crosses it, and a
     * deletion only shifts later members of the run back, to the slot just
     * freed or beyond it, so re-reading that slot visits every entry once. */
    size_t mask = m->cap - 1, start = 0, removed = 0;
    while (m->slots[start].hash)
        start++;
    for (size_t k = 1; k < m->cap; k++) {
        size_t i = (start + k) & mask;
        while (m->slots[i].hash) {
            struct slot *s = &m->slots[i];
            if (!drop(s->id, s->str, s->value, arg))
                break;
            del(m, s->hash, s->id, s->str);
            removed++;
        }
    }
    return removed;
}
