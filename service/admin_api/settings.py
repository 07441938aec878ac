"""Configuration, read from the environment only (the deployment guide's variable names).

`Settings()` is the one settings object. A missing or malformed variable raises pydantic's
ValidationError; `describe_config_error` turns it into one line naming the variable, which the CLI prints.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from admin_api import __version__


class DatabaseSettings(BaseSettings):
    """What the database admin commands (`migrate`, `create-user`) need: they run without the LLM."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # repr=False: the URL carries the database password.
    database_url: str = Field(repr=False)
    bootstrap_admin_username: str | None = None
    bootstrap_admin_password: SecretStr | None = None
    log_level: str = "INFO"
    app_version: str = __version__

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql+asyncpg://user:password@host:port/database URL")
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
            raise ValueError("is not a valid URL") from None
        if not url.host or not url.database:
            raise ValueError("must name a host and a database")
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError("port must be 1 to 65535")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def asyncpg_dsn(self) -> str:
        """The URL in the form asyncpg itself accepts (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def database_name(self) -> str:
        return make_url(self.database_url).database or ""


class Settings(DatabaseSettings):
    """Everything the HTTP service needs."""

    redis_url: str = Field(repr=False)
    llm_endpoint: AnyHttpUrl
    llm_model: str = Field(min_length=1)
    llm_api_key: SecretStr | None = None
    # NoDecode: a comma-separated list, not the JSON pydantic-settings expects for lists by default.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Documents and retrieval (admin_api.documents): on when MINIO_*, EMBEDDING_MODEL_ENDPOINT and
    # EMBEDDING_MODEL are set (`documents_enabled`); otherwise the documents API answers 503.
    minio_endpoint: str | None = None
    minio_access_key: SecretStr | None = None
    minio_secret_key: SecretStr | None = None
    minio_bucket: str | None = None
    minio_secure: bool = True
    qdrant_host: str | None = None
    qdrant_port: int = Field(default=6333, ge=1, le=65535)
    qdrant_api_key: SecretStr | None = None
    qdrant_https: bool = False
    # Without QDRANT_HOST: Qdrant's embedded mode keeps the index here (one process only).
    qdrant_path: str = "/tmp/admin-api-qdrant"
    embedding_model_endpoint: AnyHttpUrl | None = None
    embedding_model: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_timeout_seconds: float = Field(default=30, gt=0)
    embedding_max_retries: int = Field(default=3, ge=0, le=10)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_document_pages: int = Field(default=500, ge=1)
    max_unpacked_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)  # DOCX (zip) bomb guard
    max_document_chars: int = Field(default=2_000_000, ge=1000)
    chunk_tokens: int = Field(default=500, ge=16, le=8192)
    chunk_overlap_tokens: int = Field(default=50, ge=0)
    # A Hugging Face tokenizer.json (e.g. the embedding model's own) to count tokens exactly; without it,
    # words and punctuation are counted (BERT's pre-tokenizer), which never needs a download.
    chunk_tokenizer_file: str | None = None
    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    retrieval_mode: Literal["dense", "hybrid"] = "hybrid"
    ingestion_workers: int = Field(default=1, ge=0, le=16)
    ingestion_lease_seconds: int = Field(default=300, ge=5)
    ingestion_poll_seconds: float = Field(default=2, gt=0)
    ingestion_max_attempts: int = Field(default=3, ge=1)
    storage_concurrency: int = Field(default=4, ge=1, le=64)

    # Our own knobs, with safe defaults.
    cookie_secure: bool = True
    session_idle_seconds: int = Field(default=1800, ge=60)
    session_max_seconds: int = Field(default=43200, ge=60)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_message_chars: int = Field(default=8000, ge=1)
    llm_timeout_seconds: float = Field(default=60, gt=0)
    llm_connect_timeout_seconds: float = Field(default=5, gt=0)
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Against spraying (auth.service): failures per address across accounts, then 429; failures per account
    # across addresses, then a back-off doubling up to LOGIN_BACKOFF_MAX_SECONDS (addresses the account
    # logged in from before are exempt, so the owner is not locked out by someone else's guesses).
    login_address_max_failures: int = Field(default=30, ge=1)
    login_account_max_failures: int = Field(default=10, ge=1)
    login_backoff_max_seconds: int = Field(default=60, ge=1)
    # Password hashes at once, queued at most, and the longest wait in the queue (then 503, Retry-After).
    login_hash_concurrency: int = Field(default=1, ge=1)
    login_hash_queue: int = Field(default=8, ge=0)
    login_hash_wait_seconds: float = Field(default=5, gt=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    api_docs: bool = True  # /docs and /redoc (self-hosted assets); false hides them (the schema stays)
    # Proxies whose X-Forwarded-For/-Proto are believed (uvicorn's syntax: comma-separated addresses or
    # networks, or "*"). Empty: none, the client address is the TCP peer's.
    forwarded_allow_ips: str = ""
    # At the server (core.server): deadlines for a request's headers and body, and the headers' size.
    header_timeout_seconds: float = Field(default=10, gt=0)
    body_timeout_seconds: float = Field(default=30, gt=0)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # chat/send per user (chat.limits): sends per window, and sends in progress at once.
    chat_rate_limit: int = Field(default=30, ge=1)
    chat_rate_window_seconds: int = Field(default=60, ge=1)
    chat_max_concurrent: int = Field(default=3, ge=1)
    # history/detail: messages per page when the request names no `limit`, and the most a request may ask.
    history_messages_page_size: int = Field(default=100, ge=1)
    history_messages_max_page_size: int = Field(default=500, ge=1)

    @property
    def documents_enabled(self) -> bool:
        return bool(
            self.minio_endpoint
            and self.minio_access_key
            and self.minio_secret_key
            and self.minio_bucket
            and self.embedding_model_endpoint
            and self.embedding_model
        )

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS")
        return self

    @model_validator(mode="after")
    def _page_within_max(self) -> Settings:
        if self.history_messages_page_size > self.history_messages_max_page_size:
            raise ValueError("HISTORY_MESSAGES_PAGE_SIZE must not exceed HISTORY_MESSAGES_MAX_PAGE_SIZE")
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://host:port[/db] URL")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        origins = [origin.rstrip("/") for origin in origins]
        for origin in origins:
            if origin == "*":
                raise ValueError("'*' cannot be used with credentials; list the origins")
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin like https://chat.example.com")
        return origins


class BackupSettings(DatabaseSettings):
    """What `backup` and `restore` need: the database and the object storage, not the LLM or Redis."""

    minio_endpoint: str
    minio_access_key: SecretStr
    minio_secret_key: SecretStr
    minio_bucket: str = Field(min_length=3, max_length=63)
    minio_secure: bool = True
    # Where pg_dump/pg_restore live when they are not on PATH (they must match the server's major version).
    pg_bin: str | None = None

    @field_validator("minio_endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if "://" in value or "/" in value:
            raise ValueError("must be host:port without a scheme or path (MINIO_SECURE picks https or http)")
        return value


def describe_config_error(error: ValidationError) -> str:
    """One line naming the first bad or missing variable, never echoing its value."""
    first = error.errors(include_url=False, include_input=False)[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "configuration"
    if first["type"] == "missing":
        return f"{name}: required environment variable is not set"
    return f"{name}: {first['msg']}"
