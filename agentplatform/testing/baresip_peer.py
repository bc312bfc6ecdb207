"""Runs baresip (Debian's package) as a real softphone calling over SIP, for tests.

baresip is a complete SIP/RTP phone with its own jitter buffer and codecs; a call
it completes is a call a real handset could make. Here it has no sound card: its
microphone is a WAV file (``aufile``), its speaker a null ALSA device, and its
``sndfile`` module records what it heard (``dump-*-dec.wav``) and what it sent
(``dump-*-enc.wav``). It answers a REFER itself (202, NOTIFY, then dials the target),
and ``menu`` hangs up when the WAV has been played. ``answer`` makes it the callee
of a call the platform places.

    peer = BaresipPeer(microphone=wav_bytes)
    result = await peer.call("sip:+15550100@127.0.0.1:5060", seconds=8)
    heard = result.heard_pcm()       # PCM16 mono 8 kHz

Each peer writes its own config directory (``config``, ``accounts``, ``contacts``),
so runs never share state with a user's ``~/.baresip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

from agentplatform.testing.sipp_peer import free_udp_port

BARESIP = "baresip"
MODULE_PATH = Path("/usr/lib/baresip/modules")


@dataclass(slots=True)
class BaresipResult:
    returncode: int
    log: str
    heard: list[bytes] = field(default_factory=list)  # WAV files: what baresip decoded (heard)
    sent: list[bytes] = field(default_factory=list)   # WAV files: what it encoded (said)

    def heard_pcm(self) -> bytes:
        """Everything baresip heard, PCM16 mono 8 kHz, calls in order."""
        return b"".join(_wav_pcm(data) for data in self.heard)

    def sent_pcm(self) -> bytes:
        return b"".join(_wav_pcm(data) for data in self.sent)

    def said(self, text: str) -> bool:
        """Whether baresip's log shows ``text`` (its call events are logged as text)."""
        return text in self.log


def _wav_pcm(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, 8000):
            raise ValueError(f"baresip dump is {wav.getnchannels()} ch, {8 * wav.getsampwidth()} bit, "
                             f"{wav.getframerate()} Hz; expected mono 16-bit 8000 Hz")
        return wav.readframes(wav.getnframes())


def wav_bytes(pcm16_8k: bytes) -> bytes:
    """A mono 16-bit 8 kHz WAV of ``pcm16_8k`` (what ``aufile`` plays as the microphone)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm16_8k)
    return out.getvalue()


class BaresipPeer:
    """One baresip process, configured to place one call with a WAV as its microphone."""

    def __init__(self, *, microphone: bytes, host: str = "127.0.0.1", port: int | None = None,
                 codecs: str = "PCMU", user: str = "bot") -> None:
        if shutil.which(BARESIP) is None:
            raise FileNotFoundError("baresip is not installed (Debian package baresip)")
        if not MODULE_PATH.is_dir():
            raise FileNotFoundError(f"baresip modules not found in {MODULE_PATH}")
        _wav_pcm(microphone)  # refuse a WAV baresip would resample or misread, up front
        self.host, self.port = host, port or free_udp_port(host)
        self._dir = tempfile.TemporaryDirectory(prefix="baresip-")
        self.config_dir = Path(self._dir.name) / "config"
        self.dump_dir = Path(self._dir.name) / "dump"
        self.config_dir.mkdir()
        self.dump_dir.mkdir()
        (self.config_dir / "microphone.wav").write_bytes(microphone)
        (self.config_dir / "config").write_text(self._config())
        (self.config_dir / "accounts").write_text(
            f"<sip:{user}@{host}:{self.port}>;regint=0;audio_codecs={codecs};answermode=auto\n")
        (self.config_dir / "contacts").write_text("")

    def _config(self) -> str:
        lines = [
            f"sip_listen {self.host}:{self.port}",
            "audio_player alsa,null", "audio_alert alsa,null",
            f"audio_source aufile,{self.config_dir / 'microphone.wav'}",
            "ausrc_srate 8000", "auplay_srate 8000", "ausrc_channels 1", "auplay_channels 1",
            f"module_path {MODULE_PATH}",
            "module stdio.so", "module g711.so", "module sndfile.so", "module aufile.so", "module alsa.so",
            "module_tmp account.so", "module_app menu.so",
            f"snd_path {self.dump_dir}",
            "rtp_timeout 0",
        ]
        return "\n".join(lines) + "\n"

    async def call(self, uri: str, *, seconds: int = 10) -> BaresipResult:
        """Dial ``uri``, let baresip run at most ``seconds``, and collect what it heard."""
        return await self._run(["-e", f"/dial {uri}"], seconds)

    async def answer(self, *, seconds: int = 10) -> BaresipResult:
        """Be the callee: baresip listens on ``host:port``, answers the first INVITE
        itself (``answermode=auto``), speaks the microphone WAV into the call and
        hangs up at its end; after ``seconds`` it exits and what it heard is collected."""
        return await self._run([], seconds)

    async def _run(self, extra: list[str], seconds: int) -> BaresipResult:
        process = await asyncio.create_subprocess_exec(
            BARESIP, "-f", str(self.config_dir), *extra, "-t", str(seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=self._dir.name)
        try:
            async with asyncio.timeout(seconds + 5):
                output, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            output, _ = await process.communicate()
        return BaresipResult(
            process.returncode or 0, output.decode(errors="replace"),
            heard=[p.read_bytes() for p in sorted(self.dump_dir.glob("dump-*-dec.wav"))],
            sent=[p.read_bytes() for p in sorted(self.dump_dir.glob("dump-*-enc.wav"))])

    def close(self) -> None:
        self._dir.cleanup()


__all__ = ["BaresipPeer", "BaresipResult", "wav_bytes"]
