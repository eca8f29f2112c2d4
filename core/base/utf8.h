/* UTF-8 validation. Pure, any thread. */
#ifndef CHATD_UTF8_H
#define CHATD_UTF8_H

#include <stddef.h>

/* Whether s[0..len) is valid UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
int utf8_valid(const unsigned char *s, size_t len);
/* The length (1..4) of the valid UTF-8 sequence that starts s[0..len), len > 0;
 * 0 when s[0] starts none. */
size_t utf8_seq(const unsigned char *s, size_t len);

#endif
