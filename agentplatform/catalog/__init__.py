"""The model catalog, loaded from ``catalog.yaml``: providers, models, voices, prices."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from agentplatform.errors import CatalogError

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    label: str
    protocol: str
    advanced_key: str
    url: str
    url_setting: str
    key_setting: str
    auth: str
    input_rate: int
    output_rate: int
    g711: bool
    truncates: bool
    default_voice: str
    voices: tuple[str, ...]
    # The provider speaks for itself (a realtime speech model). Without it, every agent
    # on this provider is served by the cascade (STT → text → TTS).
    speech: bool = True
    # Adapter extras read from Settings: extra name -> Settings field (endpoint, region...).
    extra_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Model:
    id: str  # provider/model, as agents name it
    provider: Provider
    wire_name: str
    text_modality: bool
    max_output_tokens: int
    voices: tuple[str, ...]
    prices: dict[str, float] = field(default_factory=dict)
    # When ``prices`` were last checked against the provider's price list (YYYY-MM-DD);
    # shown beside every cost so a stale table is visible.
    prices_as_of: str = ""


def _pick(kind: str, value: str | None, default: str, known: tuple[str, ...], owner: str) -> str:
    """``value`` (or ``default`` when empty) if ``known`` has it; else a CatalogError naming them."""
    chosen = value or default
    if chosen not in known:
        raise CatalogError(
            f"{owner} has no {kind} {chosen!r}; it offers: {', '.join(known) or 'none'}"
        )
    return chosen


@dataclass(frozen=True, slots=True)
class SttService:
    """A speech-to-text service for the cascade; ``engine`` picks the class that speaks it."""

    name: str
    label: str
    engine: str
    models: tuple[str, ...]
    default_model: str
    languages: tuple[str, ...] = ()  # empty: any language the service accepts
    url: str = ""
    url_setting: str = ""
    key_setting: str = ""
    prices: dict[str, float] = field(default_factory=dict)  # USD per minute, per model

    def model(self, model: str | None) -> str:
        return _pick("model", model, self.default_model, self.models, f"STT service {self.name!r}")

    def language(self, language: str | None) -> str | None:
        if language and self.languages and language not in self.languages:
            raise CatalogError(
                f"STT service {self.name!r} has no language {language!r}; "
                f"it offers: {', '.join(self.languages)}"
            )
        return language or None


@dataclass(frozen=True, slots=True)
class TtsService:
    """A text-to-speech service for the cascade; ``engine`` picks the class that speaks it."""

    name: str
    label: str
    engine: str
    voices: tuple[str, ...]
    default_voice: str
    output_rate: int
    models: tuple[str, ...] = ()  # empty: the engine has no model choice
    default_model: str = ""
    url: str = ""
    url_setting: str = ""
    key_setting: str = ""
    prices: dict[str, dict[str, float]] = field(default_factory=dict)

    def voice(self, voice: str | None) -> str:
        return _pick("voice", voice, self.default_voice, self.voices, f"TTS service {self.name!r}")

    def model(self, model: str | None) -> str:
        if not self.models:
            if model:
                raise CatalogError(f"TTS service {self.name!r} has no model choice; got {model!r}")
            return ""
        return _pick("model", model, self.default_model, self.models, f"TTS service {self.name!r}")


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: dict[str, Provider]
    models: dict[str, Model]
    aliases: dict[str, str]
    stt_services: dict[str, SttService] = field(default_factory=dict)
    tts_services: dict[str, TtsService] = field(default_factory=dict)

    def stt_service(self, name: str) -> SttService:
        """The STT service ``name``; raises CatalogError naming what exists."""
        try:
            return self.stt_services[name]
        except KeyError:
            known = ", ".join(sorted(self.stt_services)) or "none"
            raise CatalogError(f"unknown STT service {name!r}; the catalog offers: {known}") from None

    def tts_service(self, name: str) -> TtsService:
        """The TTS service ``name``; raises CatalogError naming what exists."""
        try:
            return self.tts_services[name]
        except KeyError:
            known = ", ".join(sorted(self.tts_services)) or "none"
            raise CatalogError(f"unknown TTS service {name!r}; the catalog offers: {known}") from None

    def model(self, model_id: str) -> Model:
        """Look a model up by id or alias; raises CatalogError naming what exists."""
        key = self.aliases.get(model_id, model_id)
        try:
            return self.models[key]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise CatalogError(f"unknown model {model_id!r}; the catalog offers: {known}") from None


def _load(data: dict[str, Any]) -> Catalog:
    providers: dict[str, Provider] = {}
    for name, p in data["providers"].items():
        providers[name] = Provider(
            name=name, label=p["label"], protocol=p["protocol"], advanced_key=p["advanced_key"],
            url=p.get("url", ""), url_setting=p.get("url_setting", ""),
            key_setting=p.get("key_setting", ""), auth=p.get("auth", "bearer"),
            input_rate=int(p["input_rate"]), output_rate=int(p["output_rate"]),
            g711=bool(p.get("g711", False)), truncates=bool(p.get("truncates", False)),
            default_voice=p["default_voice"], voices=tuple(p["voices"]),
            extra_settings=dict(p.get("extra_settings") or {}),
            speech=bool(p.get("speech", True)),
        )
    models: dict[str, Model] = {}
    aliases: dict[str, str] = {}
    for model_id, m in data["models"].items():
        provider_name = model_id.split("/", 1)[0]
        if provider_name not in providers:
            raise CatalogError(f"model {model_id!r} names unknown provider {provider_name!r}")
        provider = providers[provider_name]
        models[model_id] = Model(
            id=model_id, provider=provider, wire_name=m["wire_name"],
            text_modality=bool(m.get("text_modality", False)),
            max_output_tokens=int(m.get("max_output_tokens", 4096)),
            voices=tuple(m.get("voices", provider.voices)),
            prices={k: float(v) for k, v in (m.get("prices") or {}).items()},
            prices_as_of=str(m.get("prices_as_of") or data.get("prices_as_of") or ""),
        )
        for alias in m.get("aliases", []) or []:
            aliases[alias] = model_id
    return Catalog(providers=providers, models=models, aliases=aliases,
                   stt_services=_load_stt(data.get("stt_services") or {}),
                   tts_services=_load_tts(data.get("tts_services") or {}))


def _load_stt(section: dict[str, Any]) -> dict[str, SttService]:
    services: dict[str, SttService] = {}
    for name, s in section.items():
        service = SttService(
            name=name, label=s["label"], engine=s["engine"], models=tuple(s["models"]),
            default_model=s["default_model"], languages=tuple(s.get("languages") or ()),
            url=s.get("url", ""), url_setting=s.get("url_setting", ""),
            key_setting=s.get("key_setting", ""),
            prices={k: float(v) for k, v in (s.get("prices") or {}).items()},
        )
        service.model(None)  # the default must be one of the models
        services[name] = service
    return services


def _load_tts(section: dict[str, Any]) -> dict[str, TtsService]:
    services: dict[str, TtsService] = {}
    for name, s in section.items():
        service = TtsService(
            name=name, label=s["label"], engine=s["engine"], voices=tuple(s["voices"]),
            default_voice=s["default_voice"], output_rate=int(s["output_rate"]),
            models=tuple(s.get("models") or ()), default_model=s.get("default_model", ""),
            url=s.get("url", ""), url_setting=s.get("url_setting", ""),
            key_setting=s.get("key_setting", ""),
            prices={m: {k: float(v) for k, v in p.items()}
                    for m, p in (s.get("prices") or {}).items()},
        )
        service.voice(None)
        service.model(None)
        services[name] = service
    return services


@lru_cache(maxsize=1)
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    with open(path, encoding="utf-8") as fh:
        return _load(YAML(typ="safe").load(fh))
