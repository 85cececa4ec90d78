# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
# Two installs, two stamps: `make demo` installs driftline and its runtime dependencies only
# (no torch, no pyspark: the demo uses neither); `make test` installs the dev, deep and spark
# extras on top. STAMP (the full install) is what the rest of the tooling looks for; a venv that
# has it also serves the demo. Both stamps carry pyproject.toml's checksum, so editing the
# dependencies reinstalls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CKSUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(CKSUM)
DEMO_STAMP := $(VENV)/.demo-installed-$(CKSUM)
DEMO_DIR ?= driftline-demo
# pip shows its own progress ("Collecting ...", "Downloading ... MB", a bar on a terminal);
# --no-compile: Python compiles what it imports on first use, not every module of ~130 packages.
PIP := $(BIN)/python -m pip install --progress-bar on --disable-pip-version-check --no-compile

.PHONY: demo test venv bench clean system-deps kernel

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing driftline with the dev, deep (torch) and spark extras for the tests (~3 GB on a fresh venv)"
	$(PIP) --quiet --upgrade pip
	$(PIP) -e '.[dev,deep,spark]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing driftline and its runtime dependencies for the demo (no torch, no pyspark)"
	$(PIP) --quiet --upgrade pip
	$(PIP) -e .
	rm -f $(VENV)/.demo-installed-*
	touch $(DEMO_STAMP)

# The compiled kernels (the profile kernel's passes, Wasserstein scoring), built ahead of time
# (core/kernel_build.py): a no-op when a build matches its source. Without a C compiler it says so
# and driftline compiles the same code just in time instead (a slower start and ~130 MiB more
# memory), so it never fails the make.
KERNELS ?= core.kernel_passes checks._cdf_kernels
kernel:
	-$(BIN)/python -m core.kernel_build $(KERNELS)

# The demo runs on whichever install is current: the full one when `make test` made it. It builds
# the profile kernel only: it scores far fewer than the 1,000 features that load the CDF kernel.
demo: $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))
	@$(MAKE) --no-print-directory kernel KERNELS=core.kernel_passes
	$(BIN)/driftline demo --workdir $(DEMO_DIR)

test: $(STAMP) system-deps kernel
	$(BIN)/python -m pytest

# Debian packages the tests run for real: Prometheus + promtool, Alertmanager + amtool,
# docker-compose (config validation only, no engine), a PostgreSQL server, Java 17 (the
# Spark engine's tests run Spark in local[2] mode) and Chromium (a served report is loaded
# headless to see that its policy lets it draw and stops injected script). Each binary maps to
# the package that provides it; apt installs only the packages of the binaries that are missing
# (nothing is upgraded: --no-upgrade); services it may start are stopped, so nothing holds the
# default ports (the tests start their own servers on 127.0.0.1 high ports). `make demo` needs none.
SYSTEM_DEPS := prometheus:prometheus promtool:prometheus gcc:gcc \
	prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
	docker-compose:docker-compose java:openjdk-17-jre-headless initdb:postgresql chromium:chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
INITDB_GLOB := /usr/lib/postgresql/*/bin/initdb

system-deps:
	@missing=""; packages=""; \
	for pair in $(SYSTEM_DEPS); do b=$${pair%%:*}; p=$${pair#*:}; \
	  if [ "$$b" = initdb ]; then ls $(INITDB_GLOB) >/dev/null 2>&1 && continue; \
	  else command -v $$b >/dev/null && continue; fi; \
	  missing="$$missing $$b"; case " $$packages " in *" $$p "*) ;; *) packages="$$packages $$p";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$packages (missing:$$missing)"; \
	  $(APT_GET) update -q && \
	  $(APT_GET) install -y -q --no-install-recommends --no-upgrade $$packages && \
	  for s in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do \
	    $(SUDO) service $$s stop >/dev/null 2>&1 || true; \
	    $(SUDO) update-rc.d $$s disable >/dev/null 2>&1 || true; \
	    $(SUDO) systemctl disable --now $$s >/dev/null 2>&1 || true; \
	  done; \
	fi

bench: $(STAMP) kernel
	$(BIN)/python -m bench.drift --rows 1000000

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .hypothesis
