/* fuzz_ftconfig.c: libFuzzer target of trainer/ftconfig.c, the fine-tuning config
 * reader (kft_config_parse: kiln finetune --config FILE --set K=V).
 *
 * Input: the JSON text, then optionally NUL-separated --set overrides
 * ("section.key=value", at most 4). The JSON is handed over in a buffer of
 * exactly its size. A config that parses is written back
 * (kft_config_to_json) and must read back, with no overrides, to the same
 * canonical text. */
#include "tests/fuzz/fuzz_common.h"

#include <sysexits.h>

#include "trainer/ftconfig.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *parts[5];
    size_t lens[5];
    int np = fuzz_split_nul(data, size, parts, lens, 5);
    char *json = fuzz_dup((const uint8_t *)parts[0], lens[0]);
    kft_config c;
    char err[1024];
    err[0] = '\0';
    int rc = kft_config_parse(&c, json, lens[0], (const char *const *)parts + 1, np - 1, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc == EX_CONFIG || rc == EX_DATAERR);
        FUZZ_CHECK(err[0] != '\0');
    } else {
        char *canon = kft_config_to_json(&c);
        kft_config c2;
        int rc2 = kft_config_parse(&c2, canon, strlen(canon), NULL, 0, err, sizeof err);
        if (rc2) dprintf(2, "canonical config does not read back: %s\n%s\n", err, canon);
        FUZZ_CHECK(rc2 == 0);
        char *canon2 = kft_config_to_json(&c2);
        FUZZ_CHECK(strcmp(canon, canon2) == 0);
        free(canon);
        free(canon2);
    }
    free(json);
    fuzz_parts_free(parts, np);
    return 0;
}
