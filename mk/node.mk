# Node: the npm package `coatcheck` (bindings/node) and the Express demo (examples/express).
NODE_DIR := bindings/node
DEMO_DIR := examples/express
NPM_INSTALL := npm ci --no-audit --no-fund --loglevel=error

.PHONY: node-deps build-node node-types-check test-node demo demo-deps bench-node

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

$(DEMO_DIR)/node_modules/.package-lock.json: $(DEMO_DIR)/package.json $(DEMO_DIR)/package-lock.json
	cd $(DEMO_DIR) && $(NPM_INSTALL)

demo-deps: build-node $(DEMO_DIR)/node_modules/.package-lock.json

test-node: build-node node-types-check demo-deps
	cd $(NODE_DIR) && node --test --test-concurrency=1 --test-timeout=60000 __test__/

## demo: the Express demo on http://127.0.0.1:3000 (Ctrl-C to stop)
demo: demo-deps
	cd $(DEMO_DIR) && node server.js

TEST_TARGETS += test-node
