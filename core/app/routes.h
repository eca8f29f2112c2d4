/* The core's own HTTP routes: GET /healthz and GET /metrics. Loop thread. */
#ifndef CHATD_ROUTES_H
#define CHATD_ROUTES_H

/* Add them to the router. 0 or a negative code. */
int routes_init(void);

#endif
