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
    # Unset: every /twilio/* endpoint refuses (Twilio is disabled). For development only,
    # INSECURE_SKIP_TWILIO_SIGNATURE=1 accepts unsigned requests; `serve` then refuses a
    # non-loopback host.
    insecure_skip_twilio_signature: bool = False
    # Secret that signs media-stream tokens; falls back to the Twilio auth token,
    # then to a per-process random secret (fine for one process).
    stream_token_secret: str = ""
    stream_token_ttl_seconds: int = 120
    # Twilio's REST API (outbound calls, hang-up, transfer); a simulator in tests.
    twilio_api_base_url: str = "https://api.twilio.com"
    # How long an outbound Twilio call rings before it counts as no answer (5-600).
    twilio_ring_timeout_seconds: int = Field(default=30, ge=5, le=600)
    # Media streams on their own port, on a compiled WebSocket server (picows), instead of
    # the main port's /twilio/media: MEDIA_LISTEN=HOST:PORT (empty: off). Twilio is then
    # sent to MEDIA_PUBLIC_URL (wss://host[:port][/twilio/media], what a TLS proxy in
    # front of the listener exposes), or, when that is empty, to wss://<PUBLIC_URL's
    # host, or the webhook's Host>:<the listener's port>/twilio/media.
    media_listen: str = ""
    media_public_url: str = ""

    # Model providers (platform keys). URL overrides point adapters at simulators.
    openai_api_key: str = ""
    openai_realtime_url: str = ""
    # Base URL of the OpenAI audio endpoints (transcriptions, speech) for the cascade.
    openai_audio_url: str = ""
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

    # The offline provider's text step: an OpenAI-compatible chat-completions endpoint
    # (e.g. a local Ollama at http://127.0.0.1:11434/v1). Unset: the rules responder.
    local_llm_url: str = ""
    local_llm_model: str = "llama3.2"
    local_llm_api_key: str = ""

    # Admin screens and REST API access. With no password hash the server is open to
    # loopback only. Make a hash with `agentplatform hash-password`.
    admin_user: str = "admin"
    admin_password_hash: str = ""
    # REST API key, sent as `X-API-Key: …` or `Authorization: Bearer …`.
    api_key: str = ""
    # Signs admin session cookies; unset: a per-process secret (sessions end on restart,
    # and several processes need one shared value).
    session_secret: str = ""
    session_max_age_seconds: int = 12 * 3600
    # Lifetime of the token a browser test call needs to open its media stream.
    browser_call_token_ttl_seconds: int = 60
    # Names (besides loopback and PUBLIC_URL's host) this server answers to, comma-
    # separated; `*.example.com` allows every subdomain. Any other Host gets 400: a
    # page on a rebound name must not reach the admin from "this machine".
    allowed_hosts: str = ""

    # Spend controls and resilience. Per-agent limits live in the agent's ``limits``.
    # With REDIS_URL, concurrency leases and per-caller counters live in Redis;
    # otherwise in the database (either way they hold across server processes).
    redis_url: str = ""
    platform_daily_budget_usd: float | None = None  # across all agents, per UTC day
    # A concurrency slot is a lease renewed while the call runs; a dead process's
    # slots free themselves after this many seconds.
    call_lease_seconds: float = 30.0
    # On SIGTERM: refuse new calls, let live ones finish for up to this long.
    drain_timeout_seconds: float = 30.0
    busy_message: str = "Sorry, all our lines are busy right now. Please call again later."
    over_budget_message: str = "Sorry, we cannot take calls right now. Please call again later."
    caller_cap_message: str = "Sorry, you have reached today's limit of calls to this number."
    draining_message: str = "Sorry, we are restarting right now. Please call again in a minute."
    # Overload shedding (limits/headroom.py): a process refuses a new call with the busy
    # message when one more would push its live calls past their latency targets. On
    # under ``agentplatform serve`` unless OVERLOAD_SHEDDING=false; off in an app built
    # in-process (tests, the call runner), whose process also runs the simulators.
    overload_shedding: bool = False
    overload_max_loop_lag_ms: float = Field(default=10.0, ge=0)  # event-loop lag p99; 0 = unchecked
    overload_max_cpu: float = Field(default=0.8, ge=0)  # cores this process may use; 0 = unchecked
    max_calls_per_process: int = Field(default=0, ge=0)  # a hard cap; 0 = none
    # Calls on the local speech engines at once (cascade/capacity.py); 0 = per core.
    cascade_max_calls: int = Field(default=0, ge=0)
    log_format: str = "text"  # "json" for one JSON object per line

    # Environment variables an agent file may name (headers_from_env, api_key_env,
    # endpoint_env), comma-separated, besides any starting with TOOL_SECRET_. The
    # platform's own settings (and AWS_*, TWILIO_*) are refused even when listed.
    tool_env_allowlist: str = ""

    # SIP trunk (carriers/sip/). SIP_LISTEN=HOST:PORT (UDP) turns it on; unset = off.
    # SIP_ALLOWED_PEERS: comma-separated CIDRs that may send INVITE (trunks authenticate
    # by source address); empty refuses every INVITE with 403.
    sip_listen: str = ""
    sip_rtp_ports: str = "20000-20999"  # LO-HI, UDP, RTP on even ports and RTCP on the next
    sip_public_address: str = ""  # for SDP c= and Contact; default: the listen host
    sip_allowed_peers: str = ""
    sip_rtp_timeout_seconds: float = 30.0
    # Calls placed over the trunk: SIP_OUTBOUND_URI is a template with {number}, e.g.
    # sip:{number}@trunk.example:5060; unset = the SIP carrier places no calls. The
    # trunk's address must be in SIP_ALLOWED_PEERS (its BYE comes from there).
    sip_outbound_uri: str = ""
    sip_username: str = ""  # digest credentials when the trunk challenges (401/407)
    sip_password: str = ""
    sip_from_number: str = ""  # caller id when the call names no "from"
    sip_ring_timeout_seconds: float = 30.0  # then CANCEL: no_answer

    # Call recordings (an agent turns them on: ``recording.enabled``): one stereo WAV per
    # call, ``<RECORDINGS_DIR>/<call id>.wav``. Recordings last written more than
    # RECORDING_RETENTION_DAYS ago are deleted (checked hourly); unset or 0 keeps them all.
    recordings_dir: Path = Path("recordings")
    recording_retention_days: float | None = Field(default=None, ge=0)

    # Server.
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
