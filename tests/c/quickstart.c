/* The README's C quick start: log a user in, then read the session back from the cookie token.
 * `make test-c` installs the library into a temporary prefix and builds this file with exactly
 *   cc quickstart.c $(pkg-config --cflags --libs coatcheck)                                   */
#include <stdio.h>
#include <string.h>

#include <coatcheck.h>

#define TRY(call)                                                                     \
    do {                                                                              \
        coatcheck_status status_ = (call);                                            \
        if (status_ != COATCHECK_STATUS_OK) {                                         \
            fprintf(stderr, "%s: %s\n", #call, coatcheck_status_message(status_));    \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(void) {
    static const char secret[] = "a long random secret, not this one";
    coatcheck_bytes secrets[1];
    coatcheck_config config;
    coatcheck_store *store = NULL;
    char id[COATCHECK_GENERATED_ID_LEN];
    char token[COATCHECK_GENERATED_TOKEN_LEN];
    unsigned char value[64];
    size_t id_len, token_len, value_len;

    secrets[0].data = (const unsigned char *)secret;
    secrets[0].len = strlen(secret);
    TRY(coatcheck_config_default(&config));
    config.secrets = secrets;
    config.secrets_len = 1;
    TRY(coatcheck_store_new(&config, &store)); /* one store per process, shared by all threads */

    /* POST /login: a new session, and a signed token to put in the cookie. */
    TRY(coatcheck_store_create(store, (const unsigned char *)"alice", 5, 0, id, sizeof id, &id_len));
    TRY(coatcheck_store_sign(store, id, id_len, token, sizeof token, &token_len));

    /* A later request: verify the cookie (the id is the token's first id_len bytes), then read. */
    TRY(coatcheck_store_unsign(store, token, token_len, &id_len));
    TRY(coatcheck_store_get(store, token, id_len, value, sizeof value, &value_len, NULL));
    printf("logged in as %.*s\n", (int)value_len, (const char *)value);

    coatcheck_store_free(store);
    return 0;
}
