"""``agentplatform test``: run scenario files, report, exit 0 / 1 / 2.

    agentplatform test [PATH…] [--via text|call] [--carrier twilio|sip] [--repeat N] [--junit FILE]
                       [--json FILE] [--simulated-model] [--judge]
                       [--noise-db DB] [--loss FRACTION] [--jitter-ms MS]
    agentplatform test --from-call ID [--out FILE]

Exit 0 when every scenario passed (or was skipped, with its reason printed), 1 when
any failed, 2 when a file is malformed (every problem named by file and field) or
the command itself is wrong; nothing runs then.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

DEFAULT_PATH = "scenarios"


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help=f"scenario files or folders (default: {DEFAULT_PATH}/)")
    parser.add_argument("--via", choices=["text", "call"], default="text",
                        help="text: the chat path (fast); call: a simulated phone call over "
                             "Twilio Media Streams in real time, the local voice as the caller")
    parser.add_argument("--carrier", choices=["twilio", "sip"], default="twilio",
                        help="call mode: Twilio Media Streams (default) or a SIP trunk "
                             "(INVITE and RTP over UDP)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each scenario N times; report pass rates and latency "
                             "percentiles")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    parser.add_argument("--json", metavar="FILE", help="write a JSON report")
    parser.add_argument("--simulated-model", action="store_true",
                        help="serve OpenAI Realtime agents from the bundled simulator, "
                             "scripted by each scenario's simulated_model section")
    parser.add_argument("--judge", action="store_true",
                        help="run judge: assertions against JUDGE_URL / JUDGE_MODEL "
                             "(skipped without this)")
    parser.add_argument("--agents", metavar="DIR", help="agents folder (default: AGENTS_DIR)")
    parser.add_argument("--noise-db", type=float, metavar="DB",
                        help="call mode: white noise on the caller's line, in dBFS (e.g. -40)")
    parser.add_argument("--loss", type=float, default=0.0, metavar="FRACTION",
                        help="call mode: fraction of the caller's 20 ms frames lost (0-1)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, metavar="MS",
                        help="call mode: each caller frame up to this late")
    parser.add_argument("--from-call", metavar="ID",
                        help="write a scenario skeleton from this call's record, then exit")
    parser.add_argument("--out", metavar="FILE",
                        help="with --from-call: where to write (default: "
                             f"{DEFAULT_PATH}/from-call-<id>.yaml)")


def _from_call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from agentplatform.config import get_settings
    from agentplatform.scenarios.skeleton import skeleton_name, skeleton_yaml
    from agentplatform.storage.database import make_engine
    from agentplatform.storage.queries import get_call

    engine = make_engine(get_settings().database_url)
    try:
        call = get_call(engine, args.from_call)
    finally:
        engine.dispose()
    if call is None:
        print(f"no call {args.from_call!r} in the call records", file=err)
        return 2
    target = Path(args.out) if args.out else Path(DEFAULT_PATH) / f"{skeleton_name(call)}.yaml"
    if target.exists():
        print(f"{target} exists; give another --out", file=err)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(skeleton_yaml(call), encoding="utf-8")
    print(f"wrote {target}: {sum(1 for t in call.turns if t.role == 'user')} caller turns, "
          f"{len(call.tools)} tool calls", file=out)
    return 0


def _line(args: argparse.Namespace):  # -> LineImpairments | None
    from agentplatform.testing.line_impairments import LineImpairments

    line = LineImpairments(noise_db=args.noise_db, loss=args.loss, jitter_ms=args.jitter_ms)
    return line if line.active else None


def run_test_command(args: argparse.Namespace, *, out: TextIO = sys.stdout,
                     err: TextIO = sys.stderr) -> int:
    if args.from_call:
        return _from_call(args, out, err)
    from agentplatform.scenarios import reports
    from agentplatform.scenarios.runner import RunOptions, run_all
    from agentplatform.scenarios.spec import ScenarioInvalid, load_all

    if args.repeat < 1:
        print("--repeat wants 1 or more", file=err)
        return 2
    try:
        line = _line(args)
    except ValueError as exc:
        print(f"line impairments: {exc}", file=err)
        return 2
    if line is not None and args.via != "call":
        print("--noise-db, --loss and --jitter-ms act on a phone line: add --via call", file=err)
        return 2
    if args.carrier == "sip" and args.via != "call":
        print("--carrier sip places phone calls: add --via call", file=err)
        return 2
    if args.carrier == "sip" and line is not None:
        print("line impairments are simulated on the Twilio caller; not with --carrier sip",
              file=err)
        return 2
    judge = None
    if args.judge:
        from agentplatform.scenarios.judge import JudgeConfig, make_judge

        config = JudgeConfig.from_env()
        if config is None:
            print("--judge needs a judge model: set JUDGE_URL (an OpenAI-compatible "
                  "chat-completions endpoint) and JUDGE_MODEL", file=err)
            return 2
        judge = make_judge(config)
    try:
        scenarios = load_all([Path(p) for p in (args.paths or [DEFAULT_PATH])])
    except ScenarioInvalid as exc:
        for issue in exc.issues:
            print(issue, file=err)
        return 2
    if not scenarios:
        print("no scenario files found", file=err)
        return 2
    options = RunOptions(via=args.via, carrier=args.carrier,
                         simulated_model=args.simulated_model, line=line,
                         judge=judge, agents_dir=Path(args.agents) if args.agents else None)
    groups = asyncio.run(run_all(scenarios, options, repeat=args.repeat))
    print(reports.console(groups), file=out)
    if args.junit:
        reports.write(args.junit, reports.to_junit(groups))
    if args.json:
        reports.write(args.json, reports.to_json(groups))
    return reports.exit_code([reports.summarise(g) for g in groups])
