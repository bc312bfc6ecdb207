# agentplatform — the commands a fresh machine needs.
PYTHON ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test bench validate clean browser sip-peers fuzz bench-voices
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM ?= /usr/bin/chromium

install: $(STAMP)

$(STAMP): pyproject.toml setup.py agentplatform/audio/_polyphase.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Offline, no keys needed: agents whose provider has no key still load (and say so).
run: install
	$(VENV)/bin/agentplatform serve --host 127.0.0.1 --port 8000

# PostgreSQL and Redis are started by the tests if stopped (tests/services.py); under
# make test their tests fail rather than skip when they cannot run, and so do the
# resampler's when its compiled kernel was not built. -rs prints skip reasons.
test: install browser sip-peers
	AGENTPLATFORM_CHROMIUM=$(CHROMIUM) AGENTPLATFORM_REQUIRE_BROWSER=1 \
	AGENTPLATFORM_REQUIRE_SERVICES=1 AGENTPLATFORM_REQUIRE_COMPILED=1 $(PY) -m pytest -q -rs

# Debian's chromium for the admin-screen browser tests; installed once, as root or via sudo.
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "the browser tests need Chromium: apt-get install chromium" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The SIP carrier's real peers, sipp (Debian's sip-tester) and baresip; installed once, like Chromium.
sip-peers:
	@command -v sipp >/dev/null && command -v baresip >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "the SIP tests need sipp and baresip: apt-get install sip-tester baresip" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq sip-tester baresip; }

# At least 100,000 Twilio Media Streams frames, in whole fuzzed calls, through the parser,
# the stream and the bridge; prints the count, the crashes and the bad frames by kind.
fuzz: install
	$(PY) -m agentplatform.testing.fuzz_carriers 100000

bench: install bench-voices
	$(VENV)/bin/agentplatform bench

# A second synthesizer (Debian's espeak-ng) speaks the recognition table's questions, so
# its word error rate is not one voice's; installed once, like Chromium.
bench-voices:
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "the recognition table needs espeak-ng: apt-get install espeak-ng" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng; }

validate: install
	$(VENV)/bin/agentplatform agents validate

clean:
	rm -rf $(VENV) *.db
