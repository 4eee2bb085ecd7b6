# Quick start:  make demo       (index the sample clips, run a search)
#               make eval-demo  (measure the answers against labelled truth)
#               make versions-demo  (versions of the same ad: which videos share footage, and where)
#               make test       (lint, then the whole test suite and the docs build)
# Offline (no model hub): ARCHIVE_PRETRAINED=none make demo

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH_PKGS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
endif
DEMO_STORE ?= data
EVAL_DEMO ?= eval-demo
VERSIONS_DEMO ?= versions-demo

.PHONY: install demo eval-demo versions-demo test test-fast lint clean-demo browser espeak

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PKGS)
	$(BIN)/python -m pip install -q -e '.[test,ray,speech,ocr]'
	$(BIN)/python -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4  # ARCHIVE_OCR_MODELS=PP-OCRv4 (deps: in pyproject)
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/archive index tests/data --store $(DEMO_STORE)
	$(BIN)/archive info --store $(DEMO_STORE)
	$(BIN)/archive search "a cartoon character" "a tree" --image tests/data/megamind_frame.png --top 3 --store $(DEMO_STORE)
	@echo "Now look instead of read: $(BIN)/archive serve --store $(DEMO_STORE)  (then open http://127.0.0.1:8000/)"

# Four ads cut from the sample clips, a still of each shot, and two truth files (one right, one
# with three mistakes); index them, then measure the answers against each truth file.
eval-demo: install
	$(BIN)/python tests/gen/evalads.py $(EVAL_DEMO)
	$(BIN)/archive index $(EVAL_DEMO)/ads --store $(EVAL_DEMO)/store --quiet
	$(BIN)/archive eval $(EVAL_DEMO)/truth.csv --store $(EVAL_DEMO)/store --plot $(EVAL_DEMO)/eval.png
	$(BIN)/archive eval $(EVAL_DEMO)/truth_with_mistakes.csv --store $(EVAL_DEMO)/store --plot $(EVAL_DEMO)/mistakes.png

versions-demo: install
	$(BIN)/python tests/gen/versionads.py $(VERSIONS_DEMO) --families 2 --distractors 3
	$(BIN)/archive index $(VERSIONS_DEMO)/videos --store $(VERSIONS_DEMO)/store --quiet
	$(BIN)/archive versions --store $(VERSIONS_DEMO)/store
	$(BIN)/archive versions film0_cutdown.mp4 --store $(VERSIONS_DEMO)/store
	$(BIN)/archive search --like-video $(VERSIONS_DEMO)/videos/film1_bumper.mp4 --store $(VERSIONS_DEMO)/store

# The browser test drives Debian's Chromium (Playwright with executablePath); installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$ARCHIVE_CHROMIUM" ] || { \
	  echo "installing chromium for the browser test (apt-get)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The speech tests and benchmark make their voice-overs with Debian's espeak-ng; installed when missing.
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  echo "installing espeak-ng for the speech tests (apt-get)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }

# Style (ruff), the import contracts (no circles; the floors and their rooms: pyproject.toml) and the
# types of the store and the read path (mypy).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The inner loop: the unit-level tests, without the slow ones (processes, Chromium, Ray, OCR, TransNetV2,
# speech; the `slow` marker) and without installing Chromium. The 15 slowest tests are listed at the end.
test-fast: install espeak
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

test: install browser espeak lint
	$(BIN)/python -m pytest -q
	d=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir "$$d" && rm -rf "$$d"

.PHONY: docs
# The generated pages of the docs site (CLI, settings, catalog tables, make targets, layout), from the code.
docs: install
	$(BIN)/python docs/gen_ref.py

clean-demo:
	rm -rf $(DEMO_STORE)/catalog.duckdb $(DEMO_STORE)/catalog.duckdb.wal $(DEMO_STORE)/frames.faiss $(DEMO_STORE)/vectors $(DEMO_STORE)/thumbs.bin $(DEMO_STORE)/writer.lock
