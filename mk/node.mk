# Node: the npm package `coatcheck` (bindings/node) and the Express demo (examples/express).
NODE_DIR := bindings/node
DEMO_DIR := examples/express
# `npm ci` rejects lock files written without other platforms' optional packages; install
# resolves the same versions from the committed lock.
NPM_INSTALL := npm install --no-audit --no-fund --loglevel=error

.PHONY: node-deps build-node node-types-check test-node test-node-package demo demo-deps bench-node

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && $(NPM_INSTALL)

node-deps: $(NODE_DIR)/node_modules/.package-lock.json

## build-node: the addon in place, so require('./bindings/node') works from the repository root
build-node: node-deps
	cd $(NODE_DIR) && npx napi build --platform --release --js native.js --dts native.d.ts

# native.js / native.d.ts are generated and committed: a rebuild must not change them, and the
# hand-written index.d.ts must type-check against them and against real usage.
node-types-check: build-node
	git diff --exit-code -- $(NODE_DIR)/native.js $(NODE_DIR)/native.d.ts
	cd $(NODE_DIR) && npx tsc -p tsconfig.json
	@# Without express-session's types in the program, index.d.ts must still compile.
	cd $(NODE_DIR) && npx tsc -p tsconfig.standalone.json --listFiles > .tsc-standalone-files && \
	  ! grep express-session .tsc-standalone-files && rm .tsc-standalone-files

$(DEMO_DIR)/node_modules/.package-lock.json: $(DEMO_DIR)/package.json $(DEMO_DIR)/package-lock.json
	cd $(DEMO_DIR) && $(NPM_INSTALL)

demo-deps: build-node $(DEMO_DIR)/node_modules/.package-lock.json

test-node: build-node node-types-check demo-deps redis-deps
	cd $(NODE_DIR) && node --test --test-concurrency=1 --test-timeout=300000 __test__/

## demo: the Express demo on http://127.0.0.1:3000 (Ctrl-C to stop)
demo: demo-deps
	cd $(DEMO_DIR) && node server.js

# The package as users install it: npm pack, installed into a fresh app outside the repository.
test-node-package: build-node
	bash tests/packaging/npm-pack.sh

TEST_TARGETS += test-node test-node-package

BENCH_NODE_DIR := benches/node

$(BENCH_NODE_DIR)/node_modules/.package-lock.json: $(BENCH_NODE_DIR)/package.json $(BENCH_NODE_DIR)/package-lock.json
	cd $(BENCH_NODE_DIR) && $(NPM_INSTALL)

# connect-redis is measured against a real redis-server (Debian's), started by the scripts.
redis-server-installed:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

## bench-node: store ops (in-process and on Redis), the restart log's cost, HTTP (autocannon), memory per session and churn (writes churn.svg)
bench-node: build-node redis-server-installed $(BENCH_NODE_DIR)/node_modules/.package-lock.json
	cd $(BENCH_NODE_DIR) && node bench-store.js
	cd $(BENCH_NODE_DIR) && node bench-tier.js
	cd $(BENCH_NODE_DIR) && node bench-save-path.js
	cd $(BENCH_NODE_DIR) && node --expose-gc bench-persist.js
	cd $(BENCH_NODE_DIR) && node bench-http.js
	cd $(BENCH_NODE_DIR) && node bench-http-cluster.js
	cd $(BENCH_NODE_DIR) && node bench-memory.js
	cd $(BENCH_NODE_DIR) && node bench-churn.js churn.svg

BENCH_TARGETS += bench-node
.PHONY: redis-server-installed
