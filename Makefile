# otlink — one-command toolchain. `make test` on a fresh machine sets up everything it needs.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
MPY   := $(VENV)/bin/micropython
BUILD := build
LIB   := $(BUILD)/lib
STAMP := $(VENV)/.installed

.PHONY: all setup venv umqtt stubs debs mp32 test demo bench sweep clean distclean mpy lint

all: test

setup: venv umqtt stubs debs mp32

$(STAMP): requirements.txt host_tools/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check -e host_tools
	touch $@

venv: $(STAMP)

$(LIB)/umqtt/simple.py: tools/fetch_umqtt.py | $(STAMP)
	$(PY) tools/fetch_umqtt.py $(LIB)

umqtt: $(LIB)/umqtt/simple.py

# Board API stubs for the portability check (kept apart: both define `machine`).
STUBS := $(BUILD)/stubs
$(STUBS)/.installed: requirements-stubs.txt | $(STAMP)
	rm -rf $(STUBS)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(STUBS)/esp32 \
		$$(grep esp32 requirements-stubs.txt)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(STUBS)/rp2 \
		$$(grep rp2 requirements-stubs.txt)
	touch $@

stubs: $(STUBS)/.installed

# Debian packages the tests use: the broker they start, the 32-bit C library for mp32, and
# the PostgreSQL server the historian tests start (their own, on a free port), and the NATS
# server of the scale-out tests (a 3-node JetStream cluster of their own).
debs:
	@bash tools/ensure_debs.sh mosquitto:mosquitto \
		influxd:influxdb \
		/usr/lib/gcc/x86_64-linux-gnu/12/32/crtbegin.o:gcc-multilib \
		/usr/lib/postgresql/15/bin/initdb:postgresql \
		nats-server:nats-server

# The 32-bit Unix MicroPython with the agent frozen in (the boards' object model), built from
# ../shared/toolchain's release tarball; one line says so when the tarball is absent.
mp32: umqtt debs
	@bash tools/build_mp32.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(VENV)/bin/otlink demo

bench: setup
	$(PY) tools/bench.py

sweep: setup
	$(PY) tools/bench.py --sweep -k queue

# Reliability runs (docs/reliability.md): fault injection on the whole node, a soak at a high
# reading rate on both builds, fuzzing of every input surface. Counts and time are options
# of each tool (--help); the defaults are the figures the doc quotes.
.PHONY: chaos soak fuzz
chaos: setup
	$(PY) tools/chaos.py

soak: setup
	$(PY) tools/soak.py

fuzz: setup
	$(PY) tools/fuzz.py

mpy: setup
	$(VENV)/bin/otlink deploy --board esp32 --dry-run --out $(BUILD)/mpy/esp32
	$(VENV)/bin/otlink deploy --board pico_w --dry-run --out $(BUILD)/mpy/pico_w

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(BUILD) .pytest_cache

distclean: clean
	rm -rf $(VENV)
