"""``make bench``: N simulated phone calls against a server in another process.

The Twilio + OpenAI levels are measured by ``bench_bridge.py``: the bridge beside the
null relay at 10/100/200/400 calls, timed from outside on the load generator's clock
(``bench_load.py``). What follows describes the other rows (SIP, other providers),
which still run on the older in-process load below.

Method (same as the measurements in the project's performance notes): the server
process is pinned to one core; on the other core this process runs N simulated Twilio
callers (20 ms μ-law frames in real time, marks echoed at playback time, ``clear``
honoured; each caller talks for 1.2 s, then talks over the agent after hearing 0.5 s of
its answer) and the simulated model (energy VAD, a 1.5 s reply streamed in real time).
Latencies are measured inside the server on its monotonic clock (frame received →
frame sent, each way; speech start received → ``clear`` sent), and read over HTTP.
At each level the same load runs again over the SIP trunk (``bench_sip.py``), measured
on the caller's clock, and the two are printed side by side.
Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import httpx

from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, voice_like
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller

NUMBER = "+15555550100"
AGENT = """\
name: bench
model: {model}
prompt: You are a benchmark agent.
greeting: Hello, this is the benchmark line.
phone_numbers: ["+15555550100"]
"""


@contextlib.asynccontextmanager
async def _openai_sim(workdir: Path):
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=1500, record=False) as sim:
        yield "openai/gpt-realtime", {"OPENAI_REALTIME_URL": sim.url,
                                      "OPENAI_API_KEY": sim.api_key}


@contextlib.asynccontextmanager
async def _nova_sim(workdir: Path):
    from agentplatform.testing.nova_sonic_server import NovaSonicServer

    async with NovaSonicServer(speed=1.0) as sim:
        ca = workdir / "nova-ca.pem"
        ca.write_bytes(sim.tls.cert_pem)
        yield "amazon/nova-2-sonic", {
            "BEDROCK_ENDPOINT_URL": sim.url, "AWS_ACCESS_KEY_ID": sim.access_key,
            "AWS_SECRET_ACCESS_KEY": sim.secret_key, "AWS_REGION": sim.region,
            "PROVIDER_CA_FILE": str(ca)}


@contextlib.asynccontextmanager
async def _gemini_sim(workdir: Path):
    from agentplatform.testing.gemini_live_server import GeminiLiveServer
    from agentplatform.testing.tls import make_tls_pair

    tls = make_tls_pair()
    async with GeminiLiveServer(ssl_context=tls.server, speed=1.0) as sim:
        ca = workdir / "gemini-ca.pem"
        ca.write_bytes(tls.cert_pem)
        yield "google/gemini-2.5-flash-native-audio", {
            "GEMINI_LIVE_URL": sim.url, "GEMINI_API_KEY": sim.api_key, "PROVIDER_CA_FILE": str(ca)}


# provider name → simulator that yields (model id, server environment)
SIMULATORS = {"openai": _openai_sim, "google": _gemini_sim, "amazon": _nova_sim}
SPEECH = voice_like(1200, "audio/pcm")[::3]  # 1.2 s at 8 kHz
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


# The cores this process was given when it started. The bench pins itself (and so every
# child it forks) to the load's core, so a server's pin is chosen from these, not from the
# one core it inherited: checked against its own affinity, the server stayed on the load's
# core and the two shared it.
_CORES: tuple[int, ...] = (tuple(sorted(os.sched_getaffinity(0)))
                           if hasattr(os, "sched_getaffinity") else ())


def _pin(cpu: int) -> None:
    """Run on the ``cpu``-th core the bench was given (0: the server's, 1: the load's),
    when it was given at least two."""
    if len(_CORES) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {_CORES[cpu % len(_CORES)]})


def load_core() -> int | None:
    """The core the load processes run on, or ``None`` on a one-core machine."""
    return _CORES[1] if len(_CORES) > 1 else None


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base_url: str


async def start_server(env_overrides: dict[str, str], workdir: Path,
                       pin: bool = True) -> ServerProcess:
    port = _free_port()
    # Shedding off unless a run asks for it: these runs measure what the server does with
    # every call offered (bench_bridge's overload run turns it on).
    env = {**os.environ, "OVERLOAD_SHEDDING": "false", **env_overrides, "LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentplatform.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, cwd=workdir, preexec_fn=(lambda: _pin(0)) if pin else None,
        stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),
    )
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base_url + "/healthz")).status_code == 200:
                    return ServerProcess(proc, base_url)
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(workdir / 'server.log').read_text()}")
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def _one_caller(base_url: str, stop_at: float, delay: float, stats: dict[str, int]) -> None:
    await asyncio.sleep(delay)
    caller = TwilioCaller(base_url, to=NUMBER)
    if not await caller.dial():
        stats["failed"] += 1
        return
    stats["connected"] += 1
    try:
        with contextlib.suppress(TimeoutError):
            await caller.wait_for_audio(10)
        while time.monotonic() < stop_at and caller.close_code is None:
            await asyncio.sleep(0.5)  # hear half a second of the answer...
            await caller.say(SPEECH)  # ...then talk over it
            with contextlib.suppress(TimeoutError):
                await caller.wait_for_audio(6)
        stats["barge_ins_heard"] += len(caller.clears)
        stats["protocol_errors"] += len(caller.protocol_errors)
    finally:
        await caller.hang_up()


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append((time.monotonic() - t - 0.01) * 1000.0)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    data = sorted(values)
    return data[min(len(data) - 1, int(p / 100 * (len(data) - 1)))]


@dataclass(slots=True)
class SteadyState:
    """What the server did in the measured window, with every call up."""

    t0: float
    t1: float
    cpu_seconds: float
    metrics: dict[str, Any]
    rss_mb: float
    lags: list[float]

    def server_figures(self, calls: int, idle_rss: float) -> dict[str, object]:
        """The server-side figures both carriers report, from this window."""
        window = self.t1 - self.t0
        call_seconds = max(1e-9, self.metrics["active_calls"] * window)
        return {
            "active_in_window": self.metrics["active_calls"],
            "server_cpu_percent": round(100 * self.cpu_seconds / window, 1),
            "cpu_ms_per_call_second": round(1000 * self.cpu_seconds / call_seconds, 3),
            "cpu_seconds_per_call_minute": round(60 * self.cpu_seconds / call_seconds, 3),
            "memory_mb_per_call": round(max(0.0, self.rss_mb - idle_rss) / max(1, calls), 3),
            "inbound_ms": self.metrics["inbound_ms"],
            "outbound_ms": self.metrics["outbound_ms"],
            "barge_in_ms": self.metrics["barge_in_ms"],
            "truncates": self.metrics["truncates"],
            "load_generator_lag_p99_ms": round(_pct(self.lags, 99), 2),
        }


async def measure_steady_state(
    server: Any, seconds: float, ramp: float,
    start_callers: Callable[[float], list[asyncio.Task[Any]]],
) -> SteadyState:
    """Start the callers (told when to stop), wait until every call is up and past its
    greeting, then read the server's CPU, memory and own metrics over ``seconds``,
    while watching this process's loop lag (a late load generator skews everything)."""
    pid = server.proc.pid
    stop_at = time.monotonic() + ramp + 3.0 + seconds
    stop = asyncio.Event()
    lags: list[float] = []
    lag_task = asyncio.create_task(_loop_lag(stop, lags))
    tasks = start_callers(stop_at)
    try:
        await asyncio.sleep(ramp + 3.0)  # every call up and past its greeting
        # A saturated server answers slowly: give the metrics request time.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            await client.post("/debug/metrics/reset")
            lags.clear()
            cpu0, t0 = _cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(seconds)
            cpu1, t1 = _cpu_seconds(pid), time.monotonic()
            metrics = (await client.get("/debug/metrics")).json()
        rss = _rss_mb(pid)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await lag_task
    return SteadyState(t0=t0, t1=t1, cpu_seconds=cpu1 - cpu0, metrics=metrics, rss_mb=rss,
                       lags=lags)


async def run_level(calls: int, seconds: float, workdir: Path,
                    provider: str = "openai") -> dict[str, object]:
    agents = workdir / "agents"
    agents.mkdir(exist_ok=True)
    async with SIMULATORS[provider](workdir) as (model, provider_env):
        (agents / "bench.yaml").write_text(AGENT.format(model=model))
        server = await start_server({
            "AGENTS_DIR": str(agents),
            "DATABASE_URL": f"sqlite:///{workdir / f'bench-{provider}-{calls}.db'}",
            "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "PUBLIC_URL": "", **provider_env,
        }, workdir)
        try:
            idle_rss = _rss_mb(server.proc.pid)
            ramp = min(5.0, 0.02 * calls + 1.0)
            stats = {"connected": 0, "failed": 0, "barge_ins_heard": 0, "protocol_errors": 0}
            state = await measure_steady_state(server, seconds, ramp, lambda stop_at: [
                asyncio.create_task(_one_caller(server.base_url, stop_at, ramp * i / calls, stats))
                for i in range(calls)])
        finally:
            server.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(10)
    return {
        "carrier": "twilio",
        "provider": provider,
        "calls": calls,
        "connected": stats["connected"],
        "failed": stats["failed"],
        **state.server_figures(calls, idle_rss),
        "barge_ins_heard_by_callers": stats["barge_ins_heard"],
        "caller_protocol_errors": stats["protocol_errors"],
    }


def _table(results: list[dict[str, object]]) -> str:
    """Both carriers' server-side figures; on SIP the server is the pacer, so its
    caller-clock figures follow in :func:`_sip_table`."""
    head = (f"{'carrier':>7} {'provider':>8} {'calls':>6} {'cpu%':>6} {'ms cpu/call-s':>13} {'MB/call':>8} "
            f"{'in p50/p99 ms':>15} {'out p50/p99 ms':>15} {'barge-in p50/p99':>17} {'gen lag p99':>11}")
    rows = [head]
    for r in results:
        i, o, b = r["inbound_ms"], r["outbound_ms"], r["barge_in_ms"]
        rows.append(
            f"{r.get('carrier', 'twilio'):>7} {r['provider']:>8} {r['calls']:>6} {r['server_cpu_percent']:>6} {r['cpu_ms_per_call_second']:>13} "
            f"{r['memory_mb_per_call']:>8} {i['p50']:>7.3f}/{i['p99']:<7.3f} "
            f"{o['p50']:>7.3f}/{o['p99']:<7.3f} {b['p50']:>8.3f}/{b['p99']:<8.3f} "
            f"{r['load_generator_lag_p99_ms']:>11}"
        )
    return "\n".join(rows)


def _sip_table(results: list[dict[str, object]]) -> str:
    head = (f"{'SIP, caller clock':>17} {'calls':>6} {'failed':>6} {'RTP jitter p50/p99 ms':>21} "
            f"{'in→model p50/p99 ms':>20} {'barge-in p50/p99 ms':>20}")
    rows = [head]
    for r in results:
        if r.get("carrier") != "sip":
            continue
        j, i, b = r["caller_rtp_jitter_ms"], r["caller_inbound_to_model_ms"], r["caller_barge_in_ms"]
        rows.append(f"{'':>17} {r['calls']:>6} {r['failed']:>6} {j['p50']:>10.3f}/{j['p99']:<10.3f} "
                    f"{i['p50']:>9.3f}/{i['p99']:<10.3f} {b['p50']:>9.3f}/{b['p99']:<10.3f}")
    return "\n".join(rows)


async def _run(levels: list[int], seconds: float, providers: list[str],
               provider_calls: int, cascade_turns: int = 0, carriers: tuple[str, ...] = ("twilio", "sip"),
               ) -> tuple[list[dict[str, object]], dict[str, object] | None]:
    from agentplatform.bench_sip import run_sip_level

    _pin(1)
    results: list[dict[str, object]] = []
    cascade: dict[str, object] | None = None
    # Twilio + OpenAI is measured by ``bench_bridge`` (run_bench); SIP keeps its levels here.
    plan = [(carrier, "openai", calls) for calls in levels for carrier in carriers
            if carrier != "twilio"]
    plan += [("twilio", p, provider_calls) for p in providers if p != "openai" and "twilio" in carriers]
    with tempfile.TemporaryDirectory() as tmp:
        for carrier, provider, calls in plan:
            print(f"-- {carrier}/{provider}: {calls} calls, {seconds:.0f} s window ...", flush=True)
            try:
                if carrier == "sip":
                    results.append(await run_sip_level(calls, seconds, Path(tmp)))
                else:
                    results.append(await run_level(calls, seconds, Path(tmp), provider))
            except Exception as exc:  # a saturated run is a result, not a crash
                print(f"   {carrier}/{provider} at {calls} calls did not complete: {exc!r}", flush=True)
                continue
            print(_table(results[-1:]).splitlines()[1], flush=True)
            if carrier == "sip":
                print(_sip_table(results[-1:]).splitlines()[1], flush=True)
        if cascade_turns:
            from agentplatform.bench_cascade import cascade_table, run_cascade

            print(f"-- cascade: {cascade_turns} turns ...", flush=True)
            cascade = await run_cascade(cascade_turns, Path(tmp))
            print(cascade_table(cascade), flush=True)
    return results, cascade


def run_bench(args: argparse.Namespace) -> int:
    from agentplatform import bench_bridge

    levels = args.calls or list(bench_bridge.LEVELS)
    sip_levels = getattr(args, "sip_calls", None) or [10, 50, 100]
    providers = args.providers if args.providers is not None else list(SIMULATORS)
    carriers = tuple(getattr(args, "carriers", None) or ("twilio", "sip"))
    bridge_rows: list[dict[str, object]] = []
    if "twilio" in carriers:
        _pin(1)
        with tempfile.TemporaryDirectory() as tmp:
            bridge_rows = asyncio.run(bench_bridge.run(levels, args.seconds, Path(tmp)))
    results, cascade = asyncio.run(_run(sip_levels, args.seconds, providers, min(sip_levels),
                                        args.cascade_turns, carriers))
    amd = None
    if "sip" in carriers:  # the SIP trunk's local answering-machine detector
        from agentplatform.bench_amd import run_amd

        print("-- answering-machine detection: rendering the recordings ...", flush=True)
        amd = run_amd()
    sustained = [r["calls"] for r in bridge_rows
                 if r["server"] == "bridge" and not r["load_lagged"] and r["failed"] == 0
                 and r["in_ms"]["p99"] < 10 and r["out_ms"]["p99"] < 10]
    summary = {"bridge": bridge_rows, "results": results,
               "max_calls_with_p99_under_10ms": max(sustained, default=0),
               "cascade": cascade, "amd": amd, "cores": os.cpu_count(), "load_average": os.getloadavg()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    if bridge_rows:
        print("\nTwilio + OpenAI, timed on the load generator's clock (ms; CPU of the server's core):")
        print(bench_bridge.table(bridge_rows))
        print(f"machine load average during the run: {os.getloadavg()[0]:.2f}")
    print()
    print(_table(results))
    if any(r["carrier"] == "sip" for r in results):
        print()
        print(_sip_table(results))
    if amd is not None:
        from agentplatform.bench_amd import table as amd_table

        print()
        print(amd_table(amd))
    print(f"\nmost calls with p99 < 10 ms each way (load generator keeping up): "
          f"{summary['max_calls_with_p99_under_10ms']}")
    print(f"written to {out}")
    return 0
