/*
 * fuzz_http: the input is what a client sends on a fresh connection: request
 * lines, headers, bodies, pipelined requests, an upgrade and the frames after
 * it. Every occurrence of the marker $TOKEN is replaced by a live session
 * token of the world's user first, so authenticated routes (logout,
 * unregister, the WebSocket upgrade) are reachable too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

#define MARKER "$TOKEN"
#define MARKER_LEN (sizeof MARKER - 1)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    world_init(WORLD_USERS);
    return 0;
}

/* data with every marker replaced by token, in a new buffer of *out_len bytes. */
static unsigned char *substitute(const uint8_t *data, size_t size, const char *token,
                                 size_t *out_len)
{
    size_t tlen = strlen(token), n = 0;
    for (const uint8_t *p = data; (p = memmem(p, size - (size_t)(p - data), MARKER, MARKER_LEN));
         p += MARKER_LEN)
        n++;
    unsigned char *out = malloc(size + n * tlen + 1);
    if (!out)
        return NULL;
    size_t i = 0, o = 0;
    while (i < size) {
        if (size - i >= MARKER_LEN && memcmp(data + i, MARKER, MARKER_LEN) == 0) {
            memcpy(out + o, token, tlen);
            o += tlen;
            i += MARKER_LEN;
        } else {
            out[o++] = data[i++];
        }
    }
    *out_len = o;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    unsigned char *bytes = substitute(data, size, world_token(), &len);
    if (!bytes)
        return 0;
    struct world_client c;
    if (world_client_open(&c, 0) == 0) {
        world_client_send(&c, bytes, len);
        world_settle(&c);
    }
    world_client_close(&c);
    free(bytes);
    return 0;
}
