#include "userpres.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "chatd/plugin.h"

/* KEYS: the user's hash of nodes, the user's state, the index of users with
 * entries (and the index of graces, unused). ARGV: node, expiry, (unused),
 * user id. 1 when "online" is to be told. */
static const char online_lua[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('SADD', KEYS[3], ARGV[4]) "
    "local st = redis.call('GET', KEYS[2]) "
    "redis.call('SET', KEYS[2], 'on') "
    "if st == 'on' or (st and string.sub(st, 1, 8) == 'leaving:') then return 0 end "
    "return 1";

/* The same, never telling: the heartbeat (also after Redis lost its data). */
static const char refresh_lua[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('SADD', KEYS[3], ARGV[4]) "
    "if not redis.call('GET', KEYS[2]) then redis.call('SET', KEYS[2], 'on') end "
    "return 0";

/* KEYS: hash, state, index, index of graces. ARGV: node, now, grace, user.
 * 1 when no live entry is left and a grace began. */
static const char leave_lua[] =
    "if ARGV[1] ~= '' then redis.call('HDEL', KEYS[1], ARGV[1]) end "
    "local now = tonumber(ARGV[2]) "
    "local f = redis.call('HGETALL', KEYS[1]) "
    "for i = 1, #f, 2 do "
    "  if tonumber(f[i + 1]) > now then return 0 end "
    "end "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('SREM', KEYS[3], ARGV[4]) "
    "if redis.call('GET', KEYS[2]) ~= 'on' then return 0 end "
    "redis.call('SET', KEYS[2], 'leaving:' .. (now + tonumber(ARGV[3])) .. ':' .. now) "
    "redis.call('SADD', KEYS[4], ARGV[4]) "
    "return 1";

/* KEYS: hash, state, index of graces. ARGV: now, user. The closing time when
 * told offline now; 0 back online or settled; -1 not yet. */
static const char settle_lua[] =
    "local st = redis.call('GET', KEYS[2]) "
    "if not st or string.sub(st, 1, 8) ~= 'leaving:' then "
    "  redis.call('SREM', KEYS[3], ARGV[2]) return 0 "
    "end "
    "local deadline, closed = string.match(st, 'leaving:(%d+):(%d+)') "
    "local now = tonumber(ARGV[1]) "
    "if tonumber(deadline) > now then return -1 end "
    "redis.call('SREM', KEYS[3], ARGV[2]) "
    "local f = redis.call('HGETALL', KEYS[1]) "
    "for i = 1, #f, 2 do "
    "  if tonumber(f[i + 1]) > now then redis.call('SET', KEYS[2], 'on') return 0 end "
    "end "
    "redis.call('SET', KEYS[2], 'off:' .. closed) "
    "return tonumber(closed)";

/* KEYS: index, index of graces, the sweep's guard. ARGV: now, grace, node,
 * period, prefix. {user, closed, user, closed, ...} told offline here. Keys
 * of users are built here: one Redis (or a primary with replicas), not a
 * Redis Cluster. */
static const char sweep_lua[] =
    "if not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then return {} end "
    "local now, grace, p = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[5] "
    "for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "  local h, live = p .. 'ol:' .. u, 0 "
    "  local f = redis.call('HGETALL', h) "
    "  for i = 1, #f, 2 do "
    "    if tonumber(f[i + 1]) > now then live = 1 else redis.call('HDEL', h, f[i]) end "
    "  end "
    "  if live == 0 then "
    "    redis.call('SREM', KEYS[1], u) "
    "    if redis.call('GET', p .. 'pres:' .. u) == 'on' then "
    "      redis.call('SET', p .. 'pres:' .. u, 'leaving:' .. (now + grace) .. ':' .. now) "
    "      redis.call('SADD', KEYS[2], u) "
    "    end "
    "  end "
    "end "
    "local out = {} "
    "for _, u in ipairs(redis.call('SMEMBERS', KEYS[2])) do "
    "  local st = redis.call('GET', p .. 'pres:' .. u) "
    "  if not st or string.sub(st, 1, 8) ~= 'leaving:' then redis.call('SREM', KEYS[2], u) "
    "  else "
    "    local deadline, closed = string.match(st, 'leaving:(%d+):(%d+)') "
    "    if tonumber(deadline) <= now then "
    "      redis.call('SREM', KEYS[2], u) "
    "      if #redis.call('HKEYS', p .. 'ol:' .. u) == 0 then "
    "        redis.call('SET', p .. 'pres:' .. u, 'off:' .. closed) "
    "        table.insert(out, tonumber(u)) table.insert(out, tonumber(closed)) "
    "      else redis.call('SET', p .. 'pres:' .. u, 'on') end "
    "    end "
    "  end "
    "end "
    "return out";

static void answered(struct redisReply *r, struct redis_call *call)
{
    struct userpres_call *c = (struct userpres_call *)call;
    c->done(c, r && r->type == REDIS_REPLY_INTEGER ? r->integer : -2);
}

/* Run a script over the user's keys (hash, state, index, graces). */
static int run(const char *script, int64_t user_id, const char *a1, long long a2, long long a3,
               struct userpres_call *c)
{
    const char *p = redis_prefix();
    char hash[96], state[96], index[96], graces[96], uid[24];
    snprintf(hash, sizeof hash, "%sol:%lld", p, (long long)user_id);
    snprintf(state, sizeof state, "%spres:%lld", p, (long long)user_id);
    snprintf(index, sizeof index, "%solidx", p);
    snprintf(graces, sizeof graces, "%solgrace", p);
    snprintf(uid, sizeof uid, "%lld", (long long)user_id);
    if (c)
        c->call.fn = answered;
    if (script == settle_lua)
        return redis_cmd(c ? &c->call : NULL, "EVAL %s 3 %s %s %s %lld %s", script, hash, state,
                         graces, a2, uid);
    return redis_cmd(c ? &c->call : NULL, "EVAL %s 4 %s %s %s %s %s %lld %lld %s", script, hash,
                     state, index, graces, a1, a2, a3, uid);
}

int userpres_online(int64_t user_id, int64_t expiry_ms, struct userpres_call *c)
{
    return run(online_lua, user_id, bus_node(), expiry_ms, 0, c);
}

int userpres_refresh(int64_t user_id, int64_t expiry_ms)
{
    return run(refresh_lua, user_id, bus_node(), expiry_ms, 0, NULL);
}

int userpres_leave(int64_t user_id, int64_t now_ms, int64_t grace_ms, struct userpres_call *c)
{
    return run(leave_lua, user_id, bus_node(), now_ms, grace_ms, c);
}

int userpres_settle(int64_t user_id, int64_t now_ms, struct userpres_call *c)
{
    return run(settle_lua, user_id, "", now_ms, 0, c);
}

static void swept(struct redisReply *r, struct redis_call *call)
{
    struct userpres_sweep *s = (struct userpres_sweep *)call;
    size_t n = r && r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    int64_t *users = malloc((n + 1) * sizeof *users), *closed = malloc((n + 1) * sizeof *closed);
    size_t k = 0;
    for (size_t i = 0; users && closed && i < n; i++)
        if (r->element[2 * i]->type == REDIS_REPLY_INTEGER) {
            users[k] = r->element[2 * i]->integer;
            closed[k++] = r->element[2 * i + 1]->integer;
        }
    s->done(s, users, closed, k);
    free(users);
    free(closed);
}

int userpres_sweep(int64_t now_ms, int64_t grace_ms, int64_t period_ms, struct userpres_sweep *s)
{
    const char *p = redis_prefix();
    char index[96], graces[96], guard[96];
    snprintf(index, sizeof index, "%solidx", p);
    snprintf(graces, sizeof graces, "%solgrace", p);
    snprintf(guard, sizeof guard, "%solsweep", p);
    s->call.fn = swept;
    return redis_cmd(&s->call, "EVAL %s 3 %s %s %s %lld %lld %s %lld %s", sweep_lua, index, graces,
                     guard, (long long)now_ms, (long long)grace_ms, bus_node(),
                     (long long)period_ms, p);
}

static void queried(struct redisReply *r, struct redis_call *call)
{
    struct userpres_query *q = (struct userpres_query *)call;
    unsigned char *online = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == q->n && (online = calloc(q->n + 1, 1)))
        for (size_t i = 0; i < q->n; i++)
            online[i] = r->element[i]->type == REDIS_REPLY_STRING &&
                        (strcmp(r->element[i]->str, "on") == 0 ||
                         strncmp(r->element[i]->str, "leaving:", 8) == 0);
    q->done(q, online);
    free(online);
}

int userpres_query(struct userpres_query *q)
{
    const char *p = redis_prefix();
    size_t n = q->n;
    const char **argv = malloc((n + 1) * sizeof *argv);
    size_t *lens = malloc((n + 1) * sizeof *lens);
    char *keys = malloc((n + 1) * 96);
    int rc = CHATD_ENOMEM;
    if (argv && lens && keys) {
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < n; i++) {
            char *k = keys + i * 96;
            lens[i + 1] = (size_t)snprintf(k, 96, "%spres:%lld", p, (long long)q->ids[i]);
            argv[i + 1] = k;
        }
        q->call.fn = queried;
        rc = redis_cmdv(&q->call, (int)n + 1, argv, lens);
    }
    free(argv);
    free(lens);
    free(keys);
    return rc;
}
