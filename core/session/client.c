#include "client.h"

#include "conn.h"
#include "ws.h"

struct client *client_find(uint64_t conn_id)
{
    struct conn *c = conn_find(conn_id);
    return c ? ws_user(c) : NULL;
}
