/* Reading libconfig text for the configuration: integers kept 64 bits, and
 * --set overrides applied. */
#include "config_text.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatd/plugin.h"

/*
 * libconfig 1.5 reads an integer literal as 32 bits and silently wraps a
 * larger one (4294967297 becomes 1); with an L suffix it reads 64 bits. So
 * before libconfig sees a text, every integer literal outside the 32-bit
 * range gets that suffix, and one outside the 64-bit range becomes a string
 * that read_value() refuses by name. Strings and comments are left alone.
 * Returns a new text (the caller frees it) or NULL when out of memory.
 */
#define INT_OVERFLOW_MARK "\x01integer out of range: "

static int ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '*' || ch == '-';
}

struct buf {
    char *p;
    size_t n, cap;
    int failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* The integer literal at text[i] (decimal or hex, maybe signed): copied with
 * an L when it needs 64 bits, as a marked string beyond them, or as it is
 * when it is a float or part of a name. Returns the index after it. */
static size_t widen_number(const char *text, size_t len, size_t i, struct buf *out)
{
    size_t start = i, j = i + (text[i] == '-' || text[i] == '+');
    int hex = text[j] == '0' && (text[j + 1] == 'x' || text[j + 1] == 'X');
    j += hex ? 2 : 0;
    while (j < len && (hex ? isxdigit((unsigned char)text[j]) : isdigit((unsigned char)text[j])))
        j++;
    if (j < len && (text[j] == '.' || text[j] == 'e' || text[j] == 'E' || text[j] == 'L' ||
                    ident_char(text[j]))) {
        buf_add(out, text + start, j - start); /* a float, 64 bits already, or a name */
        return j;
    }
    char num[64];
    size_t n = j - start < sizeof num ? j - start : sizeof num - 1;
    memcpy(num, text + start, n);
    num[n] = '\0';
    errno = 0;
    long long v = strtoll(num, NULL, hex ? 16 : 10);
    if (errno == ERANGE) {
        buf_add(out, "\"" INT_OVERFLOW_MARK, strlen(INT_OVERFLOW_MARK) + 1);
        buf_add(out, num, n);
        buf_add(out, "\"", 1);
    } else {
        buf_add(out, num, n);
        if (v > INT32_MAX || v < INT32_MIN)
            buf_add(out, "L", 1);
    }
    return j;
}

/* The end of the string, comment or other token at text[i]. */
static size_t skip_token(const char *text, size_t len, size_t i)
{
    if (text[i] == '"') { /* a string, escapes included */
        for (i++; i < len && text[i] != '"'; i++)
            if (text[i] == '\\' && i + 1 < len)
                i++;
        return i + (i < len);
    }
    if (text[i] == '#' || (text[i] == '/' && i + 1 < len && text[i + 1] == '/')) {
        while (i < len && text[i] != '\n')
            i++;
        return i;
    }
    if (text[i] == '/' && i + 1 < len && text[i + 1] == '*') {
        const char *end = strstr(text + i + 2, "*/");
        return end ? (size_t)(end - text) + 2 : len;
    }
    return i + 1;
}

static char *widen_integers(const char *text)
{
    size_t len = strlen(text);
    struct buf out = {0};
    buf_add(&out, "", 0);
    for (size_t i = 0; i < len;) {
        char ch = text[i];
        int digit = ch >= '0' && ch <= '9';
        int sign =
            (ch == '-' || ch == '+') && i + 1 < len && text[i + 1] >= '0' && text[i + 1] <= '9';
        if ((digit || sign) && !(i > 0 && ident_char(text[i - 1]))) {
            i = widen_number(text, len, i, &out);
        } else {
            size_t next = skip_token(text, len, i);
            buf_add(&out, text + i, next - i);
            i = next;
        }
    }
    if (out.failed) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

/* The integer literal a widened text could not hold, or NULL. */
const char *config_int_overflow(const config_setting_t *s)
{
    const char *v =
        config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    size_t n = strlen(INT_OVERFLOW_MARK);
    return v && strncmp(v, INT_OVERFLOW_MARK, n) == 0 ? v + n : NULL;
}

/* Read a libconfig text (file contents or one override) with integers widened. */
int config_read_text(config_t *cfg, const char *text)
{
    char *wide = widen_integers(text);
    if (!wide)
        return 0;
    int ok = config_read_string(cfg, wide);
    free(wide);
    return ok;
}

char *config_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            char *b = realloc(buf, cap = (len + n + 1) * 2);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    int bad = ferror(f) || memchr(buf ? buf : "", '\0', len) != NULL;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    if (!buf && !(buf = calloc(1, 1)))
        return NULL;
    buf[len] = '\0';
    return buf;
}

static int copy_setting(config_setting_t *parent, const char *name, const config_setting_t *src)
{
    int type = config_setting_type(src);
    config_setting_t *dst = config_setting_add(parent, name, type);
    if (!dst)
        return CHATD_EINVAL;
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        config_setting_set_int64(dst, config_setting_get_int64(src));
        break;
    case CONFIG_TYPE_FLOAT:
        config_setting_set_float(dst, config_setting_get_float(src));
        break;
    case CONFIG_TYPE_BOOL:
        config_setting_set_bool(dst, config_setting_get_bool(src));
        break;
    case CONFIG_TYPE_STRING:
        config_setting_set_string(dst, config_setting_get_string(src));
        break;
    default:
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            if (copy_setting(dst, config_setting_is_group(dst) ? config_setting_name(e) : NULL, e) <
                0)
                return CHATD_EINVAL;
        }
    }
    return 0;
}

/* Find or create the parent group of the last path segment. Segments are
 * member names, "[N]" list indexes, or the name of a plugin in a list. */
static config_setting_t *walk_to_parent(config_t *cfg, char *path, char **last)
{
    config_setting_t *cur = config_root_setting(cfg);
    char *save = NULL;
    char *seg = strtok_r(path, ".", &save);
    while (seg) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            *last = seg;
            return cur;
        }
        config_setting_t *child = NULL;
        if (config_setting_is_list(cur) || config_setting_is_array(cur)) {
            if (seg[0] == '[') {
                child = config_setting_get_elem(cur, (unsigned)atoi(seg + 1));
            } else {
                for (int i = 0; i < config_setting_length(cur) && !child; i++) {
                    config_setting_t *e = config_setting_get_elem(cur, (unsigned)i);
                    const char *n = NULL;
                    if (config_setting_lookup_string(e, "name", &n) && strcmp(n, seg) == 0)
                        child = e;
                }
            }
        } else if (config_setting_is_group(cur)) {
            child = config_setting_get_member(cur, seg);
            if (!child)
                child = config_setting_add(cur, seg, CONFIG_TYPE_GROUP);
        }
        if (!child)
            return NULL;
        cur = child;
        seg = next;
    }
    return NULL;
}

int config_apply_override(config_t *cfg, const char *ov, char *err, size_t errlen)
{
    const char *eq = strchr(ov, '=');
    if (!eq || eq == ov) {
        snprintf(err, errlen, "--set %s: expected PATH=VALUE", ov);
        return CHATD_EINVAL;
    }
    char *path = strndup(ov, (size_t)(eq - ov));
    const char *value = eq + 1;
    config_t tmp;
    config_init(&tmp);
    size_t n = strlen(value) + 16;
    char *doc = malloc(n);
    int rc = CHATD_EINVAL;
    if (!path || !doc)
        goto out;
    snprintf(doc, n, "v = %s;", value);
    /* A value libconfig can read (number, bool, "string", list) keeps its type;
     * anything else is taken as a plain string. */
    if (!config_read_text(&tmp, doc)) {
        config_destroy(&tmp);
        config_init(&tmp);
        config_setting_t *v =
            config_setting_add(config_root_setting(&tmp), "v", CONFIG_TYPE_STRING);
        config_setting_set_string(v, value);
    }
    char *last = NULL;
    config_setting_t *parent = walk_to_parent(cfg, path, &last);
    if (!parent || !config_setting_is_group(parent)) {
        snprintf(err, errlen, "--set %.*s: no such place in the configuration", (int)(eq - ov), ov);
        goto out;
    }
    if (config_setting_get_member(parent, last))
        config_setting_remove(parent, last);
    rc = copy_setting(parent, last, config_lookup(&tmp, "v"));
    if (rc < 0)
        snprintf(err, errlen, "--set %.*s: invalid setting name", (int)(eq - ov), ov);
out:
    config_destroy(&tmp);
    free(doc);
    free(path);
    return rc;
}
