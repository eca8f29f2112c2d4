/*
 * fuzz_json: a WebSocket opened with a valid handshake and session, then the
 * input as the payload of one well-formed, masked text frame. It reaches the
 * JSON parsing, the dispatch by "type" and the plugins' handlers, whose
 * storage jobs run on the worker threads before the input is over.
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
    static const unsigned char mask[4] = {0x3c, 0xa5, 0x0f, 0x96};
    unsigned char *frame = malloc(size + 14);
    if (!frame)
        return 0;
    size_t n = world_ws_frame(frame, 1, 1, data, size, mask);
    struct world_client c;
    if (world_ws_open(&c, 0) < 0) {
        fprintf(stderr, "fuzz_json: the WebSocket handshake was refused\n");
        abort();
    }
    world_client_send(&c, frame, n);
    world_settle(&c);
    world_client_close(&c);
    free(frame);
    return 0;
}
