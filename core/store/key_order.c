#include "key_order.h"

#include <stdlib.h>

#include "chatd/plugin.h"

struct ranked {
    uint64_t key;
    size_t at; /* the place it came in: ties keep their order */
    void *item;
};

static int ranked_cmp(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

int key_order(struct key_item *v, size_t n)
{
    if (n < 2)
        return 0;
    struct ranked *r = malloc(n * sizeof *r);
    if (!r)
        return CHATD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        r[i] = (struct ranked){v[i].key, i, v[i].item};
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && r[end].key)
            end++;
        if (end - i > 1)
            qsort(r + i, end - i, sizeof *r, ranked_cmp);
        i = end + 1; /* past the keyless item that ended the run */
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (struct key_item){r[i].key, r[i].item};
    free(r);
    return 0;
}
