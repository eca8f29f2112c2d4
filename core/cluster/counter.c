#include "counter.h"

#include <hiredis/hiredis.h>

#include "chatd/plugin.h"

/* One round trip: increment (setting the window at the first), read or delete. */
static const char script[] =
    "local a = tonumber(ARGV[1]) "
    "if a < 0 then redis.call('DEL', KEYS[1]) return 0 end "
    "if a == 0 then return tonumber(redis.call('GET', KEYS[1]) or '0') end "
    "local c = redis.call('INCRBY', KEYS[1], a) "
    "if c == a then redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
    "return c";

static void counted(struct redisReply *r, struct redis_call *call)
{
    struct redis_count *c = (struct redis_count *)call;
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    c->done(c, ok ? 0 : CHATD_EUNAVAIL, ok ? (int64_t)r->integer : 0);
}

int redis_shared_count(const char *key, int64_t add, int64_t window_s, struct redis_count *c)
{
    if (!redis_enabled() || !key)
        return CHATD_EUNAVAIL;
    c->call.fn = counted;
    return redis_cmd(&c->call, "EVAL %s 1 %scount:%s %lld %lld", script, redis_prefix(), key,
                     (long long)add, (long long)window_s);
}
