"""The one settings class: ``HIVEMIND_*`` environment variables, overridden by flags.

``Settings(**flags)`` validates everything a user can set. Flags win over the
environment because pydantic-settings gives init arguments priority. The
hooks path does not import this module (pydantic-settings costs ~200 ms);
it reads the few variables it needs through :mod:`hivemind.swarm.paths`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hivemind.swarm.env import ENV_PREFIX
from hivemind.swarm.errors import ConfigError
from hivemind.swarm.keys import validate_namespace
from hivemind.swarm.paths import default_state_dir, read_url_file
from hivemind.swarm.vocab import DEFAULT_TARGET_MB

__all__ = ["Settings", "load_settings"]

_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_url(v: str | None) -> str | None:
    if v is None or v == "":
        return None
    if not v.startswith(_URL_SCHEMES):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return v


class Settings(BaseSettings):
    """Everything that shapes one swarm. Every field has a ``HIVEMIND_`` variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    target_mb: float = Field(
        DEFAULT_TARGET_MB,
        gt=0,
        le=16 * 1024 * 1024,
        description="memory target per guarded process",
    )
    namespace: str = Field("default", description="prefix of every Redis key: hm:{namespace}:")
    redis_url: str | None = Field(None, description="external Redis; None = embedded server")
    redis_url_file: Path | None = Field(
        None, description="file (ours, mode 0600) holding the Redis URL: no password in `ps`"
    )
    redis_maxmemory_mb: int = Field(
        512, ge=8, le=1024 * 1024, description="memory cap of the embedded redis-server"
    )
    ray_address: str | None = Field(None, description="Ray cluster address; None = local Ray")
    state_dir: Path = Field(default_factory=default_state_dir)
    session_id: str | None = None
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    sample_hz: float = Field(20.0, gt=0, le=1000)
    stream_maxlen: int = Field(100_000, ge=100)
    secret: SecretStr | None = Field(None, description="HMAC key; default: state folder file")
    ray_object_store_mb: int = Field(
        75, ge=75, description="object store of our own Ray head (Ray's minimum, 75 MB)"
    )
    benchmarkers_per_node: int = Field(
        1, ge=1, le=16, description="benchmarker shards on each Ray node (samples split by target)"
    )
    ray_api_server: bool = Field(
        False, description="keep Ray's API server (for `ray list`, the state API) on our head"
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics")
    metrics_host: str = "127.0.0.1"
    debug: bool = False

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return validate_namespace(v)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        return _check_url(v)

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and 0 < len(v.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        return v

    @model_validator(mode="after")
    def _url_from_file(self) -> Settings:
        if self.redis_url is None and self.redis_url_file is not None:
            self.redis_url = _check_url(read_url_file(self.redis_url_file))
        return self

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def embedded(self) -> bool:
        """True when hivemind runs its own ``redis-server``."""
        return self.redis_url is None


def load_settings(**flags: Any) -> Settings:
    """Build :class:`Settings` from the environment and the non-``None`` flags.

    Raises :class:`ConfigError` with a one-line message naming the bad field.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(f"invalid {field.replace('_', '-')}: {msg}") from None
