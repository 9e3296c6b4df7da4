# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Both start from a machine with Python 3.11 and nothing else: they create .venv and install into it.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch is installed first and pinned here only: package metadata says torch>=2.4.
TORCH := torch==2.13.0
PACKAGES := -e "packages/common[app]" -e packages/dataprep -e packages/llava_vqa -e packages/captioning -e packages/contrastive
TEST_TOOLS := "pytest>=8" "pytest-httpserver>=1.0"
STAMP := $(VENV)/.radtune-installed

.PHONY: install test demo lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python packages/*/pyproject.toml Makefile
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install $(PACKAGES) $(TEST_TOOLS)
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -m "not gpu"

demo: install
	bash scripts/demo.sh

lint: install
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check packages tests benchmarks

clean:
	rm -rf $(VENV) runs/demo
