"""The command line: ``agentplatform serve | agents list|validate | call | dial | chat | test | bench |
hash-password | db upgrade``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import os

    from agentplatform import serving
    from agentplatform.app import create_app
    from agentplatform.config import get_settings

    from agentplatform.observability.logging import configure_logging

    # A served process sheds calls it has no room for (OVERLOAD_SHEDDING=false: never).
    os.environ.setdefault("OVERLOAD_SHEDDING", "true")
    try:
        workers = serving.parse_workers(getattr(args, "workers", "1"))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings = get_settings()
    # Every line names its call (contextvars); LOG_FORMAT=json for a log pipeline.
    configure_logging(settings.log_level, settings.log_format)
    from agentplatform.carriers.twilio.signature import check_bind_host
    from agentplatform.errors import PlatformError

    host = args.host or settings.host
    try:
        check_bind_host(settings, host)
    except PlatformError as exc:
        print(exc, file=sys.stderr)
        return 2
    port = args.port or settings.port
    worker_fd = getattr(args, "worker_fd", None)  # set in a worker by the supervisor
    if workers > 1 and worker_fd is None:
        sock = serving.bind(host, port)
        worker_argv = ["serve", "--host", host, "--port", str(port)]
        return serving.Supervisor(sock, workers, worker_argv).run()
    serving.run_app(create_app(settings), host=host, port=port, log_level=settings.log_level,
                    fd=worker_fd)
    return 0


def _agents(args: argparse.Namespace) -> int:
    from agentplatform.agents.commands import list_agents, validate_all
    from agentplatform.agents.store import AgentStore
    from agentplatform.catalog import load_catalog
    from agentplatform.config import get_settings

    settings = get_settings()
    directory = Path(args.dir) if args.dir else settings.agents_dir
    if args.agents_command == "list":
        print(list_agents(AgentStore(directory, load_catalog(), settings)))
        return 0
    code, report = validate_all(directory, load_catalog(), settings)
    print(report)
    return code


def _call(args: argparse.Namespace) -> int:
    from agentplatform.testing.call_runner import run_call_command

    return asyncio.run(run_call_command(args))


def _chat(args: argparse.Namespace) -> int:
    from agentplatform.chat.terminal import run_chat_command

    return asyncio.run(run_chat_command(args))


def _test(args: argparse.Namespace) -> int:
    from agentplatform.scenarios.command import run_test_command

    return run_test_command(args)


def _bench(args: argparse.Namespace) -> int:
    from agentplatform.bench import run_bench

    return run_bench(args)


def _dial(args: argparse.Namespace) -> int:
    from agentplatform.outbound.command import run_dial

    return run_dial(args)


def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from agentplatform.web.passwords import hash_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ; nothing printed", file=sys.stderr)
            return 1
    try:
        print(f"ADMIN_PASSWORD_HASH='{hash_password(password)}'")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _db(args: argparse.Namespace) -> int:
    import logging

    from agentplatform.config import get_settings
    from agentplatform.storage.database import make_engine
    from agentplatform.storage.schema import upgrade_database

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = make_engine(get_settings().database_url)
    try:
        print(f"database at revision {upgrade_database(engine)}")
    finally:
        engine.dispose()
    return 0


def _sip_address(value: str) -> str:
    """``HOST:PORT`` for ``call --sip``, refused by argparse with the value named."""
    if value == "local":  # the bare ``--sip`` (argparse passes its const through here too)
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--sip wants HOST:PORT, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentplatform",
                                     description="Answer phone calls with realtime speech models.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", default="1", metavar="N|auto",
                       help="worker processes on the one port (auto: one per core); SIGTERM "
                            "drains them all; worker i takes SIP_LISTEN's port + i")
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

    agents = sub.add_parser("agents", help="list or validate the agent files")
    agents.add_argument("agents_command", choices=["list", "validate"])
    agents.add_argument("--dir", help="agents folder (default: AGENTS_DIR or agents/)")
    agents.set_defaults(func=_agents)

    call = sub.add_parser("call", help="place a simulated phone call through the real protocol")
    call.add_argument("agent")
    call.add_argument("--audio", help="WAV the caller says (default: a synthetic utterance)")
    call.add_argument("--out", help="write what the caller heard to this WAV")
    call.add_argument("--url", help="a running server (default: start one in-process)")
    call.add_argument("--simulated-model", action="store_true",
                      help="in-process server talks to the bundled OpenAI Realtime simulator")
    call.add_argument("--say", action="append",
                      help="a sentence the caller speaks, in the local voice (repeatable; "
                           "default for voice_streaming: false agents: three questions)")
    call.add_argument("--turns", type=int, default=0,
                      help="how many times the caller speaks (default: once per sentence, or 2)")
    call.add_argument("--auth-token", help="Twilio auth token to sign the webhook with")
    call.add_argument("--sip", nargs="?", const="local", type=_sip_address, metavar="HOST:PORT",
                      help="call over SIP/RTP instead of Twilio: to a SIP server at HOST:PORT "
                           "(its records read from --url if given), or with no address to the "
                           "in-process server listening for SIP on a free loopback port")
    call.set_defaults(func=_call)

    chat = sub.add_parser("chat", help="chat with an agent over text (its prompt, model, tools)")
    chat.add_argument("agent")
    chat.add_argument("--message", help="send this one message, print the answer, exit")
    chat.add_argument("--url", help="a running server (default: in-process, this machine's settings)")
    chat.add_argument("--api-key", help="the server's API key (default: API_KEY)")
    chat.set_defaults(func=_chat)

    from agentplatform.scenarios.command import add_test_arguments

    test = sub.add_parser("test", help="run conversation scenarios (scenarios/*.yaml) as text "
                                       "or as simulated phone calls; exit 0 pass, 1 fail, 2 bad file")
    add_test_arguments(test)
    test.set_defaults(func=_test)

    from agentplatform.outbound.command import add_dial_arguments

    dial = sub.add_parser("dial", help="ask a running server to call a number (API_KEY from "
                                       "the environment)")
    add_dial_arguments(dial)
    dial.set_defaults(func=_dial)

    hash_pw = sub.add_parser("hash-password",
                             help="print an ADMIN_PASSWORD_HASH setting for a new admin password")
    hash_pw.add_argument("--password-stdin", action="store_true",
                         help="read the password from the first line of stdin (for scripts)")
    hash_pw.set_defaults(func=_hash_password)

    db = sub.add_parser("db", help="bring the database (DATABASE_URL) to the newest schema")
    db.add_argument("db_command", choices=["upgrade"])
    db.set_defaults(func=_db)

    bench = sub.add_parser("bench", help="load benchmark: N simulated calls against a server process")
    bench.add_argument("--calls", type=int, nargs="*", default=None,
                       help="concurrent Twilio calls to measure, bridge beside the null relay "
                            "(default: 10 100 200 400)")
    bench.add_argument("--sip-calls", type=int, nargs="*", default=None,
                       help="concurrent SIP calls to measure (default: 10 50 100)")
    bench.add_argument("--seconds", type=float, default=12.0, help="length of each run")
    bench.add_argument("--providers", nargs="*", default=None,
                       help="providers to measure (default: openai and every other simulator)")
    bench.add_argument("--cascade-turns", type=int, default=12,
                       help="questions asked of the offline cascade agent (0: skip)")
    bench.add_argument("--carriers", nargs="*", choices=["twilio", "sip"], default=None,
                       help="carriers to load at each level (default: twilio and sip, side by side)")
    bench.add_argument("--out", default="bench-results/bench.json")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
