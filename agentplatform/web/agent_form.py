"""The agent edit form ⇄ the agent's YAML text, keeping the admin's comments.

The form never writes a spec of its own: it turns the submitted fields into edits of
the file's round-trip document (only fields whose value changed are touched, so every
comment and the layout of untouched fields survive), and the store then validates and
saves that text exactly like a hand edit. Validation issues name dotted fields of the
*new* file (``tools[2].url``); :class:`FormResult` maps them back to the form inputs
they concern, so each error is shown beside its field.

Form input names are the dotted paths themselves (``turn_detection.threshold``); webhook
tools are ``tools[i].<field>`` with ``i`` their index when the page was opened, a new one
is ``new_tool.<field>``, and the built-ins are ``end_call`` (checkbox) and ``transfer``
(one ``name = +number`` per line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from agentplatform.agents.issues import Issue, parse_dotted
from agentplatform.agents.spec import AgentSpec, EndCallTool, TransferCallTool, WebhookTool
from agentplatform.agents.yamlio import REMOVE, dump_document, load_document, set_fields

# Which tab shows a field (by the first part of its dotted path). Anything else
# (rules, limits, credentials, the file as a whole) is edited on the YAML tab.
TABS: dict[str, tuple[str, ...]] = {
    "general": ("name", "description", "prompt", "model", "fallback_models",
                "max_output_tokens", "temperature", "greeting", "timezone"),
    "speech": ("voice_streaming", "voice", "cascade", "turn_detection", "phone_numbers",
               "g711_passthrough"),
    "tools": ("tools", "new_tool", "end_call", "transfer"),
    "rules": ("rules", "new_rule", "fallback_reply"),
    "advanced": ("advanced",),
}
WEBHOOK_FIELDS = ("name", "description", "url", "method", "timeout_seconds", "parameters")
NEW_TOOL = "new_tool"
# A rule's form fields: ``rules[i].<field>`` for the rules on file, ``new_rule.<field>``.
RULE_FIELDS = ("match", "reply", "tool", "arguments", "after_tool")
NEW_RULE = "new_rule"


def tab_of(form_field: str) -> str:
    head = parse_dotted(form_field)[:1]
    for tab, heads in TABS.items():
        if head and head[0] in heads:
            return tab
    return "yaml"


# ------------------------------------------------------------------ spec -> form values


def _lines(mapping: Mapping[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in mapping.items())


def _text(value: object) -> str:
    return "" if value is None else str(value)


def values_from_spec(spec: AgentSpec) -> dict[str, Any]:
    """What the form shows for an agent as it is on disk."""
    td, stt, tts = spec.turn_detection, spec.cascade.stt, spec.cascade.tts
    values: dict[str, Any] = {
        "description": spec.description, "prompt": spec.prompt, "model": spec.model,
        "max_output_tokens": _text(spec.max_output_tokens),
        "temperature": _text(spec.temperature), "greeting": _text(spec.greeting),
        "voice_streaming": spec.voice_streaming, "voice": _text(spec.voice),
        "cascade.stt.service": stt.service, "cascade.stt.model": _text(stt.model),
        "cascade.tts.service": tts.service, "cascade.tts.voice": _text(tts.voice),
        "turn_detection.type": td.type, "turn_detection.threshold": _text(td.threshold),
        "turn_detection.prefix_padding_ms": _text(td.prefix_padding_ms),
        "turn_detection.silence_duration_ms": _text(td.silence_duration_ms),
        "turn_detection.eagerness": td.eagerness,
        "phone_numbers": "\n".join(spec.phone_numbers),
        "advanced": json.dumps(spec.advanced, indent=2) if spec.advanced else "{}",
        "end_call": any(isinstance(t, EndCallTool) for t in spec.tools),
        "transfer": "", "webhooks": [], "new_tool": {},
        "rules": [{"slot": f"rules[{i}]", **_rule_values(rule.model_dump())}
                  for i, rule in enumerate(spec.rules)],
        "new_rule": {}, "fallback_reply": spec.fallback_reply,
    }
    for i, tool in enumerate(spec.tools):
        if isinstance(tool, TransferCallTool):
            values["transfer"] = _lines(tool.destinations)
        elif isinstance(tool, WebhookTool):
            values["webhooks"].append({
                "slot": f"tools[{i}]", "name": tool.name, "description": tool.description,
                "url": tool.url, "method": tool.method,
                "timeout_seconds": _text(tool.timeout_seconds),
                "parameters": json.dumps(tool.parameters, indent=2),
            })
    return values


def values_from_form(form: Mapping[str, Any], slots: list[str]) -> dict[str, Any]:
    """What the form shows again after a refused save: exactly what was submitted."""
    values: dict[str, Any] = {k: str(form.get(k, "")) for k in _SCALARS}
    values["voice_streaming"] = "voice_streaming" in form
    values["end_call"] = "end_call" in form
    values["transfer"] = str(form.get("transfer", ""))
    values["advanced"] = str(form.get("advanced", ""))
    values["webhooks"] = [
        {"slot": slot, **{f: str(form.get(f"{slot}.{f}", "")) for f in WEBHOOK_FIELDS},
         "remove": f"{slot}.remove" in form}
        for slot in slots if slot != NEW_TOOL
    ]
    values["new_tool"] = {f: str(form.get(f"{NEW_TOOL}.{f}", "")) for f in WEBHOOK_FIELDS}
    rule_slots = [str(s) for s in form.getlist("rule_slot")] if hasattr(form, "getlist") \
        else []
    values["rules"] = [{"slot": slot, **{f: str(form.get(f"{slot}.{f}", "")) for f in RULE_FIELDS},
                        "remove": f"{slot}.remove" in form}
                       for slot in rule_slots if slot != NEW_RULE]
    values["new_rule"] = {f: str(form.get(f"{NEW_RULE}.{f}", "")) for f in RULE_FIELDS}
    values["fallback_reply"] = str(form.get("fallback_reply", ""))
    return values


def _rule_values(rule: Mapping[str, Any]) -> dict[str, str]:
    """A rule as the form's text fields."""
    tool = rule.get("tool") or {}
    return {"match": rule.get("match") or "", "reply": rule.get("reply") or "",
            "tool": tool.get("name", ""), "after_tool": rule.get("after_tool") or "",
            "arguments": json.dumps(tool.get("arguments")) if tool.get("arguments") else ""}


_SCALARS = ("description", "prompt", "model", "max_output_tokens", "temperature", "greeting",
            "voice", "cascade.stt.service", "cascade.stt.model", "cascade.tts.service",
            "cascade.tts.voice", "turn_detection.type", "turn_detection.threshold",
            "turn_detection.prefix_padding_ms", "turn_detection.silence_duration_ms",
            "turn_detection.eagerness", "phone_numbers")


# ------------------------------------------------------------------ form -> YAML text


@dataclass(slots=True)
class FormResult:
    """The edited text, errors found before validation, and where each new tool index
    came from (to put validation issues back beside the right form field)."""

    text: str
    errors: dict[str, list[str]] = field(default_factory=dict)
    tool_slots: list[str] = field(default_factory=list)
    rule_slots: list[str] = field(default_factory=list)

    def add_error(self, form_field: str, message: str) -> None:
        self.errors.setdefault(form_field, []).append(message)

    def place(self, issues: list[Issue]) -> None:
        """File each validation issue under the form field it concerns."""
        for issue in issues:
            self.add_error(self.form_field(issue.field), issue.message)

    def form_field(self, issue_field: str) -> str:
        parts = parse_dotted(issue_field)
        if len(parts) >= 2 and parts[0] == "tools" and isinstance(parts[1], int) \
                and parts[1] < len(self.tool_slots):
            slot = self.tool_slots[parts[1]]
            rest = issue_field[len(f"tools[{parts[1]}]"):]
            if slot in ("end_call", "transfer"):
                return slot
            return slot + rest
        if len(parts) >= 2 and parts[0] == "rules" and isinstance(parts[1], int) \
                and parts[1] < len(self.rule_slots):
            rest = issue_field[len(f"rules[{parts[1]}]"):]
            return self.rule_slots[parts[1]] + rest.replace(".tool.name", ".tool").replace(
                ".tool.arguments", ".arguments")
        return issue_field


def _number(raw: str) -> int | float | str | None:
    """``""`` → None; a number → int/float; anything else stays text for validation
    to reject with the field's name (\"should be a valid integer, got 'abc'\")."""
    raw = raw.strip()
    if not raw:
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def _prose(raw: str) -> str:
    return raw.replace("\r\n", "\n").replace("\r", "\n")


def _yaml_str(value: str) -> str | LiteralScalarString:
    """Multi-line text as a ``|`` block, as an admin would write a prompt."""
    return LiteralScalarString(value if value.endswith("\n") else value + "\n") \
        if "\n" in value.strip("\n") else value


def _same(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def _destinations(raw: str, result: FormResult) -> dict[str, str]:
    found: dict[str, str] = {}
    for n, line in enumerate(_prose(raw).split("\n"), start=1):
        if not line.strip():
            continue
        name, sep, number = line.partition("=")
        if not sep or not name.strip() or not number.strip():
            result.add_error("transfer", f"line {n}: write 'name = +15555550100', got {line!r}")
            continue
        found[name.strip()] = number.strip()
    return found


def _json_field(raw: str, form_field: str, result: FormResult) -> Any:
    try:
        return json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        result.add_error(form_field, f"not valid JSON: {exc.msg} (line {exc.lineno}, "
                         f"column {exc.colno})")
        return None


def apply_form(text: str, spec: AgentSpec, form: Mapping[str, Any], *, file: str,
               slots: list[str]) -> FormResult:
    """The agent's YAML ``text`` with the submitted form's changes made to it."""
    result = FormResult(text=text)
    changes: dict[str, Any] = {}

    def change(path: str, new: Any, old: Any) -> None:
        if _same(new, old):
            return
        changes[path] = REMOVE if new is None else (_yaml_str(new) if isinstance(new, str) else new)

    for path in ("description", "prompt", "model"):
        change(path, _prose(str(form.get(path, ""))), getattr(spec, path))
    for path in ("greeting", "voice"):
        change(path, str(form.get(path, "")).strip() or None, getattr(spec, path))
    for path in ("max_output_tokens", "temperature"):
        change(path, _number(str(form.get(path, ""))), getattr(spec, path))
    change("voice_streaming", "voice_streaming" in form, spec.voice_streaming)
    stt, tts = spec.cascade.stt, spec.cascade.tts
    change("cascade.stt.service", str(form.get("cascade.stt.service", stt.service)), stt.service)
    change("cascade.stt.model", str(form.get("cascade.stt.model", "")).strip() or None, stt.model)
    change("cascade.tts.service", str(form.get("cascade.tts.service", tts.service)), tts.service)
    change("cascade.tts.voice", str(form.get("cascade.tts.voice", "")).strip() or None, tts.voice)
    td = spec.turn_detection
    for key in ("type", "eagerness"):
        change(f"turn_detection.{key}", str(form.get(f"turn_detection.{key}", "")),
               getattr(td, key))
    for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
        raw = _number(str(form.get(f"turn_detection.{key}", "")))
        if raw is not None:
            change(f"turn_detection.{key}", raw, getattr(td, key))
    numbers = [n.strip() for n in _prose(str(form.get("phone_numbers", ""))).split("\n")
               if n.strip()]
    if numbers != spec.phone_numbers:
        changes["phone_numbers"] = numbers if numbers else REMOVE
    if "rule_slot" in form or form.get("rule_slots"):  # the rules tab was on the page
        _apply_rules(form, spec, changes, result)
    advanced = _json_field(str(form.get("advanced", "")), "advanced", result)
    if advanced is not None and not isinstance(advanced, dict):
        result.add_error("advanced", "must be a JSON object keyed by provider, e.g. "
                         '{"openai_realtime": {...}}')
    elif advanced is not None and advanced != spec.advanced:
        changes["advanced"] = advanced
    try:
        text = set_fields(text, changes, file=file) if changes else text
    except Exception as exc:  # an AgentError naming the path it could not set
        result.add_error("(file)", str(exc))
        return result
    result.text = _apply_tools(text, spec, form, file=file, slots=slots, result=result)
    return result


def _apply_rules(form: Mapping[str, Any], spec: AgentSpec, changes: dict[str, Any],
                 result: FormResult) -> None:
    """The rules as the form has them (in order, removed ones left out, a filled-in new
    one added), written only when they differ from the file's; the fallback reply."""
    slots = [s for s in str(form.get("rule_slots", "")).split(",") if s]
    rules: list[dict[str, Any]] = []
    for slot in slots:
        if f"{slot}.remove" in form:
            continue
        raw = {f: _prose(str(form.get(f"{slot}.{f}", ""))).strip() for f in RULE_FIELDS}
        if slot == NEW_RULE and not any(raw.values()):
            continue
        rule: dict[str, Any] = {"match": raw["match"]}
        if raw["reply"]:
            rule["reply"] = raw["reply"]
        if raw["tool"]:
            arguments = _json_field(raw["arguments"], f"{slot}.arguments", result)
            rule["tool"] = {"name": raw["tool"], **({"arguments": arguments}
                                                    if arguments else {})}
        if raw["after_tool"]:
            rule["after_tool"] = raw["after_tool"]
        rules.append(rule)
        result.rule_slots.append(slot)
    old = [r.model_dump(exclude_none=True, exclude_defaults=True) for r in spec.rules]
    if rules != old:
        changes["rules"] = rules if rules else REMOVE
    fallback = _prose(str(form.get("fallback_reply", ""))).strip()
    if fallback and fallback != spec.fallback_reply:
        changes["fallback_reply"] = fallback


def _apply_tools(text: str, spec: AgentSpec, form: Mapping[str, Any], *, file: str,
                 slots: list[str], result: FormResult) -> str:
    doc = load_document(text, file=file)
    old_nodes = doc.get("tools") if isinstance(doc, CommentedMap) else None
    if not isinstance(old_nodes, CommentedSeq):
        old_nodes = CommentedSeq()
    kept: list[Any] = []
    structure_changed = False
    for i, (tool, node) in enumerate(zip(spec.tools, old_nodes, strict=False)):
        slot = f"tools[{i}]"
        if isinstance(tool, WebhookTool):
            if slot not in slots:  # the page did not show it: leave it alone
                kept.append(node)
                result.tool_slots.append(slot)
                continue
            if f"{slot}.remove" in form:
                structure_changed = True
                continue
            _edit_webhook(node, tool, form, slot, result)
        elif isinstance(tool, EndCallTool):
            if "end_call" not in form:
                structure_changed = True
                continue
            slot = "end_call"
        elif isinstance(tool, TransferCallTool):
            wanted = _destinations(str(form.get("transfer", "")), result)
            if not wanted and not result.errors.get("transfer"):
                structure_changed = True
                continue
            if wanted and wanted != tool.destinations:
                node["destinations"] = CommentedMap(wanted)
            slot = "transfer"
        kept.append(node)
        result.tool_slots.append(slot)
    has = {type(t) for t in spec.tools}
    new_name = str(form.get(f"{NEW_TOOL}.name", "")).strip()
    new_url = str(form.get(f"{NEW_TOOL}.url", "")).strip()
    if NEW_TOOL in slots and (new_name or new_url):
        node = CommentedMap(type="webhook")
        _edit_webhook(node, None, form, NEW_TOOL, result)
        kept.append(node)
        result.tool_slots.append(NEW_TOOL)
        structure_changed = True
    if "end_call" in form and EndCallTool not in has:
        kept.append(CommentedMap(type="end_call"))
        result.tool_slots.append("end_call")
        structure_changed = True
    if TransferCallTool not in has:
        wanted = _destinations(str(form.get("transfer", "")), result)
        if wanted:
            kept.append(CommentedMap(type="transfer_call", destinations=CommentedMap(wanted)))
            result.tool_slots.append("transfer")
            structure_changed = True
    if structure_changed:
        if kept:
            seq = CommentedSeq(kept)
            doc["tools"] = seq
        elif "tools" in doc:
            del doc["tools"]
    return dump_document(doc)


def _edit_webhook(node: Any, tool: WebhookTool | None, form: Mapping[str, Any], slot: str,
                  result: FormResult) -> None:
    def old(name: str) -> Any:
        return getattr(tool, name) if tool is not None else None

    for name in ("name", "description", "url", "method"):
        new = _prose(str(form.get(f"{slot}.{name}", ""))).strip()
        if not _same(new, old(name)) and (new or tool is not None):
            node[name] = new
    timeout = _number(str(form.get(f"{slot}.timeout_seconds", "")))
    if timeout is not None and timeout != old("timeout_seconds"):
        node["timeout_seconds"] = timeout
    raw = str(form.get(f"{slot}.parameters", ""))
    if tool is None and not raw.strip():
        return  # a new tool without parameters keeps the spec's empty object schema
    params = _json_field(raw, f"{slot}.parameters", result)
    if params is not None and params != old("parameters"):
        node["parameters"] = params
