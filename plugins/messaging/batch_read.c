/* READ_ACK for the consecutive read acks of a write batch at once
 * (host->job_batch): what mstore_read_ack does, in three statements for up
 * to ROWS_MAX of them where it takes two each. */
#include <stdlib.h>

#include "messaging.h"
#include "rows.h"

/* Each ack in the batch's order, as mstore_read_ack answers it. */
static void assign(struct sqlctx *x, struct mjob **jobs, int *status, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct mjob *j = jobs[i];
        const struct mchan *c = batch_chan(x, j->channel_id);
        struct mpair *p = batch_pair(x, j->channel_id, j->me);
        j->changed = 0;
        status[i] = !c->found ? CHATD_ENOTFOUND : !p->member ? CHATD_EFORBIDDEN : 0;
        if (status[i])
            continue;
        j->seq = j->seq < c->last_seq ? j->seq : c->last_seq; /* never past the last */
        j->head_count = c->head_count;
        if (j->seq > p->marker) {
            p->marker = j->seq;
            j->changed = 1;
        }
    }
}

int mstore_read_ack_batch(chatd_db *db, void *const *args, int *status, size_t n)
{
    struct mjob **jobs = (struct mjob **)args;
    struct sqlctx x = {.h = jobs[0]->mp->host, .db = db};
    size_t *items = calloc(n, sizeof *items);
    int rc = items ? batch_collect(&x, jobs, n) : CHATD_ENOMEM;
    /* the markers' rows locked, as mstore_read_ack's UPDATE locks them; the
     * channels' not, as there */
    if (rc == 0)
        rc = batch_load(&x, items, 0);
    if (rc == 0) {
        assign(&x, jobs, status, n);
        rc = batch_store(&x, items);
    }
    free(items);
    batch_free(&x);
    return rc;
}
