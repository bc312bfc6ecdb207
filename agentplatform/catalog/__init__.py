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


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: dict[str, Provider]
    models: dict[str, Model]
    aliases: dict[str, str]

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
        )
        for alias in m.get("aliases", []) or []:
            aliases[alias] = model_id
    return Catalog(providers=providers, models=models, aliases=aliases)


@lru_cache(maxsize=1)
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    with open(path, encoding="utf-8") as fh:
        return _load(YAML(typ="safe").load(fh))
