/* Minimal test harness shared by the C tests; compiles as C99 and as C++17. */
#ifndef COATCHECK_TEST_CHECK_H
#define COATCHECK_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coatcheck.h"

static int check_failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,     \
                    #cond);                                                      \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* Asserts the exact status code, printing both names on a mismatch. */
#define CHECK_STATUS(expr, want)                                                 \
    do {                                                                         \
        uint32_t got_ = (uint32_t)(expr);                                        \
        uint32_t want_ = (uint32_t)(want);                                       \
        if (got_ != want_) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %u (%s)\n",    \
                    __FILE__, __LINE__, #expr, (unsigned)got_,                   \
                    coatcheck_status_name(got_), (unsigned)want_,                \
                    coatcheck_status_name(want_));                               \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, COATCHECK_STATUS_OK)

/* Bytes of a string literal or char array, for `const uint8_t *` value arguments. */
#define BYTES(s) ((const uint8_t *)(s))

static inline void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}


static int check_report(const char *name) {
    if (check_failures != 0) {
        fprintf(stderr, "%s: %d check(s) FAILED\n", name, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif
