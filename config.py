"""The one place that reads the environment: a frozen `Settings` built once and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "genai-studio"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genai-studio"


def _default_hf_home(env: Mapping[str, str] | None = None) -> Path:
    found = os.environ if env is None else env
    if found.get("HF_HOME"):
        return Path(found["HF_HOME"]).expanduser()
    base = found.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huggingface"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _float(env: dict, key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{key} must be a number, got {raw!r}") from exc


def _int(env: dict, key: str, default: int) -> int:
    return int(_float(env, key, default))


def _threads(env: dict, key: str) -> int | None:
    """A thread count: empty or unset means "from the hardware"; anything else must be a whole number >= 1."""
    raw = env.get(key, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{key} must be a whole number of threads (1 or more), got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    # Text models offered in the picker, first is the default. Each is a spec such as
    # "embedded", "hf:<hub id or folder>", "gguf:<file.gguf>", "openai:<model name>".
    text_models: tuple[str, ...] = ("embedded",)
    # Image models, first is the default: "diffusers:<hub id, folder or .safetensors>",
    # "openai:<model name>", "gan:faces". SD-Turbo downloads on first use where the hub is reachable;
    # the GAN works with no internet.
    image_models: tuple[str, ...] = ("diffusers:stabilityai/sd-turbo", "gan:faces")
    image_device: str | None = None  # "cuda", "cpu"...; None = CUDA when present
    image_dtype: str | None = None  # "float16", "bfloat16", "float32"; None = half on CUDA, fp32 on CPU
    image_model_config: str | None = None  # for a single .safetensors file: folder/hub id of its configs
    image_request_timeout: float = 180.0  # hosted image APIs are slower than text
    data_dir: Path = field(default_factory=_default_data_dir)
    server_name: str = "127.0.0.1"
    server_port: int = 7860
    # OpenAI-compatible API (read the way the openai SDK reads them).
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)  # never shown
    request_timeout: float = 60.0  # seconds, per request to a hosted server
    max_retries: int = 2  # retries on 429/5xx/connection errors, with exponential backoff
    openai_context_length: int = 8192  # used when the server does not report one
    openai_concurrency: int = 8  # requests one run (condenser, writer variants) sends at once
    # Local engines.
    # llama.cpp threads for decoding and for prompts; None = from the hardware (backends/text/hardware.py: usable
    # physical cores less one, at least one).
    n_threads: int | None = None
    n_threads_batch: int | None = None  # None = n_threads when set, else the hardware rule
    # A small GGUF of Q4_1 weights is loaded from a Q8_0 copy made once in cache_dir/llama (prompts about 2x faster on
    # CPU, same decoding speed, perplexity within 1%: backends/text/requantize.py); False loads every file as it is.
    gguf_requantize: bool = True
    # llama.cpp's Intel AMX kernels, where the build has them: off, since a VM that lists AMX without running it dies
    # on the first prompt with SIGILL (backends/text/llamacpp.py).
    llama_amx: bool = False
    cache_dir: Path = field(default_factory=_default_cache_dir)  # derived files, safe to delete
    n_ctx: int = 8192  # llama.cpp context window (capped by the model's own)
    # transformers: how many concurrent requests one generate() call may batch (0: 8 on a GPU, 4 on CPU).
    batch_size: int = 0
    # Web app.
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (user, password) pairs
    max_input_chars: int = 200_000  # hard cap on one message, whatever the model's context
    concurrency_limit: int = 16  # simultaneous generation requests across all users
    max_queue: int = 64  # requests waiting for a slot, all users together; more get "Busy: retry in N s"
    # Gradio sessions kept in memory (~380 KB each); untouched ones are dropped anyway (ui/server/sessions.py).
    max_sessions: int = 500  # 0 = Gradio's default (10,000, nothing dropped early)
    # Serving a team (SECURITY.md).
    auth_file: Path | None = None  # "user:pbkdf2_sha256$..." lines (python -m core.security.passwords USER)
    allowed_origins: tuple[str, ...] = ()  # other origins whose pages may send requests (a reverse proxy's)
    max_upload_mb: int = 50  # largest file one upload may carry
    upload_ttl_hours: float = 6.0  # uploads are deleted this long after they arrive
    rate_limit: int = 120  # requests that start work, per caller per minute (bursts up to the same)
    frame_ancestors: str = "'none'"  # who may show the app in a frame (CSP frame-ancestors)
    # What each user keeps (gallery PNGs, summaries, drafts) and runs (core/quota.py, core/images/service.py).
    user_quota_mb: float = 2048.0  # disk a user's stored items may take; 0 = no limit
    retention_days: float = 0.0  # stored items older than this are deleted (startup, then hourly); 0 = keep
    anon_retention_hours: float = 24.0  # the same for API callers without a token ("api:anonymous"); 0 = keep
    user_jobs: int = 2  # image jobs one user may have running or queued at once
    user_text_jobs: int = 8  # text requests (chat, write, condense) one API user may have running at once
    chat_model_titles: bool = True  # the chat model names a conversation after its first reply (core/chat/titles.py)
    # The model manager (core/models/service.py) and Hugging Face hub downloads, read the way huggingface_hub reads them.
    hf_endpoint: str = "https://huggingface.co"  # HF_ENDPOINT: a mirror or a local hub
    hf_token: str | None = field(default=None, repr=False)  # HF_TOKEN: for gated or private repos; never shown
    hf_cache_dir: Path = field(default_factory=lambda: _default_hf_home() / "hub")  # HF_HUB_CACHE, else HF_HOME/hub
    hf_offline: bool = False  # HF_HUB_OFFLINE: downloads are off, only what is cached runs
    model_admins: tuple[str, ...] = ()  # STUDIO_MODEL_ADMINS: logins that may download and delete models
    model_catalogue: Path | None = None  # STUDIO_MODEL_CATALOGUE; None = prompts/model_catalogue.toml
    model_disk_reserve_mb: float = 1024.0  # free disk a download must leave in the hub cache
    # Speech (backends/speech/, core/speech/). Voices, first is the default: "kokoro" (Kokoro-82M, int8 ONNX, from pip),
    # "festival", "flite", "espeak" (Debian packages), "openai:<model>" (an OpenAI-compatible audio.speech API).
    speech_models: tuple[str, ...] = ("kokoro", "festival", "flite", "espeak")
    # Recognisers, first is the default: "whisper" (faster-whisper base, from pip), "faster-whisper:<size, hub id or
    # folder>", "openai:<model>" (an OpenAI-compatible transcription API).
    transcribe_models: tuple[str, ...] = ("whisper",)
    max_speech_chars: int = 100_000  # longest text one request may speak (a 10,000-word draft is about 65,000)
    max_audio_minutes: float = 90.0  # longest recording one request may transcribe
    # Free disk the data folder keeps for everyone: speaking stops (keeping what it made) rather than go under it.
    disk_reserve_mb: float = 1024.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "hf_cache_dir", Path(self.hf_cache_dir).expanduser())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        models = tuple(m.strip() for m in env.get("STUDIO_TEXT_MODEL", "embedded").split(",") if m.strip())
        images = tuple(m.strip() for m in env.get("STUDIO_IMAGE_MODEL", "").split(",") if m.strip())
        voices = tuple(m.strip() for m in env.get("STUDIO_SPEECH_MODEL", "").split(",") if m.strip())
        hearing = tuple(m.strip() for m in env.get("STUDIO_TRANSCRIBE_MODEL", "").split(",") if m.strip())
        auth_pairs = []
        for pair in env.get("STUDIO_AUTH", "").split(","):
            if pair.strip():
                user, sep, password = pair.strip().partition(":")
                if not sep or not user or not password:
                    raise ValueError("STUDIO_AUTH must be user:password[,user:password...]")
                auth_pairs.append((user, password))
        origins = tuple(o.strip().rstrip("/") for o in env.get("STUDIO_ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            text_models=models or ("embedded",),
            image_models=images or cls.image_models,
            image_device=env.get("STUDIO_IMAGE_DEVICE") or None,
            image_dtype=env.get("STUDIO_IMAGE_DTYPE") or None,
            image_model_config=env.get("STUDIO_IMAGE_MODEL_CONFIG") or None,
            image_request_timeout=_float(env, "STUDIO_IMAGE_TIMEOUT", 180.0),
            data_dir=Path(env["STUDIO_DATA_DIR"]).expanduser() if env.get("STUDIO_DATA_DIR") else _default_data_dir(),
            server_name=env.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            server_port=_int(env, "GRADIO_SERVER_PORT", 7860),
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            request_timeout=_float(env, "STUDIO_REQUEST_TIMEOUT", 60.0),
            max_retries=_int(env, "STUDIO_MAX_RETRIES", 2),
            openai_context_length=_int(env, "STUDIO_OPENAI_CONTEXT", 8192),
            openai_concurrency=_int(env, "STUDIO_OPENAI_CONCURRENCY", 8),
            n_threads=_threads(env, "STUDIO_THREADS"),
            n_threads_batch=_threads(env, "STUDIO_THREADS_BATCH"),
            gguf_requantize=env.get("STUDIO_GGUF_REQUANTIZE", "1").strip().lower() not in ("0", "false", "no", "off"),
            llama_amx=env.get("STUDIO_LLAMA_AMX", "0").strip().lower() in ("1", "true", "yes", "on"),
            cache_dir=Path(env["STUDIO_CACHE_DIR"]).expanduser()
            if env.get("STUDIO_CACHE_DIR")
            else _default_cache_dir(),
            n_ctx=_int(env, "STUDIO_N_CTX", 8192),
            batch_size=_int(env, "STUDIO_BATCH_SIZE", 0),
            auth=tuple(auth_pairs),
            max_input_chars=_int(env, "STUDIO_MAX_INPUT_CHARS", 200_000),
            concurrency_limit=_int(env, "STUDIO_CONCURRENCY", 16),
            max_queue=_int(env, "STUDIO_MAX_QUEUE", 64),
            max_sessions=_int(env, "STUDIO_MAX_SESSIONS", 500),
            auth_file=Path(env["STUDIO_AUTH_FILE"]).expanduser() if env.get("STUDIO_AUTH_FILE") else None,
            allowed_origins=origins,
            max_upload_mb=_int(env, "STUDIO_MAX_UPLOAD_MB", 50),
            upload_ttl_hours=_float(env, "STUDIO_UPLOAD_TTL_HOURS", 6.0),
            rate_limit=_int(env, "STUDIO_RATE_LIMIT", 120),
            frame_ancestors=env.get("STUDIO_FRAME_ANCESTORS", "").strip() or "'none'",
            user_quota_mb=_float(env, "STUDIO_USER_QUOTA_MB", 2048.0),
            retention_days=_float(env, "STUDIO_RETENTION_DAYS", 0.0),
            anon_retention_hours=_float(env, "STUDIO_ANON_RETENTION_HOURS", 24.0),
            user_jobs=_int(env, "STUDIO_USER_JOBS", 2),
            user_text_jobs=_int(env, "STUDIO_USER_TEXT_JOBS", 8),
            chat_model_titles=_truthy(env.get("STUDIO_CHAT_MODEL_TITLES") or "on"),
            hf_endpoint=(env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/"),
            hf_token=env.get("HF_TOKEN") or None,
            hf_cache_dir=Path(env["HF_HUB_CACHE"]).expanduser()
            if env.get("HF_HUB_CACHE")
            else _default_hf_home(env) / "hub",
            hf_offline=_truthy(env.get("HF_HUB_OFFLINE")),
            model_admins=tuple(u.strip() for u in env.get("STUDIO_MODEL_ADMINS", "").split(",") if u.strip()),
            model_catalogue=Path(env["STUDIO_MODEL_CATALOGUE"]).expanduser()
            if env.get("STUDIO_MODEL_CATALOGUE")
            else None,
            model_disk_reserve_mb=_float(env, "STUDIO_MODEL_DISK_RESERVE_MB", 1024.0),
            speech_models=voices or cls.speech_models,
            transcribe_models=hearing or cls.transcribe_models,
            max_speech_chars=_int(env, "STUDIO_MAX_SPEECH_CHARS", 100_000),
            max_audio_minutes=_float(env, "STUDIO_MAX_AUDIO_MINUTES", 90.0),
            disk_reserve_mb=_float(env, "STUDIO_DISK_RESERVE_MB", 1024.0),
        )
