"""Checks on one agent file that need more than its shape: the catalog, the settings.

Shape problems (wrong types, unknown fields) come from ``AgentSpec`` and are
turned into the same ``Issue`` form here, so an admin sees one list, each entry
naming the file and the dotted field. Checks across files (two agents on one
number) belong to the store.

Errors stop an agent from loading; warnings (a missing API key, a small token
cap) are shown but the agent still loads, so the server runs offline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from agentplatform.agents import envpolicy, placeholders
from agentplatform.agents.issues import WHOLE_FILE, Issue, dotted, error, warning
from agentplatform.agents.spec import AgentSpec, Tool, TransferCallTool, WebhookTool
from agentplatform.agents.yamlio import line_of, load_document, to_plain
from agentplatform.catalog import Catalog, Model
from agentplatform.config import Settings
from agentplatform.errors import AgentError, CatalogError

__all__ = ["Issue", "E164", "parse_agent", "validate_agent", "check_document", "check_text"]

# E.164: a plus, then 8 to 15 digits, the first not zero.
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
E164_HINT = "must be E.164: '+' then 8-15 digits, e.g. '+15555550100'"

# Fewer output tokens than this may cut a spoken answer off mid-sentence.
SMALL_TOKEN_CAP = 1000

# Tool ``type`` value -> its model class, read from the spec's Tool union.
_TOOL_TYPES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].default: cls for cls in get_args(Tool)
}
_TOOL_CLASS_NAMES = {cls.__name__ for cls in _TOOL_TYPES.values()}

# Friendlier words for pattern errors on fields admins type by hand.
_PATTERN_HINTS = {
    "name": "must be lowercase letters, digits, '-' or '_', starting with a letter or digit "
            "(at most 64 characters)",
    "tools.name": "must be letters, digits, '-' or '_' (at most 64 characters)",
}


# --- shape: pydantic errors -> issues -------------------------------------------------


def parse_agent(data: Any, *, file: str) -> tuple[AgentSpec | None, list[Issue]]:
    """Build the spec from plain data; every shape problem becomes an error Issue."""
    if data is None:
        return None, [error(file, WHOLE_FILE, "the file is empty; an agent needs at least 'name'")]
    if not isinstance(data, Mapping):
        return None, [error(file, WHOLE_FILE,
                            f"an agent file must be a mapping of fields, got {_kind(data)}")]
    try:
        return AgentSpec.model_validate(data), []
    except ValidationError as exc:
        return None, _shape_issues(exc, data, file)


def _shape_issues(exc: ValidationError, data: Mapping[str, Any], file: str) -> list[Issue]:
    issues: dict[tuple[str, str], Issue] = {}  # de-duplicated, first wins
    for err in exc.errors():
        converted = _convert(err, data, file)
        if converted is not None:
            issues.setdefault((converted.field, converted.message), converted)
    return list(issues.values())


def _convert(err: Mapping[str, Any], data: Mapping[str, Any], file: str) -> Issue | None:
    loc = list(err["loc"])
    # The model whose fields sit at loc[:depth]; names allowed fields for unknown ones.
    model: type[BaseModel] | None = AgentSpec
    depth = 1
    if len(loc) >= 2 and loc[0] == "tools" and isinstance(loc[1], int):
        # The Tool union reports a failure per member; keep the member the tool names.
        raw = _tool_raw(data, loc[1])
        if not isinstance(raw, Mapping):
            return error(file, dotted(loc[:2]), "each tool must be a mapping with a 'type' "
                         f"({', '.join(_TOOL_TYPES)}), got {_kind(raw)}")
        kind = raw.get("type", "webhook")
        cls = _TOOL_TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            return error(file, dotted([*loc[:2], "type"]),
                         f"unknown tool type {kind!r}; expected one of: {', '.join(_TOOL_TYPES)}")
        if len(loc) >= 3 and loc[2] in _TOOL_CLASS_NAMES:
            if loc[2] != cls.__name__:
                return None
            loc = loc[:2] + loc[3:]
        model, depth = cls, 3
    elif len(loc) >= 2 and isinstance(loc[0], str):
        model, depth = _section_model(loc[0]), 2
    owner = model if len(loc) == depth else None
    return error(file, dotted(loc), _message(err, loc, owner))


def _tool_raw(data: Mapping[str, Any], index: int) -> Any:
    tools = data.get("tools")
    if isinstance(tools, list) and 0 <= index < len(tools):
        return tools[index]
    return None


def _section_model(name: str) -> type[BaseModel] | None:
    info = AgentSpec.model_fields.get(name)
    ann = info.annotation if info else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _message(err: Mapping[str, Any], loc: list[Any], owner: type[BaseModel] | None) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = f"; allowed here: {', '.join(owner.model_fields)}" if owner else ""
        return f"unknown field {loc[-1]!r}{allowed}"
    if kind in ("dict_type", "model_type"):
        return f"must be a mapping (key: value), got {_kind(value)}"
    if kind == "list_type":
        return f"must be a list, got {_kind(value)}"
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return (f"must be text, got the number {value!r}; quote it in YAML "
                f"(a leading '+' or 0 is lost otherwise)")
    if kind == "string_pattern_mismatch":
        key = "tools.name" if loc[:1] == ["tools"] else dotted(loc)
        hint = _PATTERN_HINTS.get(key)
        if hint:
            return f"{hint}, got {value!r}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "enum", "string_pattern_mismatch", "bool_parsing",
                "int_parsing", "float_parsing", "int_from_float"):
        message += f", got {value!r}"
    return message


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"text {value!r}" if len(value) <= 40 else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


# --- meaning: checks against the catalog, the settings and the environment ------------


@dataclass(slots=True)
class _Ctx:
    spec: AgentSpec
    file: str
    catalog: Catalog
    settings: Settings
    environ: Mapping[str, str]
    model: Model | None  # None when the model is unknown (already an error)


def validate_agent(
    spec: AgentSpec, *, file: str, catalog: Catalog, settings: Settings,
    environ: Mapping[str, str] | None = None,
) -> list[Issue]:
    """Every problem with one agent that its shape cannot show. ``environ``
    defaults to ``os.environ`` (where bring-your-own keys are read)."""
    try:
        model: Model | None = catalog.model(spec.model)
    except CatalogError:
        model = None
    ctx = _Ctx(spec, file, catalog, settings, os.environ if environ is None else environ, model)
    issues: list[Issue] = []
    for check in _CHECKS:
        issues.extend(check(ctx))
    return issues


def _check_model(ctx: _Ctx) -> Iterable[Issue]:
    if ctx.model is None:
        yield error(ctx.file, "model", _unknown_model(ctx.catalog, ctx.spec.model))
    for i, model_id in enumerate(ctx.spec.fallback_models):
        try:
            ctx.catalog.model(model_id)
        except CatalogError:
            yield error(ctx.file, f"fallback_models[{i}]", _unknown_model(ctx.catalog, model_id))


def _unknown_model(catalog: Catalog, model_id: str) -> str:
    return f"unknown model {model_id!r}; the catalog offers: {', '.join(sorted(catalog.models))}"


def _check_voice(ctx: _Ctx) -> Iterable[Issue]:
    voice = ctx.spec.voice
    if voice is None:
        return
    if ctx.model is not None and voice not in ctx.model.voices:
        yield error(ctx.file, "voice", _voice_message(voice, ctx.model))
    for i, model_id in enumerate(ctx.spec.fallback_models):
        try:
            fallback = ctx.catalog.model(model_id)
        except CatalogError:
            continue
        if voice not in fallback.voices:
            yield warning(ctx.file, f"fallback_models[{i}]", _voice_message(voice, fallback)
                          + f"; if this fallback serves a call it uses "
                          f"{fallback.provider.default_voice!r}")


def _voice_message(voice: str, model: Model) -> str:
    near = [v for v in model.voices if v.lower() == voice.lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return (f"voice {voice!r} is not offered by {model.id}{hint}; "
            f"offered voices: {', '.join(model.voices)}")


def _check_max_output_tokens(ctx: _Ctx) -> Iterable[Issue]:
    tokens, model = ctx.spec.max_output_tokens, ctx.model
    if tokens is None:
        return
    if tokens < 1:
        yield error(ctx.file, "max_output_tokens", f"must be at least 1, got {tokens}")
    elif model is not None and tokens > model.max_output_tokens:
        yield error(ctx.file, "max_output_tokens",
                    f"{tokens} is above {model.id}'s cap of {model.max_output_tokens}")
    elif tokens < SMALL_TOKEN_CAP:
        yield warning(ctx.file, "max_output_tokens",
                      f"{tokens} is small; spoken answers may be cut off mid-sentence "
                      f"(a few thousand is typical)")


def _check_modality(ctx: _Ctx) -> Iterable[Issue]:
    model = ctx.model
    if model is None:
        return
    if ctx.spec.voice_streaming and not model.provider.speech:
        yield error(ctx.file, "voice_streaming",
                    f"{model.id} has no voice of its own: it is served by speech-to-text → "
                    f"text → text-to-speech; set voice_streaming: false")
    elif not ctx.spec.voice_streaming and not model.text_modality:
        yield error(ctx.file, "voice_streaming",
                    f"voice_streaming: false needs a model that answers in text, but "
                    f"{model.id} ({model.provider.label}) only produces audio; "
                    f"set voice_streaming: true or pick an OpenAI or Azure OpenAI model")


def _check_cascade(ctx: _Ctx) -> Iterable[Issue]:
    """The STT and TTS services a cascade agent names exist and offer what it picks."""
    if ctx.spec.voice_streaming and (ctx.model is None or ctx.model.provider.speech):
        return
    stt, tts = ctx.spec.cascade.stt, ctx.spec.cascade.tts
    try:
        service = ctx.catalog.stt_service(stt.service)
    except CatalogError as exc:
        yield error(ctx.file, "cascade.stt.service", str(exc))
    else:
        yield from _catalog_pick(ctx, "cascade.stt.model", lambda: service.model(stt.model))
        yield from _catalog_pick(ctx, "cascade.stt.language",
                                 lambda: service.language(stt.language))
        yield from _service_key(ctx, "cascade.stt.service", service.label, service.key_setting)
    try:
        voice_service = ctx.catalog.tts_service(tts.service)
    except CatalogError as exc:
        yield error(ctx.file, "cascade.tts.service", str(exc))
    else:
        yield from _catalog_pick(ctx, "cascade.tts.voice", lambda: voice_service.voice(tts.voice))
        yield from _catalog_pick(ctx, "cascade.tts.model", lambda: voice_service.model(tts.model))
        yield from _service_key(ctx, "cascade.tts.service", voice_service.label,
                                voice_service.key_setting)
    llm = ctx.spec.cascade.llm
    refused = _variable_refused(ctx, llm.api_key_env if llm is not None else None)
    if refused:
        yield error(ctx.file, "cascade.llm.api_key_env", refused)
    elif llm is not None and llm.api_key_env and not ctx.environ.get(llm.api_key_env):
        yield warning(ctx.file, "cascade.llm.api_key_env",
                      f"environment variable {llm.api_key_env} is not set; the endpoint is "
                      f"called without a key")
    if ctx.model is not None and not ctx.model.provider.speech and llm is None \
            and not ctx.settings.local_llm_url and not ctx.spec.rules:
        yield warning(ctx.file, "rules",
                      "no LOCAL_LLM_URL is set and the agent has no rules: the offline rules "
                      "responder can only answer with fallback_reply")


def _catalog_pick(ctx: _Ctx, field: str, pick: Callable[[], object]) -> Iterable[Issue]:
    try:
        pick()
    except CatalogError as exc:
        yield error(ctx.file, field, str(exc))


def _service_key(ctx: _Ctx, field: str, label: str, setting: str) -> Iterable[Issue]:
    if setting and not getattr(ctx.settings, setting, ""):
        yield warning(ctx.file, field, f"no {label} key: set {setting.upper()}; calls to "
                      f"this agent fail until then")


def _check_phone_numbers(ctx: _Ctx) -> Iterable[Issue]:
    seen: set[str] = set()
    for i, number in enumerate(ctx.spec.phone_numbers):
        field = f"phone_numbers[{i}]"
        if not E164.match(number):
            yield error(ctx.file, field, f"{number!r} {E164_HINT}")
        elif number in seen:
            yield warning(ctx.file, field, f"{number} is listed twice")
        seen.add(number)


def _check_advanced(ctx: _Ctx) -> Iterable[Issue]:
    known = sorted({p.advanced_key for p in ctx.catalog.providers.values()})
    mine = ctx.model.provider.advanced_key if ctx.model else None
    for key, block in ctx.spec.advanced.items():
        field = f"advanced.{key}"
        if key not in known:
            yield error(ctx.file, field,
                        f"unknown advanced key {key!r}; provider keys are: {', '.join(known)}")
            continue
        try:
            json.dumps(block)
        except (TypeError, ValueError) as exc:
            yield error(ctx.file, field, f"must be a JSON object: {exc}")
            continue
        if mine is not None and key != mine:
            yield warning(ctx.file, field,
                          f"{key!r} applies to another provider; {ctx.spec.model} reads "
                          f"'advanced.{mine}', so this block is ignored")


def _check_tools(ctx: _Ctx) -> Iterable[Issue]:
    first_index: dict[str, int] = {}
    for i, tool in enumerate(ctx.spec.tools):
        if tool.name in first_index:
            yield error(ctx.file, f"tools[{i}].name",
                        f"duplicate tool name {tool.name!r} (also tools[{first_index[tool.name]}])")
        else:
            first_index[tool.name] = i
        checker = _TOOL_CHECKS.get(type(tool))
        if checker is not None:
            yield from checker(ctx, i, tool)


def _check_webhook(ctx: _Ctx, i: int, tool: Any) -> Iterable[Issue]:
    parts = urlsplit(tool.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield error(ctx.file, f"tools[{i}].url",
                    f"must be an http:// or https:// URL with a host, got {tool.url!r}")
    for header, variable in tool.headers_from_env.items():
        refused = envpolicy.refusal(variable, envpolicy.allowlist(ctx.settings))
        if refused:
            yield error(ctx.file, f"tools[{i}].headers_from_env.{header}", refused)
        elif not ctx.environ.get(variable):
            yield warning(ctx.file, f"tools[{i}].headers_from_env.{header}",
                          f"environment variable {variable} is not set; the header is sent empty")


def _check_transfer(ctx: _Ctx, i: int, tool: Any) -> Iterable[Issue]:
    for name, number in tool.destinations.items():
        if not E164.match(number):
            yield error(ctx.file, f"tools[{i}].destinations.{name}", f"{number!r} {E164_HINT}")


_TOOL_CHECKS: dict[type, Callable[[_Ctx, int, Any], Iterable[Issue]]] = {
    WebhookTool: _check_webhook,
    TransferCallTool: _check_transfer,
}


def _variable_refused(ctx: _Ctx, variable: str | None) -> str | None:
    return envpolicy.refusal(variable, envpolicy.allowlist(ctx.settings)) if variable else None


def _check_variables(ctx: _Ctx) -> Iterable[Issue]:
    """The agent's own key and endpoint variables must be ones the operator allowed:
    a provider's error can quote what it was sent, into the call's record."""
    creds = ctx.spec.credentials
    for field, variable in (("credentials.api_key_env", creds.api_key_env),
                            ("credentials.endpoint_env", creds.endpoint_env)):
        refused = _variable_refused(ctx, variable)
        if refused:
            yield error(ctx.file, field, refused)


def _check_keys(ctx: _Ctx) -> Iterable[Issue]:
    creds = ctx.spec.credentials
    if _variable_refused(ctx, creds.api_key_env) or _variable_refused(ctx, creds.endpoint_env):
        return  # already an error; no advice about a variable that may not be used
    if creds.api_key_env:
        if not ctx.environ.get(creds.api_key_env):
            yield warning(ctx.file, "credentials.api_key_env",
                          f"environment variable {creds.api_key_env} is not set; calls to this "
                          f"agent fail until it is")
    elif ctx.model is not None:
        yield from _platform_key(ctx, ctx.model, "model")
    if creds.endpoint_env and not ctx.environ.get(creds.endpoint_env):
        yield warning(ctx.file, "credentials.endpoint_env",
                      f"environment variable {creds.endpoint_env} is not set")
    elif not creds.endpoint_env and ctx.model is not None:
        provider = ctx.model.provider
        if provider.url_setting and not provider.url \
                and not getattr(ctx.settings, provider.url_setting, ""):
            yield warning(ctx.file, "model",
                          f"{provider.label} needs an endpoint: set "
                          f"{provider.url_setting.upper()} or credentials.endpoint_env")
    main_provider = ctx.model.provider.name if ctx.model else None
    for i, model_id in enumerate(ctx.spec.fallback_models):
        try:
            fallback = ctx.catalog.model(model_id)
        except CatalogError:
            continue
        if creds.api_key_env and fallback.provider.name == main_provider:
            continue  # the agent's own key serves its own provider
        yield from _platform_key(ctx, fallback, f"fallback_models[{i}]")


def _platform_key(ctx: _Ctx, model: Model, field: str) -> Iterable[Issue]:
    setting = model.provider.key_setting
    if setting and not getattr(ctx.settings, setting, ""):
        yield warning(ctx.file, field,
                      f"no {model.provider.label} key: set {setting.upper()} or name your own "
                      f"variable in credentials.api_key_env; calls using {model.id} fail "
                      f"until then")


def _check_placeholders(ctx: _Ctx) -> Iterable[Issue]:
    allowed = ", ".join([*placeholders.KNOWN_NAMES, "params.<name>"])
    for field in ("prompt", "greeting"):
        for name in placeholders.unknown_placeholders(getattr(ctx.spec, field)):
            yield error(ctx.file, field,
                        f"unknown placeholder {{{{{name}}}}}; known placeholders: {allowed}")


def _check_passthrough(ctx: _Ctx) -> Iterable[Issue]:
    if ctx.spec.g711_passthrough and ctx.model is not None and not ctx.model.provider.g711:
        yield warning(ctx.file, "g711_passthrough",
                      f"{ctx.model.provider.label} does not accept G.711 audio; "
                      f"calls are transcoded anyway")


_CHECKS: tuple[Callable[[_Ctx], Iterable[Issue]], ...] = (
    _check_model, _check_voice, _check_max_output_tokens, _check_modality, _check_cascade,
    _check_phone_numbers, _check_advanced, _check_tools, _check_variables, _check_keys,
    _check_placeholders, _check_passthrough,
)


# --- whole file -----------------------------------------------------------------------


def check_document(
    doc: Any, *, file: str, catalog: Catalog, settings: Settings,
    environ: Mapping[str, str] | None = None,
) -> tuple[AgentSpec | None, list[Issue]]:
    """Shape, then meaning, of a parsed round-trip document; issues carry line numbers.
    A file with shape errors still has the meaning of its other fields checked, so an
    editor hears of every mistake in one save, not one per save."""
    plain = to_plain(doc)
    spec, issues = parse_agent(plain, file=file)
    if spec is not None:
        issues = validate_agent(spec, file=file, catalog=catalog, settings=settings,
                                environ=environ)
    else:
        issues = issues + _meaning_beside_shape(plain, issues, file=file, catalog=catalog,
                                                settings=settings, environ=environ)
    return spec, [i.at_line(line_of(doc, i.field)) for i in issues]


def _meaning_beside_shape(
    plain: Any, shape: list[Issue], *, file: str, catalog: Catalog, settings: Settings,
    environ: Mapping[str, str] | None,
) -> list[Issue]:
    """The meaning errors of the fields without shape errors: the file minus each
    top-level field that has one, checked as a whole (nothing, if that cannot load)."""
    if not isinstance(plain, Mapping):
        return []
    broken = {i.field.split(".")[0].split("[")[0] for i in shape}
    rest = {k: v for k, v in plain.items() if k not in broken}
    spec, _ = parse_agent(rest, file=file)
    if spec is None:
        return []
    found = validate_agent(spec, file=file, catalog=catalog, settings=settings, environ=environ)
    return [i for i in found if i.is_error
            and i.field.split(".")[0].split("[")[0] not in broken]


def check_text(
    text: str, *, file: str, catalog: Catalog, settings: Settings,
    environ: Mapping[str, str] | None = None,
) -> tuple[AgentSpec | None, list[Issue]]:
    """Everything wrong with one agent file's text (YAML syntax included)."""
    try:
        doc = load_document(text, file=file)
    except AgentError as exc:
        return None, [error(exc.file, exc.field, exc.message)]
    return check_document(doc, file=file, catalog=catalog, settings=settings, environ=environ)
