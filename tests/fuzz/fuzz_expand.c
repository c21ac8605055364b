/* Fuzz target for cachekey/expand: any byte string must expand or fail
 * cleanly (no crash, no leak, no sanitizer report), in both escape modes
 * and in both word and words mode. The first byte picks the escape
 * character; the rest, up to the first NUL, is the word. */
#include "cachekey/expand.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *fuzz_lookup(void *ctx, const char *name, size_t len)
{
    static const struct {
        const char *name;
        const char *value;
    } env[] = {
        {"A", "a"}, {"B", "b c  d"}, {"E", ""}, {"P", "/usr/lib/x.so"},
        {"S", "*?\\}"}, {"1", "one"}, {"U", "\xc3\xa9\n\xe2\x82\xac"},
    };
    (void)ctx;
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (strlen(env[i].name) == len && memcmp(env[i].name, name, len) == 0)
            return env[i].value;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    char escape = (data[0] & 1) ? '`' : '\\';
    char *word = malloc(size);
    if (word == NULL)
        return 0;
    memcpy(word, data + 1, size - 1);
    word[size - 1] = '\0';

    struct cairn_err err;
    char *out = NULL;
    if (ck_expand_word(word, escape, fuzz_lookup, NULL, &out, &err) == 0)
        free(out);
    char **words = NULL;
    size_t n = 0;
    if (ck_expand_words(word, escape, fuzz_lookup, NULL, &words, &n, &err) == 0)
        ck_expand_words_free(words, n);
    free(word);
    return 0;
}
