/* The nodes' own figures (host->node_stats). Loop thread. */
#ifndef CHATD_NODES_H
#define CHATD_NODES_H

#include <event2/event.h>
#include <jansson.h>

struct settings;

/* With Redis, write this node's figures every presence_ttl / 3. 0 or
 * CHATD_ENOMEM. */
int nodes_init(struct event_base *base, const struct settings *s);
void nodes_free(void);
/* done(arg, nodes) with every live node's {"node","connections","users","at"}
 * (this node's alone without Redis; NULL when Redis could not be asked), on
 * the loop, maybe at once. 0 or CHATD_ENOMEM (done not called). */
int nodes_query(void (*done)(void *arg, const json_t *nodes), void *arg);

#endif
