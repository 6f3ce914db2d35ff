# otlink — one-command toolchain. `make test` on a fresh machine sets up everything it needs.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
MPY   := $(VENV)/bin/micropython
BUILD := build
LIB   := $(BUILD)/lib
STAMP := $(VENV)/.installed

.PHONY: all setup venv umqtt mosquitto test test-firmware test-host demo bench sweep clean mpy lint

all: test

setup: venv umqtt mosquitto

$(STAMP): requirements.txt host_tools/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check -e host_tools
	touch $@

venv: $(STAMP)

$(LIB)/umqtt/simple.py: tools/fetch_umqtt.py | $(STAMP)
	$(PY) tools/fetch_umqtt.py $(LIB)

umqtt: $(LIB)/umqtt/simple.py

mosquitto:
	@bash tools/ensure_mosquitto.sh

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(VENV)/bin/otlink demo

bench: setup
	$(PY) -m otlink_tools.bench

sweep: setup
	$(PY) -m otlink_tools.bench --sweep

mpy: setup
	$(PY) tools/build_mpy.py firmware $(BUILD)/mpy

clean:
	rm -rf $(BUILD) .pytest_cache

distclean: clean
	rm -rf $(VENV)
