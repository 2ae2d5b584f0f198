/* get / set / touch / create through the C API, with 200 B and 2 KB values, on 1 and 2 threads,
 * against a store prefilled with COATCHECK_BENCH_SESSIONS sessions (default 1M).
 *
 * benches/ffi_overhead.rs runs the same loops on the same store configuration from Rust, with
 * the same id-picking sequence and output format, so `make bench-c` can put the two side by
 * side (benches/c/compare.sh). Each figure is the best of COATCHECK_BENCH_REPEATS runs (default
 * 3) of COATCHECK_BENCH_OPS operations (default 2M), split across the threads.
 *
 * Output, one line per measurement:
 *   RESULT op=get size=200 threads=1 ns_per_op=123.4 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coatcheck.h"

#define ID_LEN COATCHECK_GENERATED_ID_LEN
#define MAX_THREADS 2

enum op { OP_GET, OP_SET, OP_TOUCH, OP_CREATE };
static const char *const op_names[] = {"get", "set", "touch", "create"};

static coatcheck_store *store;
static char (*ids)[ID_LEN];
static size_t n_ids;
static uint8_t *value;
static size_t value_len;

static void die(const char *what, coatcheck_status status) {
    fprintf(stderr, "%s: %s\n", what, coatcheck_status_message(status));
    exit(1);
}

static size_t env_size(const char *name, size_t fallback) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? (size_t)strtoull(v, NULL, 10) : fallback;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* COATCHECK_BENCH_ONLY="get/200/1" (any part may be empty or "*") runs one measurement, e.g. for
 * counting instructions per operation under callgrind. */
static int selected(const char *op, size_t size, size_t threads) {
    char want[64], have[64];
    const char *only = getenv("COATCHECK_BENCH_ONLY");
    const char *w, *h;
    if (only == NULL || only[0] == '\0') {
        return 1;
    }
    snprintf(want, sizeof want, "%s", only);
    snprintf(have, sizeof have, "%s/%zu/%zu", op, size, threads);
    /* Compare field by field; an empty or "*" field matches anything. */
    for (w = want, h = have; *w != '\0' || *h != '\0';) {
        size_t wl = strcspn(w, "/"), hl = strcspn(h, "/");
        if (!(wl == 0 || (wl == 1 && *w == '*') || (wl == hl && strncmp(w, h, wl) == 0))) {
            return 0;
        }
        w += wl + (w[wl] == '/');
        h += hl + (h[hl] == '/');
    }
    return 1;
}

/* The same xorshift as benches/common/mod.rs `Pick`. */
static uint64_t pick_new(uint64_t seed) { return (seed * 0x9E3779B97F4A7C15ull) | 1; }
static size_t pick_index(uint64_t *x, size_t len) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (size_t)(*x % (uint64_t)len);
}

struct job {
    enum op op;
    uint64_t seed;
    size_t ops;
    char (*created)[ID_LEN]; /* ids made by OP_CREATE, destroyed after the measurement */
    size_t sink;
    pthread_barrier_t *barrier;
};

static void *work(void *arg) {
    struct job *job = (struct job *)arg;
    uint64_t pick = pick_new(job->seed);
    static __thread uint8_t buf[4096];
    size_t i, len = 0, sink = 0;
    coatcheck_status status = COATCHECK_STATUS_OK;
    if (job->barrier != NULL) {
        pthread_barrier_wait(job->barrier);
    }
    for (i = 0; i < job->ops; i++) {
        switch (job->op) {
        case OP_GET: {
            const char *id = ids[pick_index(&pick, n_ids)];
            status = coatcheck_store_get(store, id, ID_LEN, buf, sizeof buf, &len, NULL);
            sink += len;
            break;
        }
        case OP_SET: {
            const char *id = ids[pick_index(&pick, n_ids)];
            status = coatcheck_store_set(store, id, ID_LEN, value, value_len, 0, NULL);
            break;
        }
        case OP_TOUCH: {
            const char *id = ids[pick_index(&pick, n_ids)];
            status = coatcheck_store_touch(store, id, ID_LEN, 0);
            break;
        }
        case OP_CREATE:
            status = coatcheck_store_create(store, value, value_len, 0, job->created[i], ID_LEN, &len);
            break;
        }
        if (status != COATCHECK_STATUS_OK) {
            die(op_names[job->op], status);
        }
    }
    job->sink = sink;
    return NULL;
}

/* Runs `ops` operations split across `threads` threads; returns ns per operation. */
static double measure(enum op op, size_t threads, size_t ops, uint64_t seed) {
    struct job jobs[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    pthread_barrier_t barrier;
    size_t per_thread = ops / threads, t, i;
    double start, elapsed;
    for (t = 0; t < threads; t++) {
        jobs[t].op = op;
        jobs[t].seed = seed + t;
        jobs[t].ops = per_thread;
        jobs[t].created = op == OP_CREATE ? (char (*)[ID_LEN])malloc(per_thread * ID_LEN) : NULL;
        jobs[t].barrier = threads > 1 ? &barrier : NULL;
        if (op == OP_CREATE && jobs[t].created == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    if (threads == 1) {
        start = now_ns();
        work(&jobs[0]);
        elapsed = now_ns() - start;
    } else {
        pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
        for (t = 0; t < threads; t++) {
            pthread_create(&tids[t], NULL, work, &jobs[t]);
        }
        pthread_barrier_wait(&barrier);
        start = now_ns();
        for (t = 0; t < threads; t++) {
            pthread_join(tids[t], NULL);
        }
        elapsed = now_ns() - start;
        pthread_barrier_destroy(&barrier);
    }
    for (t = 0; t < threads; t++) {
        if (jobs[t].created != NULL) { /* untimed: back to the prefilled size */
            for (i = 0; i < per_thread; i++) {
                coatcheck_store_destroy(store, jobs[t].created[i], ID_LEN);
            }
            free(jobs[t].created);
        }
    }
    return elapsed / (double)(per_thread * threads);
}

int main(void) {
    static const size_t sizes[] = {200, 2048};
    static const size_t thread_counts[] = {1, 2};
    size_t sessions = env_size("COATCHECK_BENCH_SESSIONS", 1000000);
    size_t ops = env_size("COATCHECK_BENCH_OPS", 2000000);
    size_t repeats = env_size("COATCHECK_BENCH_REPEATS", 3);
    size_t s, t, r, i, len;
    int op;
    coatcheck_config config;
    coatcheck_status status;

    printf("# C API (coatcheck %s), %zu sessions, %zu ops per run, best of %zu\n", coatcheck_version(), sessions, ops,
           repeats);
    ids = (char (*)[ID_LEN])malloc(sessions * ID_LEN);
    if (ids == NULL || sessions == 0 || repeats == 0) {
        fprintf(stderr, "bad COATCHECK_BENCH_SESSIONS / COATCHECK_BENCH_REPEATS, or out of memory\n");
        return 1;
    }
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        value_len = sizes[s];
        value = (uint8_t *)malloc(value_len);
        memset(value, 'x', value_len);
        coatcheck_config_default(&config);
        config.idle_timeout_ms = 3600u * 1000u; /* benches/common IDLE */
        if ((status = coatcheck_store_new(&config, &store)) != COATCHECK_STATUS_OK) {
            die("coatcheck_store_new", status);
        }
        for (i = 0; i < sessions; i++) {
            if ((status = coatcheck_store_create(store, value, value_len, 0, ids[i], ID_LEN, &len)) != COATCHECK_STATUS_OK) {
                die("prefill", status);
            }
        }
        n_ids = sessions;
        memset(value, 'y', value_len);
        for (t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
            for (op = OP_GET; op <= OP_CREATE; op++) {
                double best = 1e300;
                if (!selected(op_names[op], value_len, thread_counts[t])) {
                    continue;
                }
                for (r = 0; r < repeats; r++) {
                    double ns = measure((enum op)op, thread_counts[t], ops, 1000 * r + 1);
                    best = ns < best ? ns : best;
                }
                printf("RESULT op=%s size=%zu threads=%zu ns_per_op=%.1f\n", op_names[op], value_len, thread_counts[t],
                       best);
                fflush(stdout);
            }
        }
        coatcheck_store_free(store);
        free(value);
    }
    free(ids);
    return 0;
}
