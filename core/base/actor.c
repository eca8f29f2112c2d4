#include "actor.h"

static int64_t current;

int64_t actor_user(void)
{
    return current;
}

int64_t actor_set(int64_t user_id)
{
    int64_t before = current;
    current = user_id;
    return before;
}
