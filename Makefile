# Orrery — two commands on a fresh machine:
#   make demo   installs what is missing, builds, starts a local cluster, writes images to ./out
#   make test   installs what is missing, builds, runs every test (unit, integration, chart)
SHELL := /bin/bash
.DEFAULT_GOAL := help
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEST_FLAGS := --test-concurrency=1 --test-timeout=300000

.PHONY: help deps install-nats-server build test test-unit test-integration demo bench clean

help:
	@echo "make demo    run a local cluster and generate images into ./out"
	@echo "make test    run every test"
	@echo "make bench   run the benchmarks (results in bench/results/)"
	@echo "make build   compile TypeScript into dist/"

# npm packages come from package-lock.json; .npmrc keeps onnxruntime-node from downloading CUDA binaries.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# Debian's nats-server (2.9, JetStream capable) when it is not installed.
install-nats-server:
	@command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { \
	  echo "installing nats-server (Debian package)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nats-server; }

deps: node_modules/.package-lock.json install-nats-server

build: deps
	npx tsc -p tsconfig.json

test: build
	node --test $(TEST_FLAGS) dist/test/unit/ dist/test/integration/ dist/test/chart/

test-unit: build
	node --test $(TEST_FLAGS) dist/test/unit/

test-integration: build
	node --test $(TEST_FLAGS) dist/test/integration/

demo: build
	node bin/orrery.js demo --out ./out

bench: build
	node dist/bench/run.js

clean:
	rm -rf dist out
