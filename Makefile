# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_DIR ?= driftline-demo

.PHONY: demo test venv bench clean system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,deep,spark]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo --workdir $(DEMO_DIR)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# Debian packages the tests run for real: Prometheus + promtool, Alertmanager + amtool,
# docker-compose (config validation only, no engine), a PostgreSQL server, Java 17 (the
# Spark engine's tests run Spark in local[2] mode) and Chromium (a served report is loaded
# headless to see that its policy lets it draw and stops injected script). apt runs only
# when a binary is missing; services it may start are stopped, so nothing holds the default
# ports (the tests start their own servers on 127.0.0.1 high ports). `make demo` needs none.
SYSTEM_BINS := prometheus promtool prometheus-alertmanager amtool docker-compose java chromium
SYSTEM_PKGS := prometheus prometheus-alertmanager docker-compose postgresql openjdk-17-jre-headless chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@missing=""; for b in $(SYSTEM_BINS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing initdb"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PKGS) && \
	  for s in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do \
	    $(SUDO) service $$s stop >/dev/null 2>&1 || true; \
	    $(SUDO) update-rc.d $$s disable >/dev/null 2>&1 || true; \
	    $(SUDO) systemctl disable --now $$s >/dev/null 2>&1 || true; \
	  done; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench.drift --rows 1000000

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .hypothesis
