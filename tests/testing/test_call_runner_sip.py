"""``agentplatform call --sip``: a whole simulated call over SIP/RTP from the command line."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from agentplatform import cli
from agentplatform.config import get_settings

AGENTS = Path(__file__).resolve().parents[2] / "agents"


@pytest.fixture
def repo_agents(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AGENTS_DIR", str(AGENTS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_call_over_sip_prints_the_transcript_and_writes_what_the_caller_heard(
        repo_agents, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "heard.wav"
    code = cli.main(["call", "front-desk-realtime", "--simulated-model", "--sip",
                     "--turns", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "over SIP to 127.0.0.1:" in printed
    # The server's figure, as the call page shows it, with where the time went.
    assert "ms caller stopped → first answer audio on the line (end-of-turn wait" in printed
    assert "ended: caller_hung_up" in printed
    assert "user: Hi, I'd like to book an appointment." in printed
    with wave.open(str(out)) as heard:
        assert heard.getframerate() == 8000 and heard.getnframes() > 8000  # over a second heard


def test_call_with_a_bare_sip_and_a_url_is_refused_naming_both(
        repo_agents, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["call", "front-desk-realtime", "--sip", "--url", "http://127.0.0.1:9"])
    assert code == 2
    assert "--sip HOST:PORT with --url" in capsys.readouterr().out


@pytest.mark.parametrize("address", ["5060", "host:", "host:port", "host:70000"])
def test_call_with_a_sip_address_that_is_not_host_port_is_refused_naming_it(
        address: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["call", "front-desk-realtime", "--sip", address])
    assert exited.value.code == 2
    assert f"--sip wants HOST:PORT, got {address!r}" in capsys.readouterr().err
