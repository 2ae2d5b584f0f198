#!/usr/bin/env bash
# Runs express-session's and @fastify/session's own test suites with CoatcheckStore as their
# default store. Their tests live only in their repositories, so this is run by hand before a
# release, not in CI; the figures go in the README's compatibility table.
#
#   tests/frameworks/node-suites.sh EXPRESS_SESSION_CHECKOUT FASTIFY_SESSION_CHECKOUT
#
# Each checkout is copied to a temporary directory, its default store (MemoryStore) replaced
# by CoatcheckStore from bindings/node (`make build-node` first), its dev dependencies
# installed with npm, and its suite run as its package.json runs it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
store="$repo/bindings/node"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp -r "$1" "$work/express-session"
cd "$work/express-session"
# The module's MemoryStore export and its default store both become CoatcheckStore.
sed -i "s|^exports.MemoryStore = MemoryStore;|exports.MemoryStore = require('$store')(exports);|" index.js
sed -i "s|var store = opts.store \|\| new MemoryStore()|var store = opts.store \|\| new exports.MemoryStore()|" index.js
grep -q "require('$store')" index.js
npm install --no-audit --no-fund --loglevel=error >/dev/null
./test/support/gencert.sh >/dev/null 2>&1 || true
echo "express-session $(node -p "require('./package.json').version"), test/session.js:"
npx mocha --require test/support/env --check-leaks --no-exit --reporter dot test/session.js 2>&1 | grep -E 'passing|failing|pending'

cp -r "$2" "$work/fastify-session"
cd "$work/fastify-session"
sed -i "s|opts.store = options.store \|\| new Store()|opts.store = options.store \|\| new (require('$store').CoatcheckStore)()|" index.js
grep -q "require('$store')" index.js
npm install --no-audit --no-fund --loglevel=error >/dev/null
echo "@fastify/session $(node -p "require('./package.json').version"), test/:"
node --test test/ 2>&1 | grep -E '^# (tests|pass|fail)|^not ok' || true
