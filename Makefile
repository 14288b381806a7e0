# The two commands a newcomer needs (see README):
#   make run    install into .venv and start Lapis with the demo account
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test install node bench clean

run: install
	$(BIN)/lapis serve --demo

test: install node
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

bench: install
	$(BIN)/python bench/chat_throughput.py

clean:
	rm -rf $(VENV) tests/node/node_modules
