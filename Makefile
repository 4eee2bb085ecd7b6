# Quick start:  make demo   (index the sample clips, run a search)
#               make test   (run the test suite)
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

.PHONY: install demo test clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PKGS)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/archive index tests/data --store $(DEMO_STORE)
	$(BIN)/archive info --store $(DEMO_STORE)
	$(BIN)/archive search "a cartoon character" "a tree" --image tests/data/megamind_frame.png --top 3 --store $(DEMO_STORE)

test: install
	$(BIN)/python -m pytest -q

clean-demo:
	rm -f $(DEMO_STORE)/catalog.duckdb $(DEMO_STORE)/frames.faiss $(DEMO_STORE)/writer.lock
