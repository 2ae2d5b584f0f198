/* Every function of the C API and every status it can return, through the public header only.
 * Built as C99 and as C++17, linked against the shared and the static library, run under
 * valgrind by `make test-c`. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"

#define SENTINEL_LEN ((size_t)0xDEADBEEF)
#define SENTINEL_VERSION ((uint64_t)0xFEEDFACE)

/* A store that runs no sweeper thread (most tests), with the given tweaks applied. */
static coatcheck_config quiet_config(void) {
    coatcheck_config config;
    CHECK_OK(coatcheck_config_default(&config));
    config.background_sweeper = false;
    return config;
}

static coatcheck_store *new_store(const coatcheck_config *config) {
    coatcheck_store *store = NULL;
    CHECK_OK(coatcheck_store_new(config, &store));
    CHECK(store != NULL);
    return store;
}

static coatcheck_store *new_signing_store(void) {
    static const char current[] = "new secret";
    static const char previous[] = "old secret";
    coatcheck_bytes secrets[2];
    coatcheck_config config = quiet_config();
    secrets[0].data = BYTES(current);
    secrets[0].len = strlen(current);
    secrets[1].data = BYTES(previous);
    secrets[1].len = strlen(previous);
    config.secrets = secrets;
    config.secrets_len = 2;
    return new_store(&config);
}

/* Creates a session holding `value` and writes its id (NUL-terminated) to `id`. */
static void create(coatcheck_store *store, const char *value, char id[COATCHECK_GENERATED_ID_LEN + 1]) {
    size_t id_len = 0;
    CHECK_OK(coatcheck_store_create(store, BYTES(value), strlen(value), 0, id, COATCHECK_GENERATED_ID_LEN, &id_len));
    CHECK(id_len == COATCHECK_GENERATED_ID_LEN);
    id[id_len] = '\0';
}

/* The value of a session as a NUL-terminated string, via get (refresh) or peek. */
static coatcheck_status read_value(coatcheck_store *store, const char *id, bool peek, char *out, size_t cap,
                                   uint64_t *version) {
    size_t len = 0;
    coatcheck_status status = peek ? coatcheck_store_peek(store, id, strlen(id), (uint8_t *)out, cap - 1, &len, version)
                                   : coatcheck_store_get(store, id, strlen(id), (uint8_t *)out, cap - 1, &len, version);
    if ((uint32_t)status == COATCHECK_STATUS_OK) {
        out[len] = '\0';
    }
    return status;
}

static void test_version(void) {
    const char *version = coatcheck_version();
    unsigned major = 99, minor = 99, patch = 99;
    CHECK(version != NULL);
    CHECK(strcmp(version, COATCHECK_VERSION) == 0);
    CHECK(sscanf(version, "%u.%u.%u", &major, &minor, &patch) == 3);
    CHECK(major == COATCHECK_VERSION_MAJOR);
    CHECK(minor == COATCHECK_VERSION_MINOR);
    CHECK(patch == COATCHECK_VERSION_PATCH);
}

static void test_status_text(void) {
    static const uint32_t codes[] = {
        COATCHECK_STATUS_OK,           COATCHECK_STATUS_NULL_ARGUMENT,  COATCHECK_STATUS_BUFFER_TOO_SMALL,
        COATCHECK_STATUS_INVALID_UTF8, COATCHECK_STATUS_BAD_SIGNATURE,  COATCHECK_STATUS_NOT_FOUND,
        COATCHECK_STATUS_TOO_LARGE,    COATCHECK_STATUS_STORE_FULL,     COATCHECK_STATUS_CONFLICT,
        COATCHECK_STATUS_INVALID_ID,   COATCHECK_STATUS_INVALID_CONFIG, COATCHECK_STATUS_INVALID_ARGUMENT,
        COATCHECK_STATUS_UNAVAILABLE,  COATCHECK_STATUS_PANIC,          COATCHECK_STATUS_UNKNOWN_ERROR,
    };
    size_t n = sizeof codes / sizeof codes[0];
    size_t i, j;
    /* The numbers are part of the ABI. */
    CHECK(COATCHECK_STATUS_OK == 0);
    CHECK(COATCHECK_STATUS_NULL_ARGUMENT == 100);
    CHECK(COATCHECK_STATUS_BUFFER_TOO_SMALL == 101);
    CHECK(COATCHECK_STATUS_INVALID_UTF8 == 102);
    CHECK(COATCHECK_STATUS_BAD_SIGNATURE == 200);
    CHECK(COATCHECK_STATUS_NOT_FOUND == 201);
    CHECK(COATCHECK_STATUS_TOO_LARGE == 202);
    CHECK(COATCHECK_STATUS_STORE_FULL == 203);
    CHECK(COATCHECK_STATUS_CONFLICT == 204);
    CHECK(COATCHECK_STATUS_INVALID_ID == 205);
    CHECK(COATCHECK_STATUS_INVALID_CONFIG == 206);
    CHECK(COATCHECK_STATUS_INVALID_ARGUMENT == 207);
    CHECK(COATCHECK_STATUS_UNAVAILABLE == 208);
    CHECK(COATCHECK_STATUS_PANIC == 900);
    CHECK(COATCHECK_STATUS_UNKNOWN_ERROR == 901);
    for (i = 0; i < n; i++) {
        CHECK(strcmp(coatcheck_status_message(codes[i]), "unknown status") != 0);
        CHECK(strcmp(coatcheck_status_name(codes[i]), "unknown") != 0);
        for (j = 0; j < i; j++) {
            CHECK(strcmp(coatcheck_status_name(codes[i]), coatcheck_status_name(codes[j])) != 0);
            CHECK(strcmp(coatcheck_status_message(codes[i]), coatcheck_status_message(codes[j])) != 0);
        }
    }
    /* The engine's codes carry the core's stable error names. */
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_BAD_SIGNATURE), "bad_signature") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_NOT_FOUND), "not_found") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_TOO_LARGE), "too_large") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_STORE_FULL), "store_full") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_CONFLICT), "conflict") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_INVALID_ID), "invalid_id") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_INVALID_CONFIG), "invalid_config") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_INVALID_ARGUMENT), "invalid_argument") == 0);
    CHECK(strcmp(coatcheck_status_name(COATCHECK_STATUS_UNAVAILABLE), "unavailable") == 0);
    CHECK(strcmp(coatcheck_status_message(COATCHECK_STATUS_NOT_FOUND), "session not found") == 0);
    CHECK(strcmp(coatcheck_status_message(1), "unknown status") == 0);
    CHECK(strcmp(coatcheck_status_name(12345), "unknown") == 0);
}

static void test_config(void) {
    coatcheck_config config;
    coatcheck_store *store = (coatcheck_store *)&config; /* a sentinel: must stay untouched */
    coatcheck_bytes secret;
    CHECK_OK(coatcheck_config_default(&config));
    CHECK(config.idle_timeout_ms == 24u * 60u * 60u * 1000u);
    CHECK(config.absolute_timeout_ms == 0);
    CHECK(config.max_sessions == 0);
    CHECK(config.max_bytes == 0);
    CHECK(config.max_session_bytes == 1u << 20);
    CHECK(config.shards == 0);
    CHECK(config.sweep_interval_ms == 1000);
    CHECK(config.background_sweeper == true);
    CHECK(config.trim_after_freeing == 8u << 20);
    CHECK(config.eviction == COATCHECK_EVICTION_LEAST_VALUABLE);
    CHECK(config.secrets == NULL && config.secrets_len == 0);
    CHECK(config.slide_on_read == true);
    CHECK(config.redis_url == NULL && config.redis_key_prefix == NULL);
    CHECK(config.redis_timeout_ms == 50);
    CHECK(config.redis_when_down == COATCHECK_WHEN_REDIS_DOWN_SERVE_LOCAL);
    CHECK(config.redis_strict == false);
    CHECK_STATUS(coatcheck_config_default(NULL), COATCHECK_STATUS_NULL_ARGUMENT);

    /* Out-of-range settings: INVALID_CONFIG, and *out_store is not written. */
    config.idle_timeout_ms = 0;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    config.shards = 3;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    config.shards = 1u << 17;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    config.sweep_interval_ms = 0;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    config.eviction = 7;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    config.max_session_bytes = 0;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_OK(coatcheck_config_default(&config));
    secret.data = BYTES("");
    secret.len = 0;
    config.secrets = &secret;
    config.secrets_len = 1;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK(store == (coatcheck_store *)&config);

    /* NULL arguments. */
    secret.data = NULL;
    secret.len = 4;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_NULL_ARGUMENT);
    config.secrets = NULL;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(coatcheck_store_new(NULL, &store), COATCHECK_STATUS_NULL_ARGUMENT);
    CHECK_OK(coatcheck_config_default(&config));
    CHECK_STATUS(coatcheck_store_new(&config, NULL), COATCHECK_STATUS_NULL_ARGUMENT);
    CHECK(store == (coatcheck_store *)&config);

    /* Shared-tier settings out of range, all refused before anything connects. */
    {
        static const char *const bad_urls[] = {"http://x", "", "not a url", "redis://caf\xc3", "redis://\xff:1/0"};
        size_t i;
        for (i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
            CHECK_OK(coatcheck_config_default(&config));
            config.redis_url = bad_urls[i];
            CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        }
        CHECK_OK(coatcheck_config_default(&config));
        config.redis_url = "redis://127.0.0.1:1/0";
        config.redis_key_prefix = "";
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        config.redis_key_prefix = "has space:";
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        config.redis_key_prefix = "\xc3\xa9:"; /* UTF-8, but not ASCII */
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        config.redis_key_prefix = "\xff:"; /* not UTF-8 */
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        config.redis_key_prefix = NULL;
        config.redis_timeout_ms = 60001;
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        config.redis_timeout_ms = 0;
        config.redis_when_down = 2;
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        /* Without a redis_url the prefix is still checked, as the core checks it. */
        CHECK_OK(coatcheck_config_default(&config));
        config.redis_key_prefix = "";
        CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
        CHECK(store == (coatcheck_store *)&config);
        CHECK_OK(coatcheck_config_default(&config));
    }

    /* The in-range extremes are accepted; the config may go away once the store exists. */
    config.shards = 1;
    config.background_sweeper = false;
    config.absolute_timeout_ms = 1000;
    config.eviction = COATCHECK_EVICTION_REFUSE;
    CHECK_OK(coatcheck_store_new(&config, &store));
    CHECK(store != NULL && store != (coatcheck_store *)&config);
    coatcheck_store_free(store);
    coatcheck_store_free(NULL); /* accepted, does nothing */
}

static void test_default_config_store(void) {
    /* The default configuration, background sweeper thread included. */
    coatcheck_config config;
    coatcheck_store *store = NULL;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[64];
    CHECK_OK(coatcheck_config_default(&config));
    store = new_store(&config);
    create(store, "{\"user\":42}", id);
    CHECK_OK(read_value(store, id, false, value, sizeof value, NULL));
    CHECK(strcmp(value, "{\"user\":42}") == 0);
    coatcheck_store_free(store);
}

static void test_create_get_peek(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char other[COATCHECK_GENERATED_ID_LEN + 1];
    char small[8];
    uint8_t buf[64];
    size_t len = SENTINEL_LEN, n = 0, i;
    uint64_t version = SENTINEL_VERSION;
    char value[64];

    create(store, "hello, session", id);
    create(store, "another", other);
    CHECK(strcmp(id, other) != 0);
    for (i = 0; i < COATCHECK_GENERATED_ID_LEN; i++) {
        CHECK(id[i] > ' ' && id[i] <= '~');
    }
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 2);

    /* get: value, length and version 1. */
    CHECK_OK(coatcheck_store_get(store, id, strlen(id), buf, sizeof buf, &len, &version));
    CHECK(len == strlen("hello, session") && memcmp(buf, "hello, session", len) == 0);
    CHECK(version == 1);
    /* out_version is optional. */
    CHECK_OK(coatcheck_store_get(store, id, strlen(id), buf, sizeof buf, &len, NULL));
    CHECK_OK(read_value(store, id, true, value, sizeof value, &version));
    CHECK(strcmp(value, "hello, session") == 0 && version == 1);

    /* Two-call pattern: NULL/0 asks for the size; a short buffer is not written. */
    len = SENTINEL_LEN;
    version = SENTINEL_VERSION;
    CHECK_STATUS(coatcheck_store_get(store, id, strlen(id), NULL, 0, &len, &version),
                 COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == strlen("hello, session"));
    CHECK(version == SENTINEL_VERSION);
    memset(buf, 'Z', sizeof buf);
    CHECK_STATUS(coatcheck_store_get(store, id, strlen(id), buf, len - 1, &len, &version),
                 COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == strlen("hello, session"));
    CHECK(buf[0] == 'Z');
    CHECK_STATUS(coatcheck_store_peek(store, id, strlen(id), buf, 3, &len, NULL), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == strlen("hello, session") && buf[0] == 'Z');
    CHECK_OK(coatcheck_store_get(store, id, strlen(id), buf, len, &len, NULL)); /* exactly fits */

    /* Missing sessions. */
    len = SENTINEL_LEN;
    CHECK_STATUS(coatcheck_store_get(store, "no-such-session", 15, buf, sizeof buf, &len, &version),
                 COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_peek(store, "no-such-session", 15, buf, sizeof buf, &len, &version),
                 COATCHECK_STATUS_NOT_FOUND);
    CHECK(len == SENTINEL_LEN && version == SENTINEL_VERSION);

    /* create with an id buffer under 32 bytes: BUFFER_TOO_SMALL, nothing created. */
    CHECK_STATUS(coatcheck_store_create(store, BYTES("x"), 1, 0, small, sizeof small, &len),
                 COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == COATCHECK_GENERATED_ID_LEN);
    CHECK_STATUS(coatcheck_store_create(store, BYTES("x"), 1, 0, NULL, 0, &len), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 2);

    /* Empty values: NULL with length 0 is the empty buffer. */
    CHECK_OK(coatcheck_store_create(store, NULL, 0, 0, other, COATCHECK_GENERATED_ID_LEN, &len));
    CHECK_OK(coatcheck_store_get(store, other, len, NULL, 0, &len, &version));
    CHECK(len == 0 && version == 1);

    /* Binary values survive byte for byte, NULs included. */
    {
        static const uint8_t binary[5] = {0, 1, 0, 255, 0};
        CHECK_OK(coatcheck_store_set(store, id, strlen(id), binary, sizeof binary, 0, &version));
        CHECK(version == 2);
        CHECK_OK(coatcheck_store_peek(store, id, strlen(id), buf, sizeof buf, &len, &version));
        CHECK(len == 5 && memcmp(buf, binary, 5) == 0 && version == 2);
    }

    /* A per-session TTL on create. */
    CHECK_OK(coatcheck_store_create(store, BYTES("short"), 5, 60000, other, sizeof other, &len));
    CHECK_OK(coatcheck_store_touch(store, other, len, 0));
    coatcheck_store_free(store);
}

static void test_set_and_versions(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    const char *id = "caller-chosen-id";
    size_t id_len = strlen(id);
    uint64_t version = 0;
    char value[64];
    coatcheck_stats stats;

    /* set creates when missing, then counts versions up. */
    CHECK_OK(coatcheck_store_set(store, id, id_len, BYTES("v1"), 2, 0, &version));
    CHECK(version == 1);
    CHECK_OK(coatcheck_store_set(store, id, id_len, BYTES("v2"), 2, 0, &version));
    CHECK(version == 2);
    CHECK_OK(coatcheck_store_set(store, id, id_len, BYTES("v3"), 2, 0, NULL));
    CHECK_OK(read_value(store, id, false, value, sizeof value, &version));
    CHECK(strcmp(value, "v3") == 0 && version == 3);

    /* Version-checked set: wins on the current version, conflicts on a stale one. */
    CHECK_OK(coatcheck_store_set_if_version(store, id, id_len, BYTES("v4"), 2, 3, 0, &version));
    CHECK(version == 4);
    version = SENTINEL_VERSION;
    CHECK_STATUS(coatcheck_store_set_if_version(store, id, id_len, BYTES("stale"), 5, 3, 0, &version),
                 COATCHECK_STATUS_CONFLICT);
    CHECK(version == SENTINEL_VERSION);
    CHECK_OK(read_value(store, id, true, value, sizeof value, &version));
    CHECK(strcmp(value, "v4") == 0 && version == 4);
    CHECK_STATUS(coatcheck_store_set_if_version(store, "gone", 4, BYTES("x"), 1, 1, 0, NULL),
                 COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_get(store, "gone", 4, NULL, 0, &id_len, NULL), COATCHECK_STATUS_NOT_FOUND);

    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.conflicts == 1);
    CHECK(stats.inserts == 1);
    CHECK(stats.updates == 3);
    CHECK(stats.sessions == 1);
    coatcheck_store_free(store);
}

/* update writes only over a live session: a logout between a request's read and its write is
 * not undone, where set would bring the session back. */
static void test_update_never_brings_a_destroyed_session_back(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[64];
    uint64_t version = 0;
    size_t len = 0;

    create(store, "v1", id);
    CHECK_OK(coatcheck_store_update(store, id, strlen(id), BYTES("v2"), 2, 0, &version));
    CHECK(version == 2);
    CHECK_OK(read_value(store, id, true, value, sizeof value, &version));
    CHECK(strcmp(value, "v2") == 0 && version == 2);

    CHECK_OK(coatcheck_store_destroy(store, id, strlen(id)));  /* the logout */
    version = SENTINEL_VERSION;
    CHECK_STATUS(coatcheck_store_update(store, id, strlen(id), BYTES("v3"), 2, 0, &version),
                 COATCHECK_STATUS_NOT_FOUND);
    CHECK(version == SENTINEL_VERSION);
    CHECK_STATUS(coatcheck_store_get(store, id, strlen(id), NULL, 0, &len, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_update(store, "never-was", 9, BYTES("x"), 1, 0, NULL),
                 COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(coatcheck_store_len(store, &len));
    CHECK(len == 0);
    coatcheck_store_free(store);
}

/* Copies this thread's last error message into out (NUL-terminated for strstr). */
static void last_error(char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    CHECK_OK(coatcheck_last_error_message(out, cap - 1, &len));
    if (len < cap) out[len] = '\0';
}

/* After an engine error (2xx) the thread's last error message says what was wrong; a success
 * or a calling mistake leaves it as it was. */
static void test_last_error_message(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = NULL;
    char why[256];
    char buf[64];
    size_t len = 0;

    config.eviction = 7;
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    last_error(why, sizeof why);
    CHECK(strstr(why, "eviction") != NULL && strstr(why, "7") != NULL);
    /* NULL, 0 asks for the length. */
    CHECK_STATUS(coatcheck_last_error_message(NULL, 0, &len), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == strlen(why));

    config = quiet_config();
    config.persist_path = "/nonexistent-coatcheck-parent/sessions";
    CHECK_STATUS(coatcheck_store_new(&config, &store), COATCHECK_STATUS_INVALID_CONFIG);
    last_error(why, sizeof why);
    CHECK(strstr(why, "/nonexistent-coatcheck-parent") != NULL);

    config = quiet_config();
    store = new_store(&config);
    CHECK_STATUS(coatcheck_store_get(store, "missing", 7, NULL, 0, &len, NULL), COATCHECK_STATUS_NOT_FOUND);
    last_error(why, sizeof why);
    CHECK(strstr(why, "not found") != NULL);
    CHECK_STATUS(coatcheck_store_get(store, "caf\xc3\xa9", 5, NULL, 0, &len, NULL), COATCHECK_STATUS_INVALID_ID);
    last_error(why, sizeof why);
    CHECK(strstr(why, "invalid session id") != NULL);
    /* A success and a calling mistake leave it. */
    CHECK_OK(coatcheck_store_create(store, BYTES("v"), 1, 0, buf, sizeof buf, &len));
    CHECK_STATUS(coatcheck_store_len(store, NULL), COATCHECK_STATUS_NULL_ARGUMENT);
    last_error(why, sizeof why);
    CHECK(strstr(why, "invalid session id") != NULL);
    coatcheck_store_free(store);
}

static void test_touch_destroy_expiry(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[16];
    size_t n = 0, reclaimed = 99;
    config.sweep_interval_ms = 10;
    store = new_store(&config);

    create(store, "x", id);
    CHECK_OK(coatcheck_store_touch(store, id, strlen(id), 0));
    CHECK_OK(coatcheck_store_touch(store, id, strlen(id), 5000));
    CHECK_STATUS(coatcheck_store_touch(store, "missing", 7, 0), COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(coatcheck_store_destroy(store, id, strlen(id)));
    CHECK_STATUS(coatcheck_store_destroy(store, id, strlen(id)), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(read_value(store, id, false, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_touch(store, id, strlen(id), 0), COATCHECK_STATUS_NOT_FOUND);

    /* A 300 ms TTL (long enough to be read back under valgrind): gone after 700 ms, whatever
     * the sweeper did; sweep then reclaims it. */
    CHECK_OK(coatcheck_store_create(store, BYTES("brief"), 5, 300, id, sizeof id, &n));
    id[n] = '\0';
    CHECK_OK(read_value(store, id, true, value, sizeof value, NULL));
    sleep_ms(700);
    CHECK_STATUS(read_value(store, id, true, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_touch(store, id, strlen(id), 0), COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 1); /* expired but not reclaimed yet: no background sweeper */
    CHECK_OK(coatcheck_store_sweep(store, &reclaimed));
    CHECK(reclaimed == 1);
    CHECK_OK(coatcheck_store_sweep(store, NULL));
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 0);
    coatcheck_store_free(store);
}

/* slide_on_read = false: a session expires its idle timeout after its last write, however
 * often it is read. */
static void test_reads_that_do_not_slide(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[16];
    config.slide_on_read = false;
    config.idle_timeout_ms = 400;
    store = new_store(&config);
    create(store, "x", id);
    sleep_ms(100);
    CHECK_OK(read_value(store, id, false, value, sizeof value, NULL)); /* would slide to 500 ms */
    sleep_ms(350);
    CHECK_STATUS(read_value(store, id, true, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    coatcheck_store_free(store);
}

static void test_regenerate(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char fresh[COATCHECK_GENERATED_ID_LEN + 1];
    char value[32];
    size_t len = SENTINEL_LEN, count = 0;

    create(store, "cart=3", id);
    CHECK_OK(coatcheck_store_set_owner(store, id, strlen(id), "alice", 5));

    /* Too small a buffer: BUFFER_TOO_SMALL, and the session has not moved. */
    CHECK_STATUS(coatcheck_store_regenerate(store, id, strlen(id), fresh, 31, &len), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == COATCHECK_GENERATED_ID_LEN);
    CHECK_OK(read_value(store, id, true, value, sizeof value, NULL));

    CHECK_OK(coatcheck_store_regenerate(store, id, strlen(id), fresh, COATCHECK_GENERATED_ID_LEN, &len));
    CHECK(len == COATCHECK_GENERATED_ID_LEN);
    fresh[len] = '\0';
    CHECK(strcmp(fresh, id) != 0);
    CHECK_STATUS(read_value(store, id, true, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(read_value(store, fresh, true, value, sizeof value, NULL));
    CHECK(strcmp(value, "cart=3") == 0);
    CHECK_OK(coatcheck_store_count_of(store, "alice", 5, &count));
    CHECK(count == 1);
    CHECK_STATUS(coatcheck_store_regenerate(store, id, strlen(id), fresh, sizeof fresh, &len), COATCHECK_STATUS_NOT_FOUND);
    coatcheck_store_free(store);
}

static void test_len_clear_stats(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char value[8];
    size_t n = SENTINEL_LEN;
    coatcheck_stats stats;
    int i;

    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 0);
    for (i = 0; i < 3; i++) {
        create(store, "abc", id);
    }
    CHECK_OK(read_value(store, id, false, value, sizeof value, NULL));
    CHECK_STATUS(read_value(store, "nope", false, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(coatcheck_store_destroy(store, id, strlen(id)));
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.sessions == 2);
    CHECK(stats.inserts == 3);
    CHECK(stats.hits == 1);
    CHECK(stats.misses == 1);
    CHECK(stats.destroys == 1);
    CHECK(stats.bytes > 0);
    CHECK(stats.expirations == 0 && stats.evicted_lru == 0 && stats.evicted_unread == 0);
    CHECK_OK(coatcheck_store_clear(store));
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 0);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.sessions == 0 && stats.bytes == 0);
    /* No redis_url: no shared tier, and its counters stay 0. */
    CHECK(stats.tier_enabled == false && stats.tier_connected == false);
    CHECK(stats.tier_near_hits == 0 && stats.tier_near_misses == 0 && stats.tier_round_trips == 0);
    CHECK(stats.tier_to_replay == 0);
    CHECK(stats.tier_failures == 0 && stats.tier_disconnects == 0 && stats.tier_down_ms == 0);
    /* No persist_path: no restart log, and its counters stay 0. */
    CHECK(stats.log_enabled == false && stats.log_records == 0 && stats.log_restored == 0);
    coatcheck_store_free(store);
}

static void test_owners(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char ids[3][COATCHECK_GENERATED_ID_LEN + 1];
    char bob[COATCHECK_GENERATED_ID_LEN + 1];
    char list[2 * (COATCHECK_GENERATED_ID_LEN + 1)];
    char long_owner[COATCHECK_MAX_OWNER_LEN + 1];
    size_t len = SENTINEL_LEN, count = SENTINEL_LEN, destroyed = SENTINEL_LEN;
    const char *first, *second;
    int i;

    for (i = 0; i < 3; i++) {
        create(store, "a", ids[i]);
        CHECK_OK(coatcheck_store_set_owner(store, ids[i], strlen(ids[i]), "alice", 5));
    }
    create(store, "b", bob);
    CHECK_OK(coatcheck_store_set_owner(store, bob, strlen(bob), "bob", 3));
    CHECK_OK(coatcheck_store_count_of(store, "alice", 5, &count));
    CHECK(count == 3);

    /* Three ids do not fit in room for two: the size needed comes back. */
    CHECK_STATUS(coatcheck_store_sessions_of(store, "alice", 5, list, sizeof list, &len, &count),
                 COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == 3 * (COATCHECK_GENERATED_ID_LEN + 1));
    CHECK(count == 3);

    /* Log out everywhere else: keep ids[0]. */
    CHECK_OK(coatcheck_store_destroy_owner(store, "alice", 5, ids[0], strlen(ids[0]), &destroyed));
    CHECK(destroyed == 2);
    CHECK_OK(coatcheck_store_sessions_of(store, "alice", 5, list, sizeof list, &len, &count));
    CHECK(count == 1 && len == COATCHECK_GENERATED_ID_LEN + 1);
    CHECK(strcmp(list, ids[0]) == 0);
    CHECK_STATUS(coatcheck_store_get(store, ids[1], strlen(ids[1]), NULL, 0, &len, NULL), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_get(store, bob, strlen(bob), NULL, 0, &len, NULL), COATCHECK_STATUS_BUFFER_TOO_SMALL);

    /* Two ids, listed NUL-separated in byte order. */
    create(store, "a", ids[1]);
    CHECK_OK(coatcheck_store_set_owner(store, ids[1], strlen(ids[1]), "alice", 5));
    CHECK_OK(coatcheck_store_sessions_of(store, "alice", 5, list, sizeof list, &len, NULL));
    CHECK(len == 2 * (COATCHECK_GENERATED_ID_LEN + 1));
    first = list;
    second = list + strlen(first) + 1;
    CHECK(strcmp(first, second) < 0);
    CHECK((strcmp(first, ids[0]) == 0 && strcmp(second, ids[1]) == 0) ||
          (strcmp(first, ids[1]) == 0 && strcmp(second, ids[0]) == 0));

    /* clear_owner takes a session out of the index; destroy_owner with no keep_id takes all. */
    CHECK_OK(coatcheck_store_clear_owner(store, ids[1], strlen(ids[1])));
    CHECK_OK(coatcheck_store_count_of(store, "alice", 5, &count));
    CHECK(count == 1);
    CHECK_OK(coatcheck_store_destroy_owner(store, "alice", 5, NULL, 0, &destroyed));
    CHECK(destroyed == 1);
    CHECK_OK(coatcheck_store_destroy_owner(store, "alice", 5, NULL, 0, NULL));
    CHECK_OK(coatcheck_store_count_of(store, "alice", 5, &count));
    CHECK(count == 0);
    CHECK_OK(coatcheck_store_sessions_of(store, "nobody", 6, NULL, 0, &len, &count));
    CHECK(len == 0 && count == 0);
    CHECK_OK(coatcheck_store_count_of(store, "bob", 3, &count));
    CHECK(count == 1);

    /* Bad owners and ids. */
    memset(long_owner, 'o', sizeof long_owner);
    count = SENTINEL_LEN;
    CHECK_STATUS(coatcheck_store_set_owner(store, bob, strlen(bob), "", 0), COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_set_owner(store, bob, strlen(bob), long_owner, sizeof long_owner),
                 COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_OK(coatcheck_store_set_owner(store, bob, strlen(bob), long_owner, COATCHECK_MAX_OWNER_LEN));
    CHECK_STATUS(coatcheck_store_set_owner(store, bob, strlen(bob), "\xff\xfe", 2), COATCHECK_STATUS_INVALID_UTF8);
    CHECK_STATUS(coatcheck_store_count_of(store, "\xc3", 1, &count), COATCHECK_STATUS_INVALID_UTF8);
    CHECK_STATUS(coatcheck_store_count_of(store, NULL, 0, &count), COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_sessions_of(store, long_owner, sizeof long_owner, NULL, 0, &len, NULL),
                 COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_destroy_owner(store, "", 0, NULL, 0, &destroyed), COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_destroy_owner(store, "bob", 3, "a b", 3, &destroyed), COATCHECK_STATUS_INVALID_ID);
    CHECK(count == SENTINEL_LEN);
    CHECK_STATUS(coatcheck_store_set_owner(store, "missing", 7, "carol", 5), COATCHECK_STATUS_NOT_FOUND);
    CHECK_STATUS(coatcheck_store_clear_owner(store, "missing", 7), COATCHECK_STATUS_NOT_FOUND);
    coatcheck_store_free(store);
}

static void test_sign_unsign(void) {
    static const char reference[] = "hello.xz6khi6+oL1pnNhBgjk3Nr1CX2sxTjJiO9pKXaHZ33E";
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_signing_store();
    coatcheck_store *plain = new_store(&config);
    coatcheck_store *old_only, *cat;
    coatcheck_bytes secret;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char token[COATCHECK_MAX_TOKEN_LEN];
    char tampered[COATCHECK_MAX_TOKEN_LEN];
    char long_id[COATCHECK_MAX_ID_LEN];
    size_t token_len = 0, id_len = SENTINEL_LEN;
    coatcheck_stats stats;

    create(store, "v", id);
    CHECK_OK(coatcheck_store_sign(store, id, strlen(id), token, sizeof token, &token_len));
    CHECK(token_len == COATCHECK_GENERATED_TOKEN_LEN);
    CHECK(token[COATCHECK_GENERATED_ID_LEN] == '.');
    CHECK(memcmp(token, id, COATCHECK_GENERATED_ID_LEN) == 0);
    CHECK_OK(coatcheck_store_unsign(store, token, token_len, &id_len));
    CHECK(id_len == COATCHECK_GENERATED_ID_LEN);

    /* Too small a buffer reports the token's length. */
    CHECK_STATUS(coatcheck_store_sign(store, id, strlen(id), token, 10, &token_len), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(token_len == COATCHECK_GENERATED_TOKEN_LEN);
    memset(long_id, 'x', sizeof long_id);
    CHECK_OK(coatcheck_store_sign(store, long_id, sizeof long_id, token, sizeof token, &token_len));
    CHECK(token_len == COATCHECK_MAX_TOKEN_LEN);

    /* Tampering with either half, or bytes that are not UTF-8, fail the signature. */
    CHECK_OK(coatcheck_store_sign(store, id, strlen(id), token, sizeof token, &token_len));
    memcpy(tampered, token, token_len);
    tampered[token_len - 2] = (char)(tampered[token_len - 2] == 'A' ? 'B' : 'A');
    id_len = SENTINEL_LEN;
    CHECK_STATUS(coatcheck_store_unsign(store, tampered, token_len, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK(id_len == SENTINEL_LEN);
    memcpy(tampered, token, token_len);
    tampered[0] = (char)(tampered[0] == 'a' ? 'b' : 'a');
    CHECK_STATUS(coatcheck_store_unsign(store, tampered, token_len, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    memcpy(tampered, token, token_len);
    tampered[3] = (char)0xff;
    CHECK_STATUS(coatcheck_store_unsign(store, tampered, token_len, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK_STATUS(coatcheck_store_unsign(store, token, token_len - 1, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK_STATUS(coatcheck_store_unsign(store, "", 0, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK_STATUS(coatcheck_store_unsign(store, NULL, 0, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.signature_failures == 6);

    /* Rotation: a store that only knows the old secret signs tokens the rotated store accepts. */
    secret.data = BYTES("old secret");
    secret.len = strlen("old secret");
    config.secrets = &secret;
    config.secrets_len = 1;
    old_only = new_store(&config);
    CHECK_OK(coatcheck_store_sign(old_only, id, strlen(id), token, sizeof token, &token_len));
    CHECK_OK(coatcheck_store_unsign(store, token, token_len, &id_len));
    CHECK(id_len == COATCHECK_GENERATED_ID_LEN);
    CHECK_OK(coatcheck_store_sign(store, id, strlen(id), token, sizeof token, &token_len));
    CHECK_STATUS(coatcheck_store_unsign(old_only, token, token_len, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);

    /* Byte-compatible with the cookie-signature package (express-session). */
    secret.data = BYTES("keyboard cat");
    secret.len = strlen("keyboard cat");
    cat = new_store(&config);
    CHECK_OK(coatcheck_store_sign(cat, "hello", 5, token, sizeof token, &token_len));
    CHECK(token_len == strlen(reference) && memcmp(token, reference, token_len) == 0);
    CHECK_OK(coatcheck_store_unsign(cat, reference, strlen(reference), &id_len));
    CHECK(id_len == 5);

    /* A store without secrets cannot sign. */
    CHECK_STATUS(coatcheck_store_sign(plain, id, strlen(id), token, sizeof token, &token_len),
                 COATCHECK_STATUS_INVALID_CONFIG);
    CHECK_STATUS(coatcheck_store_unsign(plain, reference, strlen(reference), &id_len), COATCHECK_STATUS_INVALID_CONFIG);
    coatcheck_store_free(cat);
    coatcheck_store_free(old_only);
    coatcheck_store_free(plain);
    coatcheck_store_free(store);
}

/* Writes, owner calls, destroy and regenerate on a session that was destroyed or has expired:
 * NOT_FOUND, and neither comes back. */
static void test_gone_sessions(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char gone[2][COATCHECK_GENERATED_ID_LEN + 1];
    char fresh[COATCHECK_GENERATED_ID_LEN + 1];
    char value[16];
    size_t len = SENTINEL_LEN, n = 0;
    uint64_t version = SENTINEL_VERSION;
    int i;

    create(store, "destroyed", gone[0]);
    CHECK_OK(coatcheck_store_set_owner(store, gone[0], strlen(gone[0]), "alice", 5));
    CHECK_OK(coatcheck_store_destroy(store, gone[0], strlen(gone[0])));
    /* 300 ms: long enough to be given an owner under valgrind. */
    CHECK_OK(coatcheck_store_create(store, BYTES("expired"), 7, 300, gone[1], COATCHECK_GENERATED_ID_LEN, &n));
    gone[1][n] = '\0';
    CHECK_OK(coatcheck_store_set_owner(store, gone[1], strlen(gone[1]), "alice", 5));
    sleep_ms(700);
    for (i = 0; i < 2; i++) {
        const char *id = gone[i];
        CHECK_STATUS(coatcheck_store_set_if_version(store, id, strlen(id), BYTES("back"), 4, 1, 0, &version),
                     COATCHECK_STATUS_NOT_FOUND);
        CHECK(version == SENTINEL_VERSION);
        CHECK_STATUS(coatcheck_store_destroy(store, id, strlen(id)), COATCHECK_STATUS_NOT_FOUND);
        CHECK_STATUS(coatcheck_store_regenerate(store, id, strlen(id), fresh, sizeof fresh, &len),
                     COATCHECK_STATUS_NOT_FOUND);
        CHECK(len == SENTINEL_LEN);
        CHECK_STATUS(coatcheck_store_set_owner(store, id, strlen(id), "bob", 3), COATCHECK_STATUS_NOT_FOUND);
        CHECK_STATUS(coatcheck_store_clear_owner(store, id, strlen(id)), COATCHECK_STATUS_NOT_FOUND);
        CHECK_STATUS(read_value(store, id, true, value, sizeof value, NULL), COATCHECK_STATUS_NOT_FOUND);
    }
    CHECK_OK(coatcheck_store_count_of(store, "alice", 5, &n));
    CHECK(n == 0);
    CHECK_OK(coatcheck_store_count_of(store, "bob", 3, &n));
    CHECK(n == 0);
    coatcheck_store_free(store);
}

/* An owner is any UTF-8 text up to COATCHECK_MAX_OWNER_LEN bytes, NUL and non-ASCII included
 * (the length says where it ends). */
static void test_owner_bytes(void) {
    static const char nul_owner[] = {'n', 'u', 'l', '\0', 'x'};
    static const char accented[] = "zo\xc3\xab \xf0\x9f\xa7\xa5";
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    char a[COATCHECK_GENERATED_ID_LEN + 1], b[COATCHECK_GENERATED_ID_LEN + 1];
    size_t count = 0, destroyed = 0;

    create(store, "a", a);
    create(store, "b", b);
    CHECK_OK(coatcheck_store_set_owner(store, a, strlen(a), nul_owner, sizeof nul_owner));
    CHECK_OK(coatcheck_store_set_owner(store, b, strlen(b), accented, strlen(accented)));
    /* "nul" alone is another owner: the bytes after the NUL count. */
    CHECK_OK(coatcheck_store_count_of(store, "nul", 3, &count));
    CHECK(count == 0);
    CHECK_OK(coatcheck_store_count_of(store, nul_owner, sizeof nul_owner, &count));
    CHECK(count == 1);
    CHECK_OK(coatcheck_store_destroy_owner(store, accented, strlen(accented), NULL, 0, &destroyed));
    CHECK(destroyed == 1);
    CHECK_OK(coatcheck_store_len(store, &count));
    CHECK(count == 1);
    coatcheck_store_free(store);
}

/* Tokens with a NUL inside, and long tokens whose length is still within the limit. */
static void test_unsign_odd_tokens(void) {
    coatcheck_store *store = new_signing_store();
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char token[COATCHECK_MAX_TOKEN_LEN + 8];
    char odd[COATCHECK_MAX_TOKEN_LEN + 8];
    char long_id[COATCHECK_MAX_ID_LEN];
    size_t token_len = 0, id_len = SENTINEL_LEN;
    coatcheck_stats stats;

    create(store, "v", id);
    CHECK_OK(coatcheck_store_sign(store, id, strlen(id), token, sizeof token, &token_len));
    memcpy(odd, token, token_len);
    odd[5] = '\0'; /* in the id */
    CHECK_STATUS(coatcheck_store_unsign(store, odd, token_len, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    memcpy(odd, token, token_len);
    odd[token_len] = '\0'; /* one NUL past the signature, counted in the length */
    CHECK_STATUS(coatcheck_store_unsign(store, odd, token_len + 1, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK(id_len == SENTINEL_LEN);

    /* The longest valid token verifies; with one byte more in front, it is refused. */
    memset(long_id, 'x', sizeof long_id);
    CHECK_OK(coatcheck_store_sign(store, long_id, sizeof long_id, token, sizeof token, &token_len));
    CHECK(token_len == COATCHECK_MAX_TOKEN_LEN);
    CHECK_OK(coatcheck_store_unsign(store, token, token_len, &id_len));
    CHECK(id_len == COATCHECK_MAX_ID_LEN);
    memcpy(odd, "x", 1);
    memcpy(odd + 1, token, token_len);
    CHECK_STATUS(coatcheck_store_unsign(store, odd, token_len + 1, &id_len), COATCHECK_STATUS_BAD_SIGNATURE);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.signature_failures == 3);
    CHECK_OK(coatcheck_store_len(store, &id_len));
    CHECK(id_len == 1);
    coatcheck_store_free(store);
}

static void test_budgets(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store;
    char ids[3][COATCHECK_GENERATED_ID_LEN + 1];
    char big[17];
    size_t len = SENTINEL_LEN, n = 0;
    coatcheck_stats stats;

    /* Values over max_session_bytes. */
    config.max_session_bytes = 16;
    store = new_store(&config);
    memset(big, 'x', sizeof big);
    CHECK_STATUS(coatcheck_store_create(store, BYTES(big), 17, 0, ids[0], sizeof ids[0], &len), COATCHECK_STATUS_TOO_LARGE);
    CHECK(len == SENTINEL_LEN);
    CHECK_OK(coatcheck_store_set(store, "k", 1, BYTES(big), 16, 0, NULL));
    CHECK_STATUS(coatcheck_store_set(store, "k", 1, BYTES(big), 17, 0, NULL), COATCHECK_STATUS_TOO_LARGE);
    CHECK_STATUS(coatcheck_store_set_if_version(store, "k", 1, BYTES(big), 17, 1, 0, NULL), COATCHECK_STATUS_TOO_LARGE);
    CHECK_STATUS(coatcheck_store_get(store, "k", 1, NULL, 0, &n, NULL), COATCHECK_STATUS_BUFFER_TOO_SMALL);
    CHECK(n == 16); /* the failed writes changed nothing */
    coatcheck_store_free(store);

    /* A session budget with the refuse policy: STORE_FULL. */
    config = quiet_config();
    config.max_sessions = 2;
    config.eviction = COATCHECK_EVICTION_REFUSE;
    store = new_store(&config);
    create(store, "1", ids[0]);
    create(store, "2", ids[1]);
    CHECK_STATUS(coatcheck_store_create(store, BYTES("3"), 1, 0, ids[2], sizeof ids[2], &len), COATCHECK_STATUS_STORE_FULL);
    CHECK_STATUS(coatcheck_store_set(store, "new-id", 6, BYTES("3"), 1, 0, NULL), COATCHECK_STATUS_STORE_FULL);
    CHECK_OK(coatcheck_store_set(store, ids[0], strlen(ids[0]), BYTES("1b"), 2, 0, NULL)); /* updates still fit */
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 2);
    coatcheck_store_free(store);

    /* A byte budget smaller than one session can never fit: STORE_FULL even when evicting. */
    config = quiet_config();
    config.max_bytes = 8;
    store = new_store(&config);
    CHECK_STATUS(coatcheck_store_create(store, BYTES("x"), 1, 0, ids[0], sizeof ids[0], &len), COATCHECK_STATUS_STORE_FULL);
    coatcheck_store_free(store);

    /* The default policy evicts: the session read since creation survives, the unread one goes. */
    config = quiet_config();
    config.max_sessions = 2;
    store = new_store(&config);
    create(store, "read", ids[0]);
    create(store, "unread", ids[1]);
    CHECK_OK(coatcheck_store_touch(store, ids[0], strlen(ids[0]), 0));
    create(store, "new", ids[2]);
    CHECK_OK(coatcheck_store_len(store, &n));
    CHECK(n == 2);
    CHECK_OK(coatcheck_store_touch(store, ids[0], strlen(ids[0]), 0));
    CHECK_STATUS(coatcheck_store_touch(store, ids[1], strlen(ids[1]), 0), COATCHECK_STATUS_NOT_FOUND);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.evicted_unread == 1);
    coatcheck_store_free(store);
}

/* Every function that takes an id rejects malformed ones with INVALID_ID. */
static void test_invalid_ids(void) {
    coatcheck_store *store = new_signing_store();
    char too_long[COATCHECK_MAX_ID_LEN + 1];
    char buf[COATCHECK_MAX_TOKEN_LEN];
    size_t len = SENTINEL_LEN;
    struct bad_id {
        const char *bytes;
        size_t len;
    } bad[7];
    size_t i;

    memset(too_long, 'x', sizeof too_long);
    bad[0].bytes = "";               bad[0].len = 0;   /* empty */
    bad[1].bytes = NULL;             bad[1].len = 0;   /* empty, as NULL */
    bad[2].bytes = too_long;         bad[2].len = sizeof too_long; /* 256 bytes */
    bad[3].bytes = "caf\xc3\xa9";    bad[3].len = 5;   /* non-ASCII UTF-8 */
    bad[4].bytes = "ab\0cd";         bad[4].len = 5;   /* embedded NUL */
    bad[5].bytes = "a b";            bad[5].len = 3;   /* space */
    bad[6].bytes = "\xff\xfe";       bad[6].len = 2;   /* not UTF-8 */

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *id = bad[i].bytes;
        size_t n = bad[i].len;
        CHECK_STATUS(coatcheck_store_get(store, id, n, (uint8_t *)buf, sizeof buf, &len, NULL), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_peek(store, id, n, (uint8_t *)buf, sizeof buf, &len, NULL), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_set(store, id, n, BYTES("v"), 1, 0, NULL), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_update(store, id, n, BYTES("v"), 1, 0, NULL), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_set_if_version(store, id, n, BYTES("v"), 1, 1, 0, NULL), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_touch(store, id, n, 0), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_destroy(store, id, n), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_regenerate(store, id, n, buf, sizeof buf, &len), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_set_owner(store, id, n, "o", 1), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_clear_owner(store, id, n), COATCHECK_STATUS_INVALID_ID);
        CHECK_STATUS(coatcheck_store_sign(store, id, n, buf, sizeof buf, &len), COATCHECK_STATUS_INVALID_ID);
    }
    CHECK(len == SENTINEL_LEN);
    CHECK_OK(coatcheck_store_len(store, &len));
    CHECK(len == 0);
    /* The longest valid id, and every printable ASCII byte, are accepted. */
    CHECK_OK(coatcheck_store_set(store, too_long, COATCHECK_MAX_ID_LEN, BYTES("v"), 1, 0, NULL));
    CHECK_OK(coatcheck_store_set(store, "!~{}\"'%;,.=+/\\", 14, BYTES("v"), 1, 0, NULL));
    coatcheck_store_free(store);
}

/* NULL where a pointer is required gives NULL_ARGUMENT, and a huge length INVALID_ARGUMENT. */
static void test_null_arguments(void) {
    coatcheck_config config = quiet_config();
    coatcheck_store *store = new_store(&config);
    coatcheck_stats stats;
    char id[COATCHECK_GENERATED_ID_LEN + 1];
    char buf[COATCHECK_MAX_TOKEN_LEN];
    uint8_t value[8];
    size_t len = 0;
    const size_t huge = (size_t)-1;
    const int N = COATCHECK_STATUS_NULL_ARGUMENT;

    create(store, "v", id);
    /* A NULL store. */
    CHECK_STATUS(coatcheck_store_create(NULL, BYTES("v"), 1, 0, buf, sizeof buf, &len), N);
    CHECK_STATUS(coatcheck_store_get(NULL, id, 32, value, sizeof value, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_peek(NULL, id, 32, value, sizeof value, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_set(NULL, id, 32, BYTES("v"), 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_update(NULL, id, 32, BYTES("v"), 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_set_if_version(NULL, id, 32, BYTES("v"), 1, 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_touch(NULL, id, 32, 0), N);
    CHECK_STATUS(coatcheck_store_destroy(NULL, id, 32), N);
    CHECK_STATUS(coatcheck_store_regenerate(NULL, id, 32, buf, sizeof buf, &len), N);
    CHECK_STATUS(coatcheck_store_len(NULL, &len), N);
    CHECK_STATUS(coatcheck_store_clear(NULL), N);
    CHECK_STATUS(coatcheck_store_stats(NULL, &stats), N);
    CHECK_STATUS(coatcheck_store_sweep(NULL, &len), N);
    CHECK_STATUS(coatcheck_store_set_owner(NULL, id, 32, "o", 1), N);
    CHECK_STATUS(coatcheck_store_clear_owner(NULL, id, 32), N);
    CHECK_STATUS(coatcheck_store_sessions_of(NULL, "o", 1, buf, sizeof buf, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_count_of(NULL, "o", 1, &len), N);
    CHECK_STATUS(coatcheck_store_destroy_owner(NULL, "o", 1, NULL, 0, &len), N);
    CHECK_STATUS(coatcheck_store_sign(NULL, id, 32, buf, sizeof buf, &len), N);
    CHECK_STATUS(coatcheck_store_unsign(NULL, buf, 1, &len), N);

    /* NULL required out-parameters. */
    CHECK_STATUS(coatcheck_store_create(store, BYTES("v"), 1, 0, buf, sizeof buf, NULL), N);
    CHECK_STATUS(coatcheck_store_get(store, id, 32, value, sizeof value, NULL, NULL), N);
    CHECK_STATUS(coatcheck_store_peek(store, id, 32, value, sizeof value, NULL, NULL), N);
    CHECK_STATUS(coatcheck_store_regenerate(store, id, 32, buf, sizeof buf, NULL), N);
    CHECK_STATUS(coatcheck_store_len(store, NULL), N);
    CHECK_STATUS(coatcheck_store_stats(store, NULL), N);
    CHECK_STATUS(coatcheck_store_sessions_of(store, "o", 1, buf, sizeof buf, NULL, NULL), N);
    CHECK_STATUS(coatcheck_store_count_of(store, "o", 1, NULL), N);
    CHECK_STATUS(coatcheck_store_sign(store, id, 32, buf, sizeof buf, NULL), N);
    CHECK_STATUS(coatcheck_store_unsign(store, buf, 1, NULL), N);

    /* NULL buffers with a non-zero length. */
    CHECK_STATUS(coatcheck_store_create(store, NULL, 1, 0, buf, sizeof buf, &len), N);
    CHECK_STATUS(coatcheck_store_create(store, BYTES("v"), 1, 0, NULL, 32, &len), N);
    CHECK_STATUS(coatcheck_store_get(store, NULL, 32, value, sizeof value, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_get(store, id, 32, NULL, 8, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_peek(store, id, 32, NULL, 8, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_set(store, id, 32, NULL, 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_update(store, id, 32, NULL, 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_set_if_version(store, id, 32, NULL, 1, 1, 0, NULL), N);
    CHECK_STATUS(coatcheck_store_touch(store, NULL, 32, 0), N);
    CHECK_STATUS(coatcheck_store_destroy(store, NULL, 32), N);
    CHECK_STATUS(coatcheck_store_regenerate(store, id, 32, NULL, 32, &len), N);
    CHECK_STATUS(coatcheck_store_set_owner(store, id, 32, NULL, 1), N);
    CHECK_STATUS(coatcheck_store_sessions_of(store, "o", 1, NULL, 8, &len, NULL), N);
    CHECK_STATUS(coatcheck_store_destroy_owner(store, "o", 1, NULL, 32, &len), N);
    CHECK_STATUS(coatcheck_store_sign(store, id, 32, NULL, 80, &len), N);
    CHECK_STATUS(coatcheck_store_unsign(store, NULL, 80, &len), N);

    /* A length no buffer can have is refused before anything reads it. */
    CHECK_STATUS(coatcheck_store_set(store, id, 32, value, huge, 0, NULL), COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_get(store, id, huge, value, sizeof value, &len, NULL), COATCHECK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(coatcheck_store_unsign(store, buf, huge, &len), COATCHECK_STATUS_INVALID_ARGUMENT);

    /* Nothing above changed the one session. */
    CHECK_OK(coatcheck_store_len(store, &len));
    CHECK(len == 1);
    CHECK_OK(coatcheck_store_get(store, id, 32, value, sizeof value, &len, NULL));
    CHECK(len == 1 && value[0] == 'v');
    coatcheck_store_free(store);
}

/* persist_path: sessions survive the store being freed and built again on the same directory;
 * a second store on a directory in use, or a log together with Redis, is an invalid config. */
static void test_persist(void) {
    char dir[] = "/tmp/coatcheck-c-persist-XXXXXX";
    char path[64], gone[64], cmd[96];
    coatcheck_config config = quiet_config();
    coatcheck_store *store, *second = NULL;
    uint64_t version = 0;
    char value[64], why[256];
    coatcheck_stats stats;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/sessions", dir);
    config.persist_path = path;
    config.persist_fsync = COATCHECK_FSYNC_NEVER;
    store = new_store(&config);
    CHECK_OK(coatcheck_store_set(store, "kept", 4, BYTES("across restarts"), 15, 0, &version));
    CHECK(version == 1);
    CHECK_STATUS(coatcheck_store_new(&config, &second), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK(second == NULL);
    coatcheck_store_free(store);

    store = new_store(&config);
    CHECK_OK(read_value(store, "kept", false, value, sizeof value, &version));
    CHECK(strcmp(value, "across restarts") == 0 && version == 1);
    CHECK_OK(coatcheck_store_stats(store, &stats));
    CHECK(stats.log_enabled && stats.log_restored == 1 && stats.log_failures == 0);
    CHECK(stats.tier_enabled == false);
    coatcheck_store_free(store);

    /* close: the final snapshot is written and reported; the handle stays readable, refuses
     * changes, and no longer holds the directory. */
    store = new_store(&config);
    CHECK_OK(coatcheck_store_close(store));
    CHECK_OK(read_value(store, "kept", false, value, sizeof value, &version));
    CHECK(strcmp(value, "across restarts") == 0);
    CHECK_STATUS(coatcheck_store_set(store, "later", 5, BYTES("x"), 1, 0, &version),
                 COATCHECK_STATUS_UNAVAILABLE);
    CHECK_OK(coatcheck_store_close(store));
    second = new_store(&config);
    CHECK_OK(read_value(second, "kept", false, value, sizeof value, &version));
    coatcheck_store_free(second);
    second = NULL;
    coatcheck_store_free(store);
    CHECK_STATUS(coatcheck_store_close(NULL), COATCHECK_STATUS_NULL_ARGUMENT);

    /* A final snapshot that cannot be written (its directory moved away) is reported. */
    store = new_store(&config);
    snprintf(gone, sizeof gone, "%s/moved-away", dir);
    CHECK(rename(path, gone) == 0);
    CHECK_OK(coatcheck_store_set(store, "unsaved", 7, BYTES("x"), 1, 0, &version));
    CHECK_STATUS(coatcheck_store_close(store), COATCHECK_STATUS_UNAVAILABLE);
    last_error(why, sizeof why);
    CHECK(strlen(why) > 0);
    coatcheck_store_free(store);

    config.redis_url = "redis://127.0.0.1:6379";
    CHECK_STATUS(coatcheck_store_new(&config, &second), COATCHECK_STATUS_INVALID_CONFIG);
    config.redis_url = NULL;
    config.persist_fsync = 7;
    CHECK_STATUS(coatcheck_store_new(&config, &second), COATCHECK_STATUS_INVALID_CONFIG);
    CHECK(second == NULL);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_version();
    test_status_text();
    test_config();
    test_default_config_store();
    test_create_get_peek();
    test_set_and_versions();
    test_update_never_brings_a_destroyed_session_back();
    test_last_error_message();
    test_touch_destroy_expiry();
    test_reads_that_do_not_slide();
    test_regenerate();
    test_len_clear_stats();
    test_owners();
    test_sign_unsign();
    test_budgets();
    test_gone_sessions();
    test_owner_bytes();
    test_unsign_odd_tokens();
    test_invalid_ids();
    test_null_arguments();
    test_persist();
    return check_report("test_api");
}
