/* The shared tier through the C API, against a real redis-server that this test starts itself
 * on a free 127.0.0.1 port (Debian: apt-get install redis-server): two stores on one Redis
 * share a session, a destroy in one reaches the other, and once the Redis is killed a store
 * built with COATCHECK_WHEN_REDIS_DOWN_FAIL answers COATCHECK_STATUS_UNAVAILABLE within about
 * 200 ms instead of waiting or serving stale data.
 *
 * The redis-server is stopped by PID on every path: at exit (failed checks included), from a
 * handler for fatal and termination signals, and by the kernel (PR_SET_PDEATHSIG) if this
 * process is killed outright, by `timeout` say.
 *
 * Built as C99 and as C++17, linked against the shared and the static library, run natively
 * and under valgrind by `make test-c`. Under valgrind (everything runs 20-50 times slower, one
 * thread at a time) the time limits are scaled up; counts stay tiny. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* The running redis-server, or -1. */
static volatile pid_t redis_pid = -1;
static unsigned redis_port = 0;
/* 1 natively; larger under valgrind, which preloads its vgpreload_*.so into the program. */
static long slow = 1;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* kill -9 of the redis-server, then reap it. Safe to call twice. */
static void stop_redis(void) {
    pid_t pid = redis_pid;
    if (pid > 0) {
        redis_pid = -1;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
}

/* A fatal or termination signal: stop the server (kill is async-signal-safe), then die of the
 * same signal. */
static void on_signal(int sig) {
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void stop_redis_on_every_path(void) {
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    size_t i;
    atexit(stop_redis);
    for (i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        signal(signals[i], on_signal);
    }
}

static unsigned free_port(void) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    unsigned port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

static bool accepts_connections(unsigned port) {
    struct sockaddr_in addr;
    bool ok;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

/* Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no` on a free port and
 * waits until it accepts connections. Tries a few ports, in case another process takes the
 * free one first. */
static bool start_redis(void) {
    int attempt;
    for (attempt = 0; attempt < 5; attempt++) {
        char port_arg[16];
        char *argv[10];
        pid_t parent = getpid();
        pid_t pid;
        long deadline;
        redis_port = free_port();
        if (redis_port == 0) {
            continue;
        }
        snprintf(port_arg, sizeof port_arg, "%u", redis_port);
        argv[0] = (char *)"redis-server";
        argv[1] = (char *)"--port";
        argv[2] = port_arg;
        argv[3] = (char *)"--bind";
        argv[4] = (char *)"127.0.0.1";
        argv[5] = (char *)"--save";
        argv[6] = (char *)"";
        argv[7] = (char *)"--appendonly";
        argv[8] = (char *)"no";
        argv[9] = NULL;
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
            return false;
        }
        if (pid == 0) {
            /* The child: die with this process even if it is killed with SIGKILL. */
            int devnull = open("/dev/null", O_RDWR);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) {
                _exit(1);
            }
            if (devnull >= 0) {
                dup2(devnull, STDIN_FILENO);
                dup2(devnull, STDOUT_FILENO);
                dup2(devnull, STDERR_FILENO);
            }
            execvp("redis-server", argv);
            _exit(127);
        }
        redis_pid = pid;
        deadline = now_ms() + 10000 * slow;
        while (!accepts_connections(redis_port)) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                redis_pid = -1;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
                    fprintf(stderr, "test_tier: cannot run redis-server; install it (Debian: apt-get install "
                                    "redis-server)\n");
                    return false;
                }
                break; /* it exited: most likely the port was taken meanwhile; try another */
            }
            if (now_ms() > deadline) {
                stop_redis();
                fprintf(stderr, "test_tier: redis-server did not start on port %u\n", redis_port);
                return false;
            }
            sleep_ms(10);
        }
        if (redis_pid > 0) {
            return true;
        }
    }
    fprintf(stderr, "test_tier: redis-server did not stay up on any of 5 ports\n");
    return false;
}

static coatcheck_config tier_config(const char *url) {
    coatcheck_config config;
    CHECK_OK(coatcheck_config_default(&config));
    config.background_sweeper = false; /* one thread fewer for valgrind */
    config.redis_url = url;
    config.redis_key_prefix = "c-test:";
    /* A round trip that times out fails the call, or is served locally once the link is
     * declared lost; either way the other store would not see the write. Generous, for a
     * loaded machine and for valgrind. */
    config.redis_timeout_ms = 2000;
    return config;
}

static coatcheck_stats stats_of(coatcheck_store *store) {
    coatcheck_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    return stats;
}

/* A store on the tier, once its link to Redis is up (coatcheck_store_new waits up to a second
 * for it; valgrind may need longer). */
static coatcheck_store *connected_store(const coatcheck_config *config) {
    coatcheck_store *store = NULL;
    long deadline = now_ms() + 1000 * slow;
    CHECK_OK(coatcheck_store_new(config, &store));
    if (store == NULL) {
        return NULL;
    }
    CHECK(stats_of(store).tier_enabled);
    while (!stats_of(store).tier_connected && now_ms() < deadline) {
        sleep_ms(5);
    }
    CHECK(stats_of(store).tier_connected);
    return store;
}

static coatcheck_status get(coatcheck_store *store, const char *id, char *out, size_t cap) {
    size_t len = 0;
    coatcheck_status status = coatcheck_store_get(store, id, strlen(id), (uint8_t *)out, cap - 1, &len, NULL);
    if ((uint32_t)status == COATCHECK_STATUS_OK) {
        out[len] = '\0';
    }
    return status;
}

static void test_two_stores_share_sessions(const char *url) {
    coatcheck_config config = tier_config(url);
    coatcheck_store *a = connected_store(&config);
    coatcheck_store *b = connected_store(&config);
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[64];
    size_t len = 0;
    uint64_t version = 0;
    long deadline;
    coatcheck_status status;
    coatcheck_stats stats;

    if (a == NULL || b == NULL) {
        coatcheck_store_free(a);
        coatcheck_store_free(b);
        return;
    }

    /* Created in A, read in B, which had never seen it: B asks Redis. */
    CHECK_OK(coatcheck_store_create(a, BYTES("{\"user\":1}"), 10, 0, id, COATCHECK_GENERATED_ID_LEN, &len));
    CHECK(len == COATCHECK_GENERATED_ID_LEN);
    id[len] = '\0';
    CHECK_OK(get(b, id, value, sizeof value));
    CHECK(strcmp(value, "{\"user\":1}") == 0);
    stats = stats_of(b);
    CHECK(stats.tier_near_misses >= 1 && stats.tier_round_trips >= 1);

    /* Written in B, read in A (poll: A's copy is dropped when the invalidation arrives). */
    CHECK_OK(coatcheck_store_set(b, id, len, BYTES("{\"user\":2}"), 10, 0, &version));
    CHECK(version == 2);
    deadline = now_ms() + 1000 * slow;
    while (!((uint32_t)get(a, id, value, sizeof value) == COATCHECK_STATUS_OK && strcmp(value, "{\"user\":2}") == 0) &&
           now_ms() < deadline) {
        sleep_ms(1);
    }
    CHECK_OK(get(a, id, value, sizeof value));
    CHECK(strcmp(value, "{\"user\":2}") == 0);

    /* Destroyed in A: B stops serving it, after at most the invalidation's trip. */
    CHECK_OK(coatcheck_store_destroy(a, id, len));
    deadline = now_ms() + 1000 * slow;
    while ((status = get(b, id, value, sizeof value)) == COATCHECK_STATUS_OK && now_ms() < deadline) {
        sleep_ms(1);
    }
    CHECK_STATUS(status, COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(get(a, id, value, sizeof value), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_destroy(b, id, len), COATCHECK_STATUS_NOT_FOUND);

    /* Count and clear reach both stores' sessions; coatcheck_store_len is A's own table. */
    {
        size_t count = 0, local = 0;
        CHECK_OK(coatcheck_store_create(a, BYTES("a"), 1, 0, id, COATCHECK_GENERATED_ID_LEN, &len));
        CHECK_OK(coatcheck_store_create(b, BYTES("b"), 1, 0, id, COATCHECK_GENERATED_ID_LEN, &len));
        id[len] = '\0';
        CHECK_OK(coatcheck_store_count(a, &count));
        CHECK(count == 2);
        CHECK_OK(coatcheck_store_len(a, &local));
        CHECK(local == 1);
        CHECK_OK(get(b, id, value, sizeof value));
        CHECK_OK(coatcheck_store_clear(a));
        CHECK_OK(coatcheck_store_count(b, &count));
        CHECK(count == 0);
        deadline = now_ms() + 1000 * slow;
        while ((status = get(b, id, value, sizeof value)) == COATCHECK_STATUS_OK && now_ms() < deadline) {
            sleep_ms(1);
        }
        CHECK_STATUS(status, COATCHECK_STATUS_NOT_FOUND);
        CHECK_STATUS(coatcheck_store_count(NULL, &count), COATCHECK_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(coatcheck_store_count(a, NULL), COATCHECK_STATUS_NULL_ARGUMENT);
    }

    stats = stats_of(a);
    CHECK(stats.tier_enabled && stats.tier_connected);
    CHECK(stats.tier_failures == 0 && stats.tier_disconnects == 0);
    CHECK(stats.tier_to_replay == 0); /* nothing was made while Redis was down */
    coatcheck_store_free(a);
    coatcheck_store_free(b);
}

static void test_fail_policy_once_redis_is_killed(const char *url) {
    coatcheck_config config = tier_config(url);
    coatcheck_store *store;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char other[COATCHECK_GENERATED_ID_LEN + 1];
    char value[16];
    size_t len = 0;
    long start, elapsed, deadline;
    coatcheck_status status;
    coatcheck_stats stats;

    config.redis_when_down = COATCHECK_WHEN_REDIS_DOWN_FAIL;
    /* The default (0: 50 ms) natively; valgrind's round trips can take longer than that. */
    config.redis_timeout_ms = slow == 1 ? 0 : 2000;
    store = connected_store(&config);
    if (store == NULL) {
        stop_redis();
        return;
    }
    CHECK_OK(coatcheck_store_create(store, BYTES("x"), 1, 0, id, COATCHECK_GENERATED_ID_LEN, &len));
    id[len] = '\0';
    CHECK_OK(get(store, id, value, sizeof value));

    stop_redis();

    /* A write needs Redis: it fails at once, it does not wait or apply locally. */
    start = now_ms();
    len = 0;
    CHECK_STATUS(coatcheck_store_create(store, BYTES("y"), 1, 0, other, COATCHECK_GENERATED_ID_LEN, &len), COATCHECK_STATUS_UNAVAILABLE);
    elapsed = now_ms() - start;
    CHECK(len == 0);
    printf("test_tier: with Redis killed, a create failed with UNAVAILABLE after %ld ms\n", elapsed);
    CHECK(elapsed <= 200 * slow);

    /* A read may still be served from the verified local copy until the store notices the
     * loss (its connection sees the close, or the heartbeat fails); then it fails too. */
    deadline = now_ms() + 3000 * slow;
    do {
        start = now_ms();
        status = get(store, id, value, sizeof value);
        elapsed = now_ms() - start;
        CHECK(elapsed <= 200 * slow);
        CHECK((uint32_t)status == COATCHECK_STATUS_OK || (uint32_t)status == COATCHECK_STATUS_UNAVAILABLE);
        if ((uint32_t)status != COATCHECK_STATUS_UNAVAILABLE) {
            sleep_ms(5);
        }
    } while ((uint32_t)status != COATCHECK_STATUS_UNAVAILABLE && now_ms() < deadline);
    CHECK_STATUS(status, COATCHECK_STATUS_UNAVAILABLE);
    deadline = now_ms() + 3000 * slow;
    while (stats_of(store).tier_connected && now_ms() < deadline) {
        sleep_ms(5);
    }

    /* Every call that needs Redis now fails fast, and the session is still there locally
     * (nothing was dropped for Redis being away). */
    start = now_ms();
    CHECK_STATUS(coatcheck_store_destroy(store, id, strlen(id)), COATCHECK_STATUS_UNAVAILABLE);
    CHECK_STATUS(coatcheck_store_set(store, id, strlen(id), BYTES("z"), 1, 0, NULL), COATCHECK_STATUS_UNAVAILABLE);
    CHECK_STATUS(get(store, id, value, sizeof value), COATCHECK_STATUS_UNAVAILABLE);
    CHECK_STATUS(coatcheck_store_clear(store), COATCHECK_STATUS_UNAVAILABLE);
    CHECK_STATUS(coatcheck_store_count(store, &len), COATCHECK_STATUS_UNAVAILABLE);
    elapsed = now_ms() - start;
    CHECK(elapsed <= 200 * slow);
    CHECK_OK(coatcheck_store_len(store, &len));
    CHECK(len == 1);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_UNAVAILABLE), "unavailable") == 0);

    stats = stats_of(store);
    CHECK(stats.tier_enabled && !stats.tier_connected);
    CHECK(stats.tier_disconnects >= 1);
    coatcheck_store_free(store); /* joins its link thread, which is retrying the dead port */
}

int main(void) {
    char url[64];
    const char *preload = getenv("LD_PRELOAD");
    if (preload != NULL && strstr(preload, "vgpreload") != NULL) {
        slow = 20;
    }
    stop_redis_on_every_path();
    if (!start_redis()) {
        fprintf(stderr, "test_tier: FAILED to start redis-server\n");
        return 1;
    }
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/0", redis_port);
    test_two_stores_share_sessions(url);
    test_fail_policy_once_redis_is_killed(url); /* kills the server */
    stop_redis();
    return check_report("test_tier");
}
