/*
 * The member lists of channels, kept between writes.
 *
 * Every write needs the channel's other members (push goes to those not
 * entered). Reading a 1,000-member list per message costs more than the write
 * itself, so lists are kept here, keyed by channel and checked against the
 * channel's member_version, which the write reads in its own transaction and
 * which every change of members sets to a new random value: a list whose
 * version matches is what the database would return.
 *
 * A direct-mapped table (channel id modulo the slot count) under one mutex:
 * the write workers look lists up and replace them, the loop drops its
 * references when a job ends. Lists are immutable once built. `held` counts
 * the members of the lists in the table, bounded by member_cache_members;
 * lists under member_cache_min_members are not kept.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "messaging.h"

struct members {
    int64_t channel_id, version;
    int refs; /* under the cache's lock */
    size_t n;
    int64_t *ids;
    const char **names; /* into text */
    char *text;
};

struct mcache {
    pthread_mutex_t lock;
    struct members **slots;
    size_t n_slots;
    size_t held, max_held, min_size;
};

static void members_free(struct members *m)
{
    if (!m)
        return;
    free(m->ids);
    free(m->names);
    free(m->text);
    free(m);
}

struct mcache *mcache_new(size_t slots, size_t max_members, size_t min_size)
{
    struct mcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (slots && !(c->slots = calloc(slots, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->n_slots = slots;
    c->max_held = max_members;
    c->min_size = min_size;
    return c;
}

static void unref_locked(struct members *m)
{
    if (m && --m->refs == 0)
        members_free(m);
}

void mcache_release(struct mcache *c, struct members *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&c->lock);
    unref_locked(m);
    pthread_mutex_unlock(&c->lock);
}

void mcache_free(struct mcache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_slots; i++)
        unref_locked(c->slots[i]);
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct members *lookup(struct mcache *c, int64_t channel_id, int64_t version)
{
    if (!c->n_slots)
        return NULL;
    pthread_mutex_lock(&c->lock);
    struct members *m = c->slots[(uint64_t)channel_id % c->n_slots];
    if (m && m->channel_id == channel_id && m->version == version)
        m->refs++;
    else
        m = NULL;
    pthread_mutex_unlock(&c->lock);
    return m;
}

/* Keep m (one reference of the caller's goes to the table) when it fits. */
static void keep(struct mcache *c, struct members *m)
{
    if (!c->n_slots || m->n < c->min_size)
        return;
    pthread_mutex_lock(&c->lock);
    struct members **slot = &c->slots[(uint64_t)m->channel_id % c->n_slots];
    size_t held = c->held - (*slot ? (*slot)->n : 0);
    if (held + m->n <= c->max_held) {
        c->held = held;
        unref_locked(*slot);
        *slot = m;
        m->refs++;
        c->held += m->n;
    }
    pthread_mutex_unlock(&c->lock);
}

/* Read every member of the channel (the worker's transaction). */
static int load(const chatd_host *h, chatd_db *db, int64_t channel_id, struct members *m)
{
    chatd_stmt *st = util_bind(h, db,
                               "SELECT cu.user_id, u.username FROM channel_user cu"
                               " JOIN message_user u ON u.id = cu.user_id"
                               " WHERE cu.channel_id = ?",
                               "i", channel_id);
    if (!st)
        return CHATD_EINTERNAL;
    size_t cap = 0, text_len = 0, text_cap = 0;
    size_t *offs = NULL;
    int rc;
    while ((rc = h->db_step(st)) == CHATD_ROW) {
        size_t len = 0;
        const char *name = h->db_column_text(st, 1, &len);
        if (!name)
            name = "", len = 0;
        if (m->n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            int64_t *ids = realloc(m->ids, ncap * sizeof *ids);
            if (ids)
                m->ids = ids;
            size_t *no = realloc(offs, ncap * sizeof *no);
            if (no)
                offs = no;
            if (!ids || !no) {
                rc = CHATD_ENOMEM;
                break;
            }
            cap = ncap;
        }
        if (text_len + len + 1 > text_cap) {
            size_t ncap = text_cap ? 2 * text_cap : 1024;
            while (ncap < text_len + len + 1)
                ncap *= 2;
            char *t = realloc(m->text, ncap);
            if (!t) {
                rc = CHATD_ENOMEM;
                break;
            }
            m->text = t;
            text_cap = ncap;
        }
        memcpy(m->text + text_len, name, len);
        m->text[text_len + len] = '\0';
        offs[m->n] = text_len;
        m->ids[m->n++] = h->db_column_int(st, 0);
        text_len += len + 1;
    }
    h->db_reset(st);
    if (rc == CHATD_DONE && !(m->names = malloc((m->n + 1) * sizeof *m->names)))
        rc = CHATD_ENOMEM;
    if (rc == CHATD_DONE)
        for (size_t i = 0; i < m->n; i++)
            m->names[i] = m->text + offs[i];
    free(offs);
    return rc == CHATD_DONE ? 0 : rc;
}

int mcache_get(struct mcache *c, const chatd_host *h, chatd_db *db, int64_t channel_id,
               int64_t version, struct members **out)
{
    struct members *m = lookup(c, channel_id, version);
    if (!m) {
        if (!(m = calloc(1, sizeof *m)))
            return CHATD_ENOMEM;
        m->channel_id = channel_id;
        m->version = version;
        m->refs = 1;
        int rc = load(h, db, channel_id, m);
        if (rc < 0) {
            members_free(m);
            return rc;
        }
        keep(c, m);
    }
    *out = m;
    return 0;
}

size_t members_others(const struct members *m, int64_t me, int64_t *ids, const char **names)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->ids[i] == me)
            continue;
        ids[k] = m->ids[i];
        names[k++] = m->names[i];
    }
    return k;
}

size_t members_count(const struct members *m)
{
    return m->n;
}

int64_t members_version(const struct members *m)
{
    return m ? m->version : 0;
}

int64_t mcache_all_entered(struct mcache *c, int64_t channel_id, int64_t me, size_t max,
                           int (*entered)(int64_t user_id, int64_t channel_id))
{
    if (!c->n_slots || !entered)
        return 0;
    pthread_mutex_lock(&c->lock);
    struct members *m = c->slots[(uint64_t)channel_id % c->n_slots];
    if (m && (m->channel_id != channel_id || m->n > max))
        m = NULL;
    if (m)
        m->refs++;
    pthread_mutex_unlock(&c->lock);
    if (!m)
        return 0;
    int64_t version = m->version; /* the list is immutable: read it unlocked */
    for (size_t i = 0; i < m->n && version; i++)
        if (m->ids[i] != me && !entered(m->ids[i], channel_id))
            version = 0;
    mcache_release(c, m);
    return version;
}
