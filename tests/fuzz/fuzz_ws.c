/*
 * fuzz_ws: a WebSocket opened with a valid handshake and session, then the
 * input as raw frame bytes from the client: any opcodes, masked or not,
 * fragmented, oversized, interleaved with control frames. They go through
 * wslay, the UTF-8 check and on to dispatch.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "world.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    world_init(WORLD_USERS);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct world_client c;
    if (world_ws_open(&c, 0) < 0) {
        fprintf(stderr, "fuzz_ws: the WebSocket handshake was refused\n");
        abort();
    }
    world_client_send(&c, data, size);
    world_settle(&c);
    world_client_close(&c);
    return 0;
}
