#include "key_order.h"

/* Insertion sort of v[from..to) by key: stable, in place, no allocation (a
 * writer thread sorts every batch; a batch is a few hundred jobs at most). */
static void sort_run(struct key_item *v, size_t from, size_t to)
{
    for (size_t i = from + 1; i < to; i++) {
        struct key_item x = v[i];
        size_t k = i;
        for (; k > from && v[k - 1].key > x.key; k--)
            v[k] = v[k - 1];
        v[k] = x;
    }
}

void key_order(struct key_item *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && (v[end].key || v[end].free))
            end++;
        sort_run(v, i, end);
        i = end + 1; /* past the keyless item that ended the run */
    }
}
