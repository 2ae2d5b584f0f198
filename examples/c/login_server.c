/* A small HTTP login server on libmicrohttpd that keeps its sessions in coatcheck.
 *
 *   POST /login   body "user=<name>": creates a session filed under that user and sets the
 *                 signed cookie `sid` (HttpOnly, SameSite=Lax). A previous session of this
 *                 browser is destroyed first.
 *   GET  /me      the session of the cookie, or 401 when the cookie is missing, tampered with,
 *                 or its session is gone.
 *   POST /logout  destroys the cookie's session and clears the cookie; 401 as for /me.
 *
 * Usage: login_server [PORT_FILE]. Listens on 127.0.0.1 only, on $PORT or else on a free port
 * chosen by the kernel, and writes the port number to PORT_FILE. The cookie secret comes from
 * $COATCHECK_SECRET. SIGINT or SIGTERM stops it cleanly.
 *
 * One coatcheck store serves every connection thread of the daemon's thread pool.
 *
 * Build: cc -std=c99 login_server.c $(pkg-config --cflags --libs libmicrohttpd coatcheck) */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include <coatcheck.h>

#define MAX_BODY 1024
#define MAX_USER 64
#define COOKIE "sid"
#define COOKIE_ATTRIBUTES "; Path=/; HttpOnly; SameSite=Lax"

static coatcheck_store *store;

/* Per-request state: the request body, collected across upload callbacks. */
struct request {
    char body[MAX_BODY + 1];
    size_t len;
    bool too_large;
};

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *body,
                               const char *set_cookie) {
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result result;
    if (response == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (set_cookie != NULL) {
        MHD_add_response_header(response, MHD_HTTP_HEADER_SET_COOKIE, set_cookie);
    }
    result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, unsigned status, uint32_t code) {
    char body[128];
    snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", coatcheck_status_name(code));
    return respond(conn, status, body, NULL);
}

/* The session id inside the request's cookie. On success the id is the first *id_len bytes
 * of *token (unsign does not copy). */
static coatcheck_status session_of(struct MHD_Connection *conn, const char **token, size_t *id_len) {
    const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
    if (cookie == NULL || cookie[0] == '\0') {
        return COATCHECK_STATUS_NOT_FOUND;
    }
    *token = cookie;
    return coatcheck_store_unsign(store, cookie, strlen(cookie), id_len);
}

/* "user=<name>" with 1 to 64 characters from [A-Za-z0-9_.-]. */
static bool parse_user(const char *body, char user[MAX_USER + 1]) {
    size_t n = 0;
    if (strncmp(body, "user=", 5) != 0) {
        return false;
    }
    body += 5;
    while (body[n] != '\0' && body[n] != '&') {
        char c = body[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        if (!ok || n == MAX_USER) {
            return false;
        }
        user[n] = c;
        n++;
    }
    user[n] = '\0';
    return n > 0;
}

static enum MHD_Result login(struct MHD_Connection *conn, const struct request *req) {
    char user[MAX_USER + 1];
    char value[MAX_USER + 32];
    char id[COATCHECK_GENERATED_ID_LEN];
    char token[COATCHECK_GENERATED_TOKEN_LEN];
    char cookie[sizeof COOKIE + COATCHECK_GENERATED_TOKEN_LEN + sizeof COOKIE_ATTRIBUTES + 1];
    const char *old_token = NULL;
    size_t id_len = 0, token_len = 0, old_id_len = 0;
    coatcheck_status status;
    int value_len;

    if (req->too_large || !parse_user(req->body, user)) {
        return respond(conn, MHD_HTTP_BAD_REQUEST, "{\"error\":\"expected user=<name>\"}\n", NULL);
    }
    /* Logging in again from the same browser replaces its session (no fixation, no orphan). */
    if (session_of(conn, &old_token, &old_id_len) == COATCHECK_STATUS_OK) {
        coatcheck_store_destroy(store, old_token, old_id_len);
    }
    value_len = snprintf(value, sizeof value, "{\"user\":\"%s\"}\n", user);
    status = coatcheck_store_create(store, (const uint8_t *)value, (size_t)value_len, 0, id, sizeof id, &id_len);
    if (status == COATCHECK_STATUS_OK) {
        status = coatcheck_store_set_owner(store, id, id_len, user, strlen(user));
    }
    if (status == COATCHECK_STATUS_OK) {
        status = coatcheck_store_sign(store, id, id_len, token, sizeof token, &token_len);
    }
    if (status != COATCHECK_STATUS_OK) {
        fprintf(stderr, "login: %s\n", coatcheck_status_message(status));
        return respond_error(conn, status == COATCHECK_STATUS_STORE_FULL ? 503 : 500, status);
    }
    snprintf(cookie, sizeof cookie, COOKIE "=%.*s" COOKIE_ATTRIBUTES, (int)token_len, token);
    return respond(conn, MHD_HTTP_OK, value, cookie);
}

static enum MHD_Result me(struct MHD_Connection *conn) {
    const char *token = NULL;
    size_t id_len = 0, len = 0;
    char value[MAX_BODY];
    coatcheck_status status = session_of(conn, &token, &id_len);
    if (status == COATCHECK_STATUS_OK) {
        status = coatcheck_store_get(store, token, id_len, (uint8_t *)value, sizeof value - 1, &len, NULL);
    }
    if (status != COATCHECK_STATUS_OK) {
        return respond_error(conn, MHD_HTTP_UNAUTHORIZED, status);
    }
    value[len] = '\0';
    return respond(conn, MHD_HTTP_OK, value, NULL);
}

static enum MHD_Result logout(struct MHD_Connection *conn) {
    const char *token = NULL;
    size_t id_len = 0;
    coatcheck_status status = session_of(conn, &token, &id_len);
    if (status == COATCHECK_STATUS_OK) {
        status = coatcheck_store_destroy(store, token, id_len);
    }
    if (status != COATCHECK_STATUS_OK) {
        return respond_error(conn, MHD_HTTP_UNAUTHORIZED, status);
    }
    return respond(conn, MHD_HTTP_OK, "{\"logged_out\":true}\n", COOKIE "=" COOKIE_ATTRIBUTES "; Max-Age=0");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **req_cls) {
    struct request *req = (struct request *)*req_cls;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    (void)cls;
    (void)version;
    if (req == NULL) { /* first call for this request: headers only */
        req = (struct request *)calloc(1, sizeof *req);
        if (req == NULL) {
            return MHD_NO;
        }
        *req_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* a piece of the body */
        size_t n = *upload_data_size;
        if (req->len + n > MAX_BODY) {
            req->too_large = true;
        } else {
            memcpy(req->body + req->len, upload_data, n);
            req->len += n;
            req->body[req->len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/login") == 0) {
        return post ? login(conn, req) : respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{}\n", NULL);
    }
    if (strcmp(url, "/me") == 0) {
        return strcmp(method, MHD_HTTP_METHOD_GET) == 0 ? me(conn)
                                                         : respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{}\n", NULL);
    }
    if (strcmp(url, "/logout") == 0) {
        return post ? logout(conn) : respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{}\n", NULL);
    }
    return respond(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"no such page\"}\n", NULL);
}

static void request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode why) {
    (void)cls;
    (void)conn;
    (void)why;
    free(*req_cls);
    *req_cls = NULL;
}

/* Writes the port to `path` through a temporary file, so a reader never sees half of it. */
static int write_port_file(const char *path, unsigned port) {
    char tmp[4096];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0) {
        return -1;
    }
    return rename(tmp, path);
}

int main(int argc, char **argv) {
    const char *secret = getenv("COATCHECK_SECRET");
    const char *port_env = getenv("PORT");
    coatcheck_bytes secrets[1];
    coatcheck_config config;
    coatcheck_status status;
    struct sockaddr_in addr;
    struct MHD_Daemon *daemon;
    const union MHD_DaemonInfo *info;
    sigset_t stop_signals;
    int sig = 0;

    if (secret == NULL || secret[0] == '\0') {
        fprintf(stderr, "set COATCHECK_SECRET to the cookie signing secret\n");
        return 2;
    }
    secrets[0].data = (const uint8_t *)secret;
    secrets[0].len = strlen(secret);
    /* Block the stop signals in every thread, before any is started: the store's and the
     * daemon's threads inherit the mask, so only the main thread, in sigwait, takes them (a
     * signal delivered to another thread would end the process without freeing the store). */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    coatcheck_config_default(&config);
    config.idle_timeout_ms = 30u * 60u * 1000u;
    config.max_sessions = 100000;
    config.secrets = secrets;
    config.secrets_len = 1;
    status = coatcheck_store_new(&config, &store);
    if (status != COATCHECK_STATUS_OK) {
        char why[1024];
        size_t why_len = 0;
        if (coatcheck_last_error_message(why, sizeof why, &why_len) != COATCHECK_STATUS_OK) why_len = 0;
        fprintf(stderr, "coatcheck_store_new: %s: %.*s\n", coatcheck_status_message(status), (int)why_len, why);
        return 1;
    }

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)(port_env != NULL ? atoi(port_env) : 0));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, NULL,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
                              (unsigned)4, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "could not start the HTTP daemon\n");
        coatcheck_store_free(store);
        return 1;
    }
    info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("coatcheck %s login server on http://127.0.0.1:%u\n", coatcheck_version(), (unsigned)info->port);
    fflush(stdout);
    if (argc > 1 && write_port_file(argv[1], info->port) != 0) {
        perror("port file");
        MHD_stop_daemon(daemon);
        coatcheck_store_free(store);
        return 1;
    }

    sigwait(&stop_signals, &sig);
    MHD_stop_daemon(daemon);
    coatcheck_store_free(store);
    printf("stopped on signal %d\n", sig);
    return 0;
}
