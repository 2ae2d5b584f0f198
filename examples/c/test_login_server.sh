#!/usr/bin/env bash
# Drives the example login server over HTTP with curl, on 127.0.0.1 only: login sets a signed
# HttpOnly/SameSite cookie, /me reads the session, a tampered cookie gets 401, logout destroys
# the session. The server is stopped by its PID on every exit path (trap), and every wait and
# request is bounded in time.
# Usage: examples/c/test_login_server.sh path/to/login-server
set -euo pipefail

server=${1:?usage: $0 path/to/login-server}
work=$(mktemp -d)
pid=""

stop_server() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- server log" >&2
    cat "$work/log" >&2 || true
    exit 1
}

# request NAME CURL_ARGS...: runs curl; body in $work/NAME.body, headers in $work/NAME.headers,
# prints the HTTP status.
request() {
    local name=$1
    shift
    curl --silent --show-error --max-time 5 --noproxy '*' \
        -o "$work/$name.body" -D "$work/$name.headers" -w '%{http_code}' "$@"
}

expect_status() {
    local want=$1 got=$2 what=$3
    [ "$got" = "$want" ] || fail "$what: HTTP $got, expected $want ($(cat "$work"/*.body 2>/dev/null | tail -1))"
    echo "ok: $what -> $got"
}

COATCHECK_SECRET="test secret $$" "$server" "$work/port" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the server exited during startup"
    sleep 0.1
done
[ -s "$work/port" ] || fail "the server did not report its port within 10 s"
port=$(cat "$work/port")
base="http://127.0.0.1:$port"
echo "server pid $pid on $base"

expect_status 401 "$(request anon "$base/me")" "GET /me without a cookie"
grep -q '"not_found"' "$work/anon.body" || fail "anonymous /me body: $(cat "$work/anon.body")"

expect_status 400 "$(request bad --data 'user=a b' "$base/login")" "POST /login with a bad user name"

expect_status 200 "$(request login --data 'user=alice' "$base/login")" "POST /login"
cookie=$(grep -i '^set-cookie: sid=' "$work/login.headers" | tr -d '\r') || fail "no sid cookie set"
echo "$cookie" | grep -q '; HttpOnly' || fail "cookie is not HttpOnly: $cookie"
echo "$cookie" | grep -q '; SameSite=Lax' || fail "cookie has no SameSite: $cookie"
token=$(echo "$cookie" | sed -e 's/^[Ss]et-[Cc]ookie: sid=//' -e 's/;.*//')
[ ${#token} -eq 76 ] || fail "token is ${#token} bytes, expected 76: $token"

expect_status 200 "$(request me --cookie "sid=$token" "$base/me")" "GET /me with the cookie"
grep -q '"user":"alice"' "$work/me.body" || fail "/me body: $(cat "$work/me.body")"

# Tampered cookies: one character of the signature changed, one of the id changed, garbage.
last=${token: -1}
if [ "$last" = A ]; then swap=B; else swap=A; fi
expect_status 401 "$(request forged --cookie "sid=${token%?}$swap" "$base/me")" "GET /me with a forged signature"
grep -q '"bad_signature"' "$work/forged.body" || fail "forged /me body: $(cat "$work/forged.body")"
first=${token:0:1}
if [ "$first" = a ]; then swap=b; else swap=a; fi
expect_status 401 "$(request forged_id --cookie "sid=$swap${token:1}" "$base/me")" "GET /me with a changed id"
expect_status 401 "$(request garbage --cookie "sid=not-a-token" "$base/me")" "GET /me with garbage"

# A second login of the same user from another browser is a separate session.
expect_status 200 "$(request login2 --data 'user=alice' "$base/login")" "second POST /login"
token2=$(grep -i '^set-cookie: sid=' "$work/login2.headers" | tr -d '\r' | sed -e 's/^[Ss]et-[Cc]ookie: sid=//' -e 's/;.*//')
[ "$token2" != "$token" ] || fail "second login reused the session"

expect_status 200 "$(request logout -X POST --cookie "sid=$token" "$base/logout")" "POST /logout"
grep -qi '^set-cookie: sid=;.*Max-Age=0' "$work/logout.headers" || fail "logout did not clear the cookie"
expect_status 401 "$(request after --cookie "sid=$token" "$base/me")" "GET /me after logout"
grep -q '"not_found"' "$work/after.body" || fail "/me after logout body: $(cat "$work/after.body")"
expect_status 401 "$(request again -X POST --cookie "sid=$token" "$base/logout")" "POST /logout twice"
expect_status 200 "$(request other --cookie "sid=$token2" "$base/me")" "the other browser is still logged in"

expect_status 404 "$(request missing "$base/nope")" "GET /nope"
expect_status 405 "$(request method "$base/login")" "GET /login"

# Stop by PID: SIGTERM makes the server free its store and exit 0.
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || fail "server exited with $status after SIGTERM"
grep -q '^stopped on signal' "$work/log" || fail "server did not report a clean stop"
echo "login server example: all checks passed"
