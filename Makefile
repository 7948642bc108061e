# llmrl — a Redis module (and friends) for LLM API rate limits.
#   make run    build everything, start Redis with the module on 127.0.0.1, print how to call it
#   make test   build, then run every unit, property and integration test
#   make stop   stop what `make run` started

CARGO      ?= cargo
REDIS_PORT ?= 6379
RUN_DIR    := $(CURDIR)/run
MODULE     := $(CURDIR)/target/release/libllmrl.so

.PHONY: all build deps test lint run stop clean

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build --release --workspace

test: deps
	$(CARGO) build --release -p llmrl
	LLMRL_MODULE=$(MODULE) $(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

run: build stop
	@mkdir -p $(RUN_DIR)/redis
	@redis-server redis.conf --port $(REDIS_PORT) --daemonize yes \
		--pidfile $(RUN_DIR)/redis.pid --logfile $(RUN_DIR)/redis.log
	@for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done
	@redis-cli -p $(REDIS_PORT) ping >/dev/null || { echo "redis-server did not start, see $(RUN_DIR)/redis.log"; exit 1; }
	@echo
	@echo "Redis with llmrl is running on 127.0.0.1:$(REDIS_PORT) (log: run/redis.log, data: run/redis)."
	@echo "Try (limits: 3 requests, 1000 input and 500 output tokens per minute; this request: 120 in, 80 out):"
	@echo "  redis-cli -p $(REDIS_PORT) LLMRL.CHECK api:demo 3 1000 500 120 80"
	@echo "  redis-cli -p $(REDIS_PORT) LLMRL.PEEK api:demo 3 1000 500"
	@echo "  redis-cli -p $(REDIS_PORT) INFO llmrl"
	@echo "Stop with: make stop"

stop:
	@if [ -f $(RUN_DIR)/redis.pid ]; then \
		redis-cli -p $(REDIS_PORT) shutdown >/dev/null 2>&1 || kill $$(cat $(RUN_DIR)/redis.pid) 2>/dev/null || true; \
		for i in $$(seq 50); do [ -f $(RUN_DIR)/redis.pid ] || break; sleep 0.1; done; \
		rm -f $(RUN_DIR)/redis.pid; \
	fi

clean: stop
	$(CARGO) clean
	rm -rf $(RUN_DIR)
