# agentplatform — the commands a fresh machine needs.
PYTHON ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test bench validate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Offline, no keys needed: agents whose provider has no key still load (and say so).
run: install
	$(VENV)/bin/agentplatform serve --host 127.0.0.1 --port 8000

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/agentplatform bench

validate: install
	$(VENV)/bin/agentplatform agents validate

clean:
	rm -rf $(VENV) *.db
