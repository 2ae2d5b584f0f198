/* Several threads on one store handle at once, mixing every kind of call.
 *
 * Failures this targets: lost updates under version-checked writes (a counter incremented with
 * get + set_if_version must end at exactly the number of successful increments), sessions
 * bleeding between threads (each thread's values carry its own tag and its last write must be
 * what it reads), owner-index drift (each thread's owner must list exactly its live sessions),
 * size accounting drift (len must equal the sessions the threads believe are live), and data
 * races or leaks in the library (valgrind). `make test-c` runs it under a timeout, so a deadlock
 * fails the test. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"

#define THREADS 4
#define SESSIONS_PER_THREAD 16
#define ROUNDS 20000

static coatcheck_store *store;
static pthread_barrier_t start; /* all threads begin together, for contention */
static const char counter_id[] = "shared-counter";

struct worker {
    int index;
    char owner[16];
    char ids[SESSIONS_PER_THREAD][COATCHECK_GENERATED_ID_LEN + 1];
    unsigned long last_write[SESSIONS_PER_THREAD];
    bool live[SESSIONS_PER_THREAD];
    unsigned long increments;
    unsigned long conflicts;
    int failures;
};

#define WCHECK(w, cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "thread %d, %s:%d: %s\n", (w)->index, __FILE__, __LINE__, #cond); \
            (w)->failures++;                                                              \
        }                                                                                 \
    } while (0)

static unsigned next_random(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

static void write_value(struct worker *w, int slot, unsigned long n) {
    char value[64];
    int len = sprintf(value, "thread=%d slot=%d n=%lu", w->index, slot, n);
    const char *id = w->ids[slot];
    WCHECK(w, coatcheck_store_set(store, id, strlen(id), (const uint8_t *)value, (size_t)len, 0, NULL) ==
                  COATCHECK_STATUS_OK);
    w->last_write[slot] = n;
}

static void new_session(struct worker *w, int slot) {
    size_t len = 0;
    WCHECK(w, coatcheck_store_create(store, (const uint8_t *)"fresh", 5, 0, w->ids[slot], COATCHECK_GENERATED_ID_LEN,
                                     &len) == COATCHECK_STATUS_OK);
    w->ids[slot][len] = '\0';
    WCHECK(w, coatcheck_store_set_owner(store, w->ids[slot], len, w->owner, strlen(w->owner)) == COATCHECK_STATUS_OK);
    w->live[slot] = true;
    write_value(w, slot, 0);
}

static void increment_counter(struct worker *w) {
    for (;;) {
        char value[32];
        size_t len = 0;
        uint64_t version = 0;
        unsigned long n;
        coatcheck_status status =
            coatcheck_store_get(store, counter_id, strlen(counter_id), (uint8_t *)value, sizeof value - 1, &len, &version);
        WCHECK(w, status == COATCHECK_STATUS_OK);
        if (status != COATCHECK_STATUS_OK) {
            return;
        }
        value[len] = '\0';
        n = strtoul(value, NULL, 10);
        len = (size_t)sprintf(value, "%lu", n + 1);
        status = coatcheck_store_set_if_version(store, counter_id, strlen(counter_id), (const uint8_t *)value, len,
                                                version, 0, NULL);
        if (status == COATCHECK_STATUS_OK) {
            w->increments++;
            return;
        }
        WCHECK(w, status == COATCHECK_STATUS_CONFLICT);
        if (status != COATCHECK_STATUS_CONFLICT) {
            return;
        }
        w->conflicts++;
    }
}

static void *run(void *arg) {
    struct worker *w = (struct worker *)arg;
    unsigned seed = 7919u * (unsigned)(w->index + 1);
    int slot, round;
    sprintf(w->owner, "user-%d", w->index);
    for (slot = 0; slot < SESSIONS_PER_THREAD; slot++) {
        new_session(w, slot);
    }
    pthread_barrier_wait(&start);
    for (round = 0; round < ROUNDS; round++) {
        unsigned op = next_random(&seed) % 100;
        const char *id;
        slot = (int)(next_random(&seed) % SESSIONS_PER_THREAD);
        id = w->ids[slot];
        if (!w->live[slot]) {
            new_session(w, slot);
        } else if (op < 40) {
            /* get: the thread's own last write, never another thread's. */
            char value[64], expect[64];
            size_t len = 0;
            WCHECK(w, coatcheck_store_get(store, id, strlen(id), (uint8_t *)value, sizeof value - 1, &len, NULL) ==
                          COATCHECK_STATUS_OK);
            value[len < sizeof value ? len : 0] = '\0';
            sprintf(expect, "thread=%d slot=%d n=%lu", w->index, slot, w->last_write[slot]);
            WCHECK(w, strcmp(value, expect) == 0);
        } else if (op < 60) {
            write_value(w, slot, w->last_write[slot] + 1);
        } else if (op < 70) {
            WCHECK(w, coatcheck_store_touch(store, id, strlen(id), 0) == COATCHECK_STATUS_OK);
        } else if (op < 80) {
            increment_counter(w);
        } else if (op < 85) {
            WCHECK(w, coatcheck_store_destroy(store, id, strlen(id)) == COATCHECK_STATUS_OK);
            WCHECK(w, coatcheck_store_destroy(store, id, strlen(id)) == COATCHECK_STATUS_NOT_FOUND);
            w->live[slot] = false;
        } else if (op < 90) {
            char fresh[COATCHECK_GENERATED_ID_LEN + 1];
            size_t len = 0;
            WCHECK(w, coatcheck_store_regenerate(store, id, strlen(id), fresh, COATCHECK_GENERATED_ID_LEN, &len) ==
                          COATCHECK_STATUS_OK);
            fresh[len] = '\0';
            memcpy(w->ids[slot], fresh, len + 1);
        } else if (op < 95) {
            char token[COATCHECK_GENERATED_TOKEN_LEN];
            size_t token_len = 0, id_len = 0;
            WCHECK(w, coatcheck_store_sign(store, id, strlen(id), token, sizeof token, &token_len) == COATCHECK_STATUS_OK);
            WCHECK(w, coatcheck_store_unsign(store, token, token_len, &id_len) == COATCHECK_STATUS_OK);
            WCHECK(w, id_len == strlen(id) && memcmp(token, id, id_len) == 0);
            token[token_len - 1] ^= 1;
            WCHECK(w, coatcheck_store_unsign(store, token, token_len, &id_len) == COATCHECK_STATUS_BAD_SIGNATURE);
        } else {
            size_t n = 0;
            coatcheck_stats stats;
            WCHECK(w, coatcheck_store_len(store, &n) == COATCHECK_STATUS_OK);
            WCHECK(w, coatcheck_store_stats(store, &stats) == COATCHECK_STATUS_OK);
            WCHECK(w, coatcheck_store_count_of(store, w->owner, strlen(w->owner), &n) == COATCHECK_STATUS_OK);
        }
    }
    return NULL;
}

int main(void) {
    static const char secret[] = "thread test secret";
    static struct worker workers[THREADS];
    pthread_t threads[THREADS];
    coatcheck_bytes secrets[1];
    coatcheck_config config;
    coatcheck_stats stats;
    unsigned long increments = 0, conflicts = 0, live_total = 0;
    size_t n = 0;
    char value[32];
    int t, slot;

    CHECK_OK(coatcheck_config_default(&config));
    secrets[0].data = (const uint8_t *)secret;
    secrets[0].len = strlen(secret);
    config.secrets = secrets;
    config.secrets_len = 1;
    config.shards = 4; /* few stripes: more contention */
    CHECK_OK(coatcheck_store_new(&config, &store));
    CHECK_OK(coatcheck_store_set(store, counter_id, strlen(counter_id), (const uint8_t *)"0", 1, 0, NULL));

    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (t = 0; t < THREADS; t++) {
        workers[t].index = t;
        CHECK(pthread_create(&threads[t], NULL, run, &workers[t]) == 0);
    }
    for (t = 0; t < THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
    }
    pthread_barrier_destroy(&start);

    for (t = 0; t < THREADS; t++) {
        struct worker *w = &workers[t];
        unsigned long live = 0;
        char list[SESSIONS_PER_THREAD * (COATCHECK_GENERATED_ID_LEN + 1)];
        size_t list_len = 0, count = 0;
        check_failures += w->failures;
        increments += w->increments;
        conflicts += w->conflicts;
        for (slot = 0; slot < SESSIONS_PER_THREAD; slot++) {
            if (w->live[slot]) {
                live++;
            }
        }
        CHECK_OK(coatcheck_store_sessions_of(store, w->owner, strlen(w->owner), list, sizeof list, &list_len, &count));
        CHECK(count == live);
        for (slot = 0; slot < SESSIONS_PER_THREAD; slot++) {
            const char *p;
            bool listed = false;
            for (p = list; p < list + list_len; p += strlen(p) + 1) {
                listed = listed || strcmp(p, w->ids[slot]) == 0;
            }
            CHECK(listed == w->live[slot]);
        }
        live_total += live;
    }

    /* No lost update: the counter is exactly the number of successful increments. */
    CHECK_OK(coatcheck_store_get(store, counter_id, strlen(counter_id), (uint8_t *)value, sizeof value - 1, &n, NULL));
    value[n] = '\0';
    CHECK(strtoul(value, NULL, 10) == increments);
    CHECK(increments > 0);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.conflicts == conflicts);
    CHECK(stats.signature_failures > 0);
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == live_total + 1);
    CHECK(stats.sessions == live_total + 1);
    printf("test_threads: %d threads, %lu increments, %lu conflicts, %lu live sessions\n", THREADS, increments,
           conflicts, live_total);
    coatcheck_store_free(store);
    return check_report("test_threads");
}
