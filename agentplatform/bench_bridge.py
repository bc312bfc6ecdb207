"""``make bench``, the bridge at each load level beside the null relay, timed from outside.

At each level the same load (``bench_load.py``) runs twice, server pinned to the first
core and the load processes to the second: once against the null relay
(``bench_relay.py``, the floor) and once against ``agentplatform serve``. For each it
reports the server's CPU per call-second, the bridge-added latency each way and from
speech start to ``clear`` (p50/p99, on the load generator's clock), memory per call,
and the load's own tick lag: a level whose load lagged (tick lag p99 over
``MAX_LOAD_LAG_MS``) is printed as such and its figures are not reported, since a late
load generator makes any server look good.

Both servers take the carrier's media streams on the same stack: by default the
compiled media listener (``MEDIA_LISTEN``, ``carriers/twilio/media_listener.py``);
``BENCH_CARRIER_SOCKET=route`` runs both on the main port's FastAPI route instead, to
compare. The table's ``sock`` column says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from agentplatform import bench_load as load
from agentplatform.bench import _cpu_seconds, _pin, _rss_mb, load_core, start_server
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN

MAX_LOAD_LAG_MS = 2.0
# Which carrier socket both servers use: "listener" (picows, MEDIA_LISTEN) or "route"
# (uvicorn + Starlette on the main port, as before the listener).
CARRIER_SOCKET_ENV = "BENCH_CARRIER_SOCKET"
SOCKET_NAMES = {"listener": "picows", "route": "uvicorn"}


def carrier_socket() -> str:
    """``listener`` unless ``BENCH_CARRIER_SOCKET`` says ``route``."""
    value = os.environ.get(CARRIER_SOCKET_ENV, "listener").strip().lower() or "listener"
    if value not in SOCKET_NAMES:
        raise ValueError(f"{CARRIER_SOCKET_ENV} wants listener or route, got {value!r}")
    return value

TARGET_P99_MS = 2.0  # bridge-added latency each way and speech start → clear
LEVELS = (10, 100, 200, 400)
CALLS_PER_LOAD_PROCESS = 100
NUMBER = "+15555550100"
AGENT = """\
name: bench
model: openai/gpt-realtime
prompt: "Benchmark agent for caller {{caller_number}}."
greeting: Hello, this is the benchmark line.
phone_numbers: ["+15555550100"]
"""


async def _start_relay(model_url: str, workdir: Path, media_port: int = 0) -> load_server:
    port = load.free_port()
    media = [str(media_port)] if media_port else []
    # Started once per level, before the load; pinned like the bridge (bench.start_server).
    with (workdir / "relay.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "agentplatform.bench_relay", str(port), model_url, *media],
            cwd=workdir, preexec_fn=lambda: _pin(0),  # noqa: PLW1509 - no threads yet
            stdout=subprocess.DEVNULL, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base_url + "/healthz")).status_code == 200:
                    return load_server(proc, base_url)
            if proc.poll() is not None:
                raise RuntimeError((workdir / "relay.log").read_text())
            await asyncio.sleep(0.05)
    raise RuntimeError("relay did not start")


class load_server:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str) -> None:
        self.proc, self.base_url = proc, base_url


async def _start_bridge(model_url: str, workdir: Path, calls: int,
                        extra_env: dict[str, str] | None = None) -> Any:
    agents = workdir / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "bench.yaml").write_text(AGENT)
    db = workdir / f"bench-bridge-{calls}-{time.monotonic_ns()}.db"
    return await start_server({
        "AGENTS_DIR": str(agents), "DATABASE_URL": f"sqlite:///{db}",
        "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "PUBLIC_URL": "",
        "OPENAI_REALTIME_URL": model_url, "OPENAI_API_KEY": "sk-bench",
        **(extra_env or {}),
    }, workdir)


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(load.pct(values, 50), 3),
            "p99": round(load.pct(values, 99), 3)}


async def run_level(kind: str, calls: int, seconds: float, workdir: Path,
                    extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One load level against the null relay (``kind="relay"``) or the bridge, each
    taking its streams on the carrier socket ``carrier_socket()`` names."""
    model_port = load.free_port()
    model_url = f"ws://127.0.0.1:{model_port}/v1/realtime"
    sock = carrier_socket()
    media_port = load.free_port() if sock == "listener" else 0
    if media_port:
        extra_env = {**(extra_env or {}), "MEDIA_LISTEN": f"127.0.0.1:{media_port}"}
    server = await (_start_relay(model_url, workdir, media_port) if kind == "relay"
                    else _start_bridge(model_url, workdir, calls, extra_env))
    pid = server.proc.pid
    try:
        idle_rss = _rss_mb(pid)
        n_proc = max(1, math.ceil(calls / CALLS_PER_LOAD_PROCESS))
        numbers = [f"+1999{i:07d}" for i in range(calls)]
        ramp = max(1.0, calls / 40.0)
        start_at = time.monotonic() + 2.5  # the load processes are up by then
        record_from = start_at + ramp + 3.0  # every call up and past its greeting
        window_end = record_from + seconds
        ctx = multiprocessing.get_context("spawn")
        pipes, procs = [], []
        for p in range(n_proc):
            parent, child = ctx.Pipe(duplex=False)
            args = {"base_url": server.base_url, "auth_token": SIMULATED_AUTH_TOKEN,
                    "numbers": numbers[p::n_proc], "to": NUMBER, "model_port": model_port,
                    "start_at": start_at, "ramp": ramp, "stop_at": window_end + 0.3,
                    "record_from": record_from, "cpu": load_core()}
            proc = ctx.Process(target=load.run_process, args=(args, child), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        await asyncio.sleep(max(0.0, record_from - time.monotonic()))
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        cpu1, t1 = _cpu_seconds(pid), time.monotonic()
        rss = _rss_mb(pid)
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(None, pipe.recv) for pipe in pipes))
        for proc in procs:
            proc.join(10)
        metrics_text = ""
        if kind == "bridge":
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=10) as client:
                    metrics_text = (await client.get(server.base_url + "/metrics")).text
    finally:
        server.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(10)
    row = _figures(kind, calls, results, t0, t1, cpu1 - cpu0, rss - idle_rss, metrics_text)
    row["carrier_socket"] = SOCKET_NAMES[sock]
    return row


def _figures(kind: str, calls: int, results: list[dict[str, Any]], t0: float, t1: float,
             cpu_s: float, rss_growth: float, metrics_text: str) -> dict[str, Any]:
    errors = [r["error"] for r in results if "error" in r]
    errors += [f for r in results for f in r.get("failures", [])][:5]
    records: dict[str, load.CallRecord] = {}
    lags: list[float] = []
    failed = refused = 0
    for r in results:
        if "error" in r:
            continue
        lags.extend(r["lags"])
        failed += r["failed"]
        refused += r.get("refused", 0)
        for key, rec in r["records"].items():
            if key in records:
                records[key].merge(rec)
            else:
                records[key] = rec
    inbound, outbound, barge = [], [], []
    missing_clears = truncates = rejected = 0
    live = 0
    for rec in records.values():
        if not rec.connected:
            continue
        if not rec.closed_early:
            live += 1
        inbound += load.match(rec.caller_sent, rec.model_heard, t0, t1)
        outbound += load.match(rec.model_sent, rec.caller_heard, t0, t1)
        b, missing = load.barge_latencies(rec.speech_started, rec.clears, t0, t1)
        barge += b
        missing_clears += missing
        truncates += rec.truncates
        rejected += rec.truncates_rejected
    window = t1 - t0
    lag_p99 = load.pct(lags, 99)
    admitted = sum(1 for rec in records.values() if rec.connected)
    return {
        "server": kind, "calls": calls, "admitted": admitted, "live_at_end": live,
        "refused_busy": refused, "failed": failed, "load_errors": errors,
        "cpu_percent": round(100 * cpu_s / window, 1),
        "cpu_ms_per_call_second": round(1000 * cpu_s / max(1e-9, live * window), 3),
        "mb_per_call": round(max(0.0, rss_growth) / max(1, admitted), 3),
        "in_ms": _summary(inbound), "out_ms": _summary(outbound), "barge_ms": _summary(barge),
        "barge_ins_without_clear": missing_clears, "truncates": truncates,
        "truncates_rejected": rejected,
        "load_lag_p99_ms": round(lag_p99, 2), "load_lagged": lag_p99 > MAX_LOAD_LAG_MS,
        "shed_by_server": _metric(metrics_text, "agentplatform_calls_shed_total"),
    }


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            with contextlib.suppress(ValueError):
                return float(line.rsplit(" ", 1)[1])
    return None


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'server':>6} {'calls':>5} {'adm':>4} {'busy':>4} {'cpu%':>5} {'ms cpu/call-s':>13} {'×relay':>6} "
            f"{'in p50/p99':>13} {'out p50/p99':>13} {'barge p50/p99':>13} {'MB/call':>7} "
            f"{'no-clear':>8} {'trunc rej':>9} {'load lag p99':>12} {'sock':>7}")
    out = [head]
    relay = {r["calls"]: r for r in rows if r["server"] == "relay" and not r["load_lagged"]}
    relay_any = next(iter(relay.values()), None)
    for r in rows:
        if r["load_lagged"]:
            out.append(f"{r['server']:>6} {r['calls']:>5}  load lagged (tick p99 "
                       f"{r['load_lag_p99_ms']} ms > {MAX_LOAD_LAG_MS} ms): not reported")
            continue
        base = relay.get(r["calls"]) or (relay_any if r["server"] == "shed" else None)
        ratio = (f"{r['cpu_ms_per_call_second'] / base['cpu_ms_per_call_second']:.2f}"
                 if base and base["cpu_ms_per_call_second"] else "-")
        i, o, b = r["in_ms"], r["out_ms"], r["barge_ms"]
        out.append(
            f"{r['server']:>6} {r['calls']:>5} {r['admitted']:>4} {r['refused_busy']:>4} {r['cpu_percent']:>5} "
            f"{r['cpu_ms_per_call_second']:>13} {ratio:>6} {i['p50']:>6.2f}/{i['p99']:<6.2f} "
            f"{o['p50']:>6.2f}/{o['p99']:<6.2f} {b['p50']:>6.2f}/{b['p99']:<6.2f} "
            f"{r['mb_per_call']:>7} {r['barge_ins_without_clear']:>8} "
            f"{r['truncates_rejected']:>4}/{r['truncates']:<4} {r['load_lag_p99_ms']:>12} "
            f"{r.get('carrier_socket', '-'):>7}")
    return "\n".join(out)


def capacity(rows: list[dict[str, Any]]) -> int:
    """The most calls at which the bridge met the latency targets (0: none did)."""
    met = [r["calls"] for r in rows if r["server"] == "bridge" and not r["load_lagged"]
           and r["failed"] == 0 and r["in_ms"]["p99"] <= TARGET_P99_MS
           and r["out_ms"]["p99"] <= TARGET_P99_MS and r["barge_ms"]["p99"] <= TARGET_P99_MS]
    return max(met, default=0)


async def _one(rows: list[dict[str, Any]], kind: str, calls: int, seconds: float,
               workdir: Path) -> None:
    print(f"-- {kind}: {calls} calls, {seconds:.0f} s window ...", flush=True)
    env = {"OVERLOAD_SHEDDING": "true" if kind == "shed" else "false"}
    try:
        row = await run_level("relay" if kind == "relay" else "bridge", calls, seconds,
                              workdir, env)
    except Exception as exc:  # noqa: BLE001 - a saturated run is a result
        print(f"   {kind} at {calls} calls did not complete: {exc!r}", flush=True)
        return
    row["server"] = kind
    rows.append(row)
    print(table(rows[-1:]).splitlines()[1], flush=True)


async def run(levels: list[int], seconds: float, workdir: Path,
              servers: tuple[str, ...] = ("relay", "bridge"),
              overload: bool = True) -> list[dict[str, Any]]:
    """Each level against each server (the bridge with shedding off, to find what one
    core carries); then, with shedding on, twice the capacity found is offered."""
    rows: list[dict[str, Any]] = []
    sock = carrier_socket()
    print(f"carrier socket: {SOCKET_NAMES[sock]} ({sock}; {CARRIER_SOCKET_ENV}=route|listener)",
          flush=True)
    for calls in levels:
        for kind in servers:
            await _one(rows, kind, calls, seconds, workdir)
    if overload:
        offered = 2 * (capacity(rows) or min(levels))
        await _one(rows, "shed", offered, seconds, workdir)
    return rows
