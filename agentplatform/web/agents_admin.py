"""Admin screens for agents: list, create, edit (tabs + raw YAML), duplicate, delete.

Every write goes through ``AgentStore.check``/``save``: the file is written atomically
and only when it validates, so a refused save leaves the file byte for byte as it was
and the page shows each error beside its field. The event loop also carries live calls,
so nothing here parses, validates or dumps YAML on it: that runs in the agent-file
worker process (``agents/offload.py``) with a time limit, file reads in a thread, and
edits run under one lock, so two saves never interleave.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from agentplatform.agents import offload
from agentplatform.agents.examine import Examined, examine_text
from agentplatform.agents.issues import AgentInvalid, AgentNotFound, Issue, errors_in, warnings_in
from agentplatform.agents.spec import AgentSpec
from agentplatform.agents.keys import missing_keys
from agentplatform.agents.store import AgentStore
from agentplatform.agents.validation import SMALL_TOKEN_CAP
from agentplatform.agents.yamlio import REMOVE, set_fields
from agentplatform.catalog import Catalog
from agentplatform.errors import AgentError, CatalogError
from agentplatform.text.sessions import LOCAL_PROVIDER
from agentplatform.web import agent_templates
from agentplatform.web.agent_form import (
    NEW_RULE, NEW_TOOL, FormResult, apply_form, tab_of, values_from_form, values_from_spec,
)
from agentplatform.web.auth import require_csrf
from agentplatform.web.templating import templates

class _TimeLimitedRoute(APIRoute):
    """A job on an agent file that outlived its time limit answers 503, saying so."""

    def get_route_handler(self):  # type: ignore[no-untyped-def]
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except offload.AgentWorkTimeout as exc:
                return PlainTextResponse(str(exc), status_code=503)

        return guarded


router = APIRouter(dependencies=[Depends(require_csrf)], route_class=_TimeLimitedRoute)
TAB_NAMES = {"general": "General", "speech": "Speech & Telephony", "tools": "Tools",
             "rules": "Rules", "advanced": "Advanced", "yaml": "YAML"}

def _store(request: Request) -> AgentStore:
    return request.app.state.platform.store


def _lock(request: Request) -> asyncio.Lock:
    lock = getattr(request.app.state, "agents_lock", None)
    if lock is None:
        lock = request.app.state.agents_lock = asyncio.Lock()
    return lock


async def _examine(request: Request, path: Path, text: str) -> Examined:
    """The file's spec and issues, worked out off the event loop."""
    store = _store(request)
    return await offload.run(examine_text, text, file=str(path), catalog=store.catalog,
                             settings=request.app.state.platform.settings,
                             environ=store.environ_snapshot())


def _form_data(form: Any) -> dict[str, str]:
    """The submitted form as plain text fields (what the worker process can be sent);
    ``get`` on it answers as the form's own ``get`` does (the last value)."""
    return {str(key): value if isinstance(value, str) else "" for key, value in form.items()}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def catalog_choices(catalog: Catalog) -> dict[str, Any]:
    """Dropdown contents: models grouped by provider, each provider's voices, the
    cascade's speech services (empty when the catalog has none)."""
    groups: dict[str, dict[str, Any]] = {}
    for model in catalog.models.values():
        provider = model.provider
        group = groups.setdefault(provider.name, {"label": provider.label, "models": []})
        group["models"].append({"id": model.id, "text": model.text_modality})
    voices = {m.id: list(m.voices) for m in catalog.models.values()}
    defaults = {m.id: m.provider.default_voice for m in catalog.models.values()}
    stt = getattr(catalog, "stt_services", {}) or {}
    tts = getattr(catalog, "tts_services", {}) or {}
    return {
        "model_groups": groups, "voices": voices, "default_voices": defaults,
        "stt_services": {n: {"label": s.label, "models": list(s.models)} for n, s in stt.items()},
        "tts_services": {n: {"label": s.label, "voices": list(s.voices),
                             "default": s.default_voice} for n, s in tts.items()},
    }


# ------------------------------------------------------------------ list


@router.get("/", response_class=HTMLResponse)
async def agents_page(request: Request, deleted: str | None = None) -> HTMLResponse:
    store = _store(request)
    await store.refresh_async()
    broken = [{"name": Path(file).stem, "file": Path(file).name, "issues": errors_in(issues)}
              for file, issues in sorted(store.problems.items())]
    return templates.TemplateResponse(request, "agents.html", {
        "agents": sorted(store.agents.values(), key=lambda a: a.name), "broken": broken,
        "deleted": deleted,
    })


# ------------------------------------------------------------------ create


@router.get("/agents/new", response_class=HTMLResponse)
async def new_agent_form(request: Request) -> HTMLResponse:
    missing = await _templates_missing(request)
    return _new_page(request, {"name": "", "description": "", "model": "",
                               "template": agent_templates.preferred(missing)}, {}, missing)


async def _template_specs(request: Request) -> dict[str, AgentSpec | None]:
    """Each template as a spec, parsed once per app in the agent-file worker."""
    cached = getattr(request.app.state, "template_specs", None)
    if cached is None:
        cached = {}
        for t in agent_templates.TEMPLATES:
            text = agent_templates.template_text(t.key, name="new-agent", description="")
            spec, _ = await _store(request).check_async("new-agent", text)
            cached[t.key] = spec
        request.app.state.template_specs = cached
    return cached


async def _templates_missing(request: Request) -> dict[str, list[str]]:
    """Per template, the keys it needs that this server lacks (empty: it can run)."""
    platform = request.app.state.platform
    return {key: missing_keys(spec, platform.catalog, platform.settings)
            if spec is not None else ["(the template does not load)"]
            for key, spec in (await _template_specs(request)).items()}


def _new_page(request: Request, values: dict[str, str], errors: dict[str, list[str]],
              missing: dict[str, list[str]], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, "agent_new.html", {
        "values": values, "errors": errors, "agent_templates": agent_templates.TEMPLATES,
        "missing": missing, **catalog_choices(_store(request).catalog),
    }, status_code=status)


@router.post("/agents/new")
async def create_agent(request: Request, name: str = Form(""), description: str = Form(""),
                       model: str = Form(""), template: str = Form("")) -> Response:
    """A new agent file from a template (the preferred one when none is named), with
    the model swapped when one is chosen; saved only when it validates."""
    store = _store(request)
    missing = await _templates_missing(request)
    values = {"name": name.strip(), "description": description.strip() or "A new agent.",
              "model": model.strip(),
              "template": template.strip() or agent_templates.preferred(missing)}
    errors: dict[str, list[str]] = {}
    if values["template"] not in agent_templates.BY_KEY:
        errors["template"] = [f"no template {values['template']!r}; choose one of "
                              + ", ".join(agent_templates.BY_KEY)]
        return _new_page(request, values, errors, missing, 422)
    if store.path_for(values["name"]) is not None:
        errors["name"] = [f"an agent file named {values['name']}.yaml already exists"]
        return _new_page(request, values, errors, missing, 422)
    text = agent_templates.template_text(values["template"], name=values["name"],
                                         description=values["description"])
    try:
        if values["model"]:
            text = await offload.run(set_fields, text, {"model": values["model"]},
                                     file=f"{values['name']}.yaml")
        async with _lock(request):
            await store.save_async(values["name"], text)
    except AgentInvalid as exc:
        for issue in errors_in(exc.issues):
            errors.setdefault(issue.field, []).append(issue.message)
        return _new_page(request, values, errors, missing, 422)
    except AgentError as exc:
        errors.setdefault(exc.field, []).append(exc.message)
        return _new_page(request, values, errors, missing, 422)
    return RedirectResponse(f"/agents/{values['name']}?saved=created", status_code=303)


# ------------------------------------------------------------------ edit


def _read(store: AgentStore, name: str) -> tuple[Path, str]:
    path = store.path_for(name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r}")
    return path, path.read_text(encoding="utf-8")


def _issue_map(issues: list[Issue], result: FormResult | None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for issue in issues:
        key = result.form_field(issue.field) if result else issue.field
        found.setdefault(key, []).append(issue.message)
    return found


def _edit_page(request: Request, name: str, *, text: str, base: str, spec: AgentSpec | None,
               issues: list[Issue], values: dict[str, Any] | None = None,
               errors: dict[str, list[str]] | None = None, tab: str = "general",
               yaml_text: str | None = None, saved: str | None = None,
               status: int = 200) -> HTMLResponse:
    errors = errors if errors is not None else _issue_map(errors_in(issues), None)
    notes = _issue_map(warnings_in(issues), None)
    if spec is None and values is None:
        tab = "yaml"  # a file that does not load can only be fixed as text
    if errors:
        tab = tab_of(next(iter(errors)))
    error_tabs = {tab_of(k) for k in errors}
    return templates.TemplateResponse(request, "agent_edit.html", {
        "name": name, "spec": spec, "values": values or (values_from_spec(spec) if spec else {}),
        "errors": errors, "notes": notes, "tab": tab, "tabs": TAB_NAMES,
        "error_tabs": error_tabs, "yaml_text": yaml_text if yaml_text is not None else text,
        "base": base, "saved": saved, "all_issues": issues, "new_tool": NEW_TOOL,
        "small_token_cap": SMALL_TOKEN_CAP, "new_rule": NEW_RULE,
        "rules_answer": spec is not None and _rules_answer(request, spec),
        "tool_names": [t.name for t in spec.tools] if spec is not None else [],
        **catalog_choices(_store(request).catalog),
    }, status_code=status)


def _rules_answer(request: Request, spec: AgentSpec) -> bool:
    """Whether the offline rules, not a language model, answer this agent's callers:
    a local model, no chat endpoint of its own, and no LOCAL_LLM_URL."""
    platform = request.app.state.platform
    try:
        local = platform.catalog.model(spec.model).provider.name == LOCAL_PROVIDER
    except CatalogError:
        return False
    return local and spec.cascade.llm is None and not platform.settings.local_llm_url


@router.get("/agents/{name}", response_class=HTMLResponse)
async def edit_agent(request: Request, name: str, tab: str = "general",
                     saved: str | None = None) -> HTMLResponse:
    store = _store(request)
    await store.refresh_async()
    path, text = await asyncio.to_thread(_read, store, name)
    found = await _examine(request, path, text)
    spec, issues = found.spec, list(found.issues)
    return _edit_page(request, name, text=text, base=_digest(text), spec=spec, issues=issues,
                      tab=tab if tab in TAB_NAMES else "general", saved=saved)


@router.post("/agents/{name}")
async def save_agent(request: Request, name: str) -> Response:
    store = _store(request)
    form = await request.form()
    tab = str(form.get("tab", "general"))
    slots = [str(s) for s in form.getlist("webhook_slot")]
    async with _lock(request):
        path, text = await asyncio.to_thread(_read, store, name)
        found = await _examine(request, path, text)
        spec, issues = found.spec, list(found.issues)
        if str(form.get("base", "")) != _digest(text):
            return _edit_page(request, name, text=text, base=_digest(text), spec=spec,
                              issues=issues, tab=tab, status=409, errors={"(file)": [
                                  "the file changed on disk since this page was opened; "
                                  "your edits were not saved — reload and make them again"]})
        if spec is None:
            raise HTTPException(status_code=409, detail="this file does not load; fix it on "
                                "the YAML tab first")
        data = _form_data(form)
        data["rule_slots"] = ",".join(str(s) for s in form.getlist("rule_slot"))
        result = await offload.run(apply_form, text, spec, data, file=str(path), slots=slots)
        if not result.errors:
            _, new_issues = await store.check_async(name, result.text)
            result.place(errors_in(new_issues))
        if result.errors:
            return _edit_page(request, name, text=text, base=_digest(text), spec=spec,
                              issues=issues, values=values_from_form(form, slots),
                              errors=result.errors, tab=tab, status=422)
        if result.text != text:
            await store.save_async(name, result.text)
    return RedirectResponse(f"/agents/{name}?tab={tab}&saved="
                            f"{'saved' if result.text != text else 'unchanged'}", status_code=303)


@router.post("/agents/{name}/yaml")
async def save_yaml(request: Request, name: str, yaml_text: str = Form(""),
                    base: str = Form("")) -> Response:
    store = _store(request)
    new_text = yaml_text.replace("\r\n", "\n")
    async with _lock(request):
        path, text = await asyncio.to_thread(_read, store, name)
        found = await _examine(request, path, text)
        spec, issues = found.spec, list(found.issues)
        if base != _digest(text):
            errors = {"(file)": ["the file changed on disk since this page was opened; "
                                 "copy your text, reload, and apply it again"]}
        else:
            _, new_issues = await store.check_async(name, new_text)
            errors = _issue_map(errors_in(new_issues), None)
            errors = {f"yaml:{k}": v for k, v in errors.items()}
            if not errors:
                await store.save_async(name, new_text)
                return RedirectResponse(f"/agents/{name}?tab=yaml&saved=saved", status_code=303)
            issues = new_issues
        return _edit_page(request, name, text=text, base=_digest(text), spec=spec,
                          issues=issues, errors=errors, tab="yaml", yaml_text=yaml_text,
                          status=422)


# ------------------------------------------------------------------ duplicate, delete


@router.post("/agents/{name}/duplicate")
async def duplicate_agent(request: Request, name: str, new_name: str = Form("")) -> Response:
    store = _store(request)
    new_name = new_name.strip()
    async with _lock(request):
        path, text = await asyncio.to_thread(_read, store, name)
        problem = ""
        if store.path_for(new_name) is not None:
            problem = f"an agent file named {new_name}.yaml already exists"
        else:
            try:
                # Phone numbers belong to one agent: the copy starts with none.
                copy = await offload.run(set_fields, text,
                                         {"name": new_name, "phone_numbers": REMOVE},
                                         file=str(path))
                await store.save_async(new_name, copy)
            except AgentInvalid as exc:
                problem = "; ".join(f"{i.field}: {i.message}" for i in errors_in(exc.issues))
            except AgentError as exc:
                problem = exc.message
    if problem:
        raise HTTPException(status_code=422, detail=f"cannot duplicate {name} as "
                            f"{new_name!r}: {problem}")
    return RedirectResponse(f"/agents/{new_name}?saved=duplicated", status_code=303)


@router.get("/agents/{name}/delete", response_class=HTMLResponse)
async def confirm_delete(request: Request, name: str) -> HTMLResponse:
    path, _ = await asyncio.to_thread(_read, _store(request), name)
    return templates.TemplateResponse(request, "agent_delete.html",
                                      {"name": name, "file": path.name})


@router.post("/agents/{name}/delete")
async def delete_agent(request: Request, name: str) -> Response:
    store = _store(request)
    try:
        async with _lock(request):
            await store.delete_async(name)
    except AgentNotFound:
        raise HTTPException(status_code=404, detail=f"no agent named {name!r}") from None
    return RedirectResponse(f"/?deleted={name}", status_code=303)
