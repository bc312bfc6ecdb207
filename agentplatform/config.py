"""Every knob the platform reads from the environment, in one place.

Platform keys live here; an agent may name its own key variable instead
(``credentials.api_key_env``), which is read at call time, never stored.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Where agents and records live.
    agents_dir: Path = Path("agents")
    database_url: str = "sqlite:///agentplatform.db"

    # The public base URL Twilio reaches us on (https://host); derives wss://host/twilio/media.
    public_url: str = ""

    # Carrier: Twilio.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    # Secret that signs media-stream tokens; falls back to the Twilio auth token,
    # then to a per-process random secret (fine for one process).
    stream_token_secret: str = ""
    stream_token_ttl_seconds: int = 120

    # Model providers (platform keys). URL overrides point adapters at simulators.
    openai_api_key: str = ""
    openai_realtime_url: str = ""
    azure_openai_api_key: str = ""
    azure_openai_endpoint: str = ""
    azure_openai_api_version: str = ""
    xai_api_key: str = ""
    xai_realtime_url: str = ""
    gemini_api_key: str = ""
    gemini_live_url: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    aws_session_token: str = ""
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")
    bedrock_endpoint_url: str = ""
    # Extra CA certificates (PEM file) trusted for provider TLS connections: a
    # corporate proxy, or a local simulator with a self-signed certificate.
    provider_ca_file: str = ""

    # Server.
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
