"""``agentplatform dial AGENT NUMBER``: ask a running server to place a call.

It posts to the server's ``POST /api/calls`` with ``API_KEY`` from the environment
(the key the server was given), prints the call id, and exits non-zero with the
server's reason when the call is not placed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from agentplatform.carriers.dialing import MachineDetection

DEFAULT_SERVER = "http://127.0.0.1:8000"


def param_pair(value: str) -> tuple[str, str]:
    """``--param name=value``, refused by argparse when there is no ``=``."""
    name, sep, text = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE, got {value!r}")
    return name, text


def add_dial_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent")
    parser.add_argument("number", help="the number to call (E.164 for Twilio: +15551234567)")
    parser.add_argument("--from", dest="from_number", help="caller id (default: the agent's "
                                                           "first phone number)")
    parser.add_argument("--carrier", help="twilio or sip (default: the first that can dial)")
    parser.add_argument("--param", action="append", type=param_pair, default=[],
                        metavar="NAME=VALUE", help="fills {{params.NAME}} (repeatable)")
    parser.add_argument("--machine-detection", choices=[m.value for m in MachineDetection],
                        default=None, help="what to do when a machine answers (default off)")
    parser.add_argument("--voicemail-message", help="what to leave with leave_message")
    parser.add_argument("--server", default=os.environ.get("AGENTPLATFORM_URL", DEFAULT_SERVER),
                        help=f"the running server (default: AGENTPLATFORM_URL or {DEFAULT_SERVER})")


def dial_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /api/calls`` body the arguments describe."""
    body: dict[str, Any] = {"agent": args.agent, "to": args.number}
    if args.from_number:
        body["from"] = args.from_number
    if args.carrier:
        body["carrier"] = args.carrier
    if args.param:
        body["params"] = dict(args.param)
    if args.machine_detection:
        body["machine_detection"] = args.machine_detection
    if args.voicemail_message:
        body["voicemail_message"] = args.voicemail_message
    return body


def run_dial(args: argparse.Namespace, *, transport: httpx.BaseTransport | None = None) -> int:
    headers = {"X-API-Key": os.environ["API_KEY"]} if os.environ.get("API_KEY") else {}
    url = args.server.rstrip("/") + "/api/calls"
    try:
        with httpx.Client(timeout=30.0, transport=transport) as client:
            response = client.post(url, json=dial_body(args), headers=headers)
    except httpx.HTTPError as exc:
        print(f"could not reach {args.server}: {exc}", file=sys.stderr)
        return 2
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:300]}
    if response.status_code == 202:
        print(f"call {answer['call_id']} queued; see {args.server.rstrip('/')}"
              f"/api/calls/{answer['call_id']}")
        return 0
    detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
    print(f"not placed ({response.status_code}): {detail}", file=sys.stderr)
    return 1
