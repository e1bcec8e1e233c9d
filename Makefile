# Orrery — two commands on a fresh machine:
#   make demo   installs what is missing, builds, starts a local cluster, writes images to ./out
#   make test   installs what is missing, builds, runs every test (unit, integration, chart)
SHELL := /bin/bash
.DEFAULT_GOAL := help
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Installs the Debian packages named in $$missing (a shell variable of the recipe using it).
APT_INSTALL_MISSING := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing
TEST_FLAGS := --test-concurrency=1 --test-timeout=300000

.PHONY: help deps install-debian-packages install-bench-packages build test test-unit test-integration demo bench clean

help:
	@echo "make demo    run a local cluster and generate images into ./out"
	@echo "make test    run every test"
	@echo "make bench   run the benchmarks (results in bench/results/)"
	@echo "make build   compile TypeScript into dist/"

# npm packages come from package-lock.json; .npmrc keeps onnxruntime-node from downloading CUDA binaries.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
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

test: build
	node --test $(TEST_FLAGS) dist/test/unit/ dist/test/integration/ dist/test/chart/

test-unit: build
	node --test $(TEST_FLAGS) dist/test/unit/

test-integration: build
	node --test $(TEST_FLAGS) dist/test/integration/

demo: build
	node bin/orrery.js demo --out ./out

bench: build install-bench-packages
	node dist/bench/run.js

clean:
	rm -rf dist out
