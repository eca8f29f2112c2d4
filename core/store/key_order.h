/*
 * The order a write batch runs in: its keyed jobs by key, so that every
 * batch takes its row locks (a message write locks its channel's row) in
 * the same order, and two batches, of two writers or two nodes, wait for
 * each other but never deadlock (which would cost both a rollback and, the
 * second time, a commit for each job).
 */
#ifndef CHATD_STORE_KEY_ORDER_H
#define CHATD_STORE_KEY_ORDER_H

#include <stddef.h>
#include <stdint.h>

struct key_item {
    uint64_t key; /* 0: none */
    void *item;
    int free; /* keyless and free of any order: sorts first, as key 0 */
};

/* Sort v[0..n) by key, keeping the order of items of one key, and leaving
 * every item without a key where it is (unless it is free): only the items
 * between two keyless ones are reordered. In place, without allocating. */
void key_order(struct key_item *v, size_t n);

#endif
