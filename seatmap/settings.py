"""Configuration, read once from the environment (12-factor).

`Settings.from_environ(os.environ)` is called once per process and the frozen result is
passed to `create_app`; no module reads a global settings object. Secrets are wrapped in
`Secret` so that a `repr` of the settings (in a log line, a traceback) never shows them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from seatmap.errors import ConfigError

DEFAULT_DATA_DIR: Final = "./.seatmap"


class Secret:
    """A string that hides itself in `repr` and `str`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _mask_url(url: str) -> str:
    """`postgresql://app:hunter2@db/x` -> `postgresql://app:**********@db/x` (also `?password=`)."""
    masked = re.sub(r"(://[^/@:]*:)[^/]*@", r"\1**********@", url)
    return re.sub(r"(password=)[^&]*", r"\1**********", masked, flags=re.IGNORECASE)


def _list(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = environ.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the process is configured with. Built by `from_environ`; tests use `replace`."""

    database_url: str | None
    redis_url: str | None
    data_dir: Path
    dev: bool
    jwt_secret: Secret
    # Prefix of every Redis key and channel, so several deployments (or test runs) can share
    # one Redis; pub/sub ignores SELECT, so a database number would not separate channels.
    redis_prefix: str = "sm"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    cookie_secure: bool = False
    allowed_origins: tuple[str, ...] = ()
    smtp_url: Secret | None = None
    mail_from: str = "seatmap <no-reply@seatmap.local>"
    login_max_attempts: int = 5
    login_window: int = 300
    login_ip_max_attempts: int = 30
    verification_code_ttl: int = 900
    hold_ttl: int = 600
    hold_max: int = 1800
    hold_max_seats: int = 10
    holds_per_user: int = 1
    # Checkout. Making an order extends its hold to this many seconds (never past the hold's max).
    payment_window: int = 900
    payment_provider: str = "simulated"
    # Signs payment webhooks (HMAC-SHA256); unset, a key derived from the JWT secret is used.
    webhook_secret: Secret | None = None
    # A webhook whose timestamp is further than this from our clock is refused (a replay).
    webhook_tolerance: int = 300
    # The simulated gateway: decline every payment, send each webhook this many times, send a
    # payment's events out of order, deliver them this many seconds late, and to which URL
    # (unset: this server, as the buyer reached it).
    simulated_decline: bool = False
    simulated_webhook_copies: int = 1
    simulated_out_of_order: bool = False
    simulated_webhook_delay: float = 0.0
    simulated_webhook_url: str | None = None
    # Door check-in opens this many seconds before the start and closes at the end.
    checkin_opens_before: int = 3600
    # Refunds. A customer may refund a paid order until this many seconds before the start.
    refund_deadline: int = 7200
    # How long a refund waits for the gateway's answer before counting as failed (and retried).
    refund_timeout: float = 30.0
    # The simulated gateway: seconds each call takes, and the share of refund calls that fail
    # before refunding, or that refund but never answer (the caller times out).
    simulated_latency: float = 0.0
    simulated_refund_failure_rate: float = 0.0
    simulated_refund_timeout_rate: float = 0.0
    # The job worker: jobs run at once per process, attempts before a job is dead, the first
    # retry's delay (doubling, jittered, capped), the lease of a claimed job, the poll interval.
    job_concurrency: int = 32
    job_max_attempts: int = 10
    job_backoff: float = 2.0
    job_max_backoff: float = 600.0
    job_lease: float = 60.0
    job_poll_interval: float = 1.0
    # Run the job worker inside the web process too (on by default in dev mode, so one
    # `seatmap serve` does everything); production runs `seatmap worker` beside the web.
    inline_worker: bool = False
    ws_max_message: int = 16 * 1024
    # Deltas queued for one socket before it is reset to a snapshot (~5 s at 50 changes/s).
    ws_queue_size: int = 256
    ws_heartbeat: float = 20.0
    ws_batch_window: float = 0.01
    ws_commands_per_second: float = 10.0
    ws_command_burst: int = 20
    sweep_interval: float = 0.5
    # Listen for keyspace `expired` events (the fast restock path); the sweeper runs regardless.
    expiry_notifications: bool = True
    recovery_log_length: int = 1000
    # The no-stranded-seat rule steps aside once this share of a hall is taken.
    strand_max_share: float = 0.9
    # Best-available's sweet spot: this fraction of the depth from the screen, on the centre line.
    sweet_row: float = 0.6
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def embedded(self) -> bool:
        """True when at least one backing server has to be started by us (see embedded.py)."""
        return self.database_url is None or self.redis_url is None

    def __repr__(self) -> str:
        """The dataclass repr, except that passwords inside DATABASE_URL/REDIS_URL are masked."""
        shown: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.name.endswith("_url"):
                value = _mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        database_url = environ.get("DATABASE_URL") or None
        redis_url = environ.get("REDIS_URL") or None
        data_dir = Path(environ.get("SEATMAP_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
        embedded = database_url is None or redis_url is None
        dev = _bool(environ, "SEATMAP_DEV", embedded)
        raw_secret = environ.get("SEATMAP_JWT_SECRET") or None
        if raw_secret is None:
            if not dev:
                raise ConfigError(
                    "SEATMAP_JWT_SECRET is not set. It is required outside dev mode "
                    "(dev mode is on when DATABASE_URL or REDIS_URL is unset, or SEATMAP_DEV=1)."
                )
            raw_secret = _dev_secret(data_dir)
        elif len(raw_secret) < 32:
            raise ConfigError("SEATMAP_JWT_SECRET must be at least 32 characters long")
        hold_ttl = _int(environ, "SEATMAP_HOLD_TTL", 600, minimum=1)
        hold_max = _int(environ, "SEATMAP_HOLD_MAX", 1800, minimum=1)
        if hold_max < hold_ttl:
            raise ConfigError("SEATMAP_HOLD_MAX must not be shorter than SEATMAP_HOLD_TTL")
        smtp = environ.get("SEATMAP_SMTP_URL") or None
        webhook_secret = environ.get("SEATMAP_WEBHOOK_SECRET") or None
        if webhook_secret is not None and len(webhook_secret) < 32:
            raise ConfigError("SEATMAP_WEBHOOK_SECRET must be at least 32 characters long")
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            data_dir=data_dir,
            dev=dev,
            jwt_secret=Secret(raw_secret),
            redis_prefix=environ.get("SEATMAP_REDIS_PREFIX") or "sm",
            access_token_ttl=_int(environ, "SEATMAP_ACCESS_TOKEN_TTL", 900, minimum=10),
            refresh_token_ttl=_int(environ, "SEATMAP_REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=60),
            cookie_secure=_bool(environ, "SEATMAP_COOKIE_SECURE", not dev),
            allowed_origins=_list(environ, "SEATMAP_ALLOWED_ORIGINS", ()),
            smtp_url=Secret(smtp) if smtp else None,
            mail_from=environ.get("SEATMAP_MAIL_FROM") or "seatmap <no-reply@seatmap.local>",
            login_max_attempts=_int(environ, "SEATMAP_LOGIN_MAX_ATTEMPTS", 5, minimum=1),
            login_window=_int(environ, "SEATMAP_LOGIN_WINDOW", 300, minimum=1),
            login_ip_max_attempts=_int(environ, "SEATMAP_LOGIN_IP_MAX_ATTEMPTS", 30, minimum=1),
            hold_ttl=hold_ttl,
            hold_max=hold_max,
            hold_max_seats=_int(environ, "SEATMAP_HOLD_MAX_SEATS", 10, minimum=1),
            holds_per_user=_int(environ, "SEATMAP_HOLDS_PER_USER", 1, minimum=1),
            payment_window=_int(environ, "SEATMAP_PAYMENT_WINDOW", 900, minimum=30),
            payment_provider=environ.get("SEATMAP_PAYMENT_PROVIDER") or "simulated",
            webhook_secret=Secret(webhook_secret) if webhook_secret else None,
            webhook_tolerance=_int(environ, "SEATMAP_WEBHOOK_TOLERANCE", 300, minimum=1),
            simulated_decline=_bool(environ, "SEATMAP_SIMULATED_DECLINE", False),
            simulated_webhook_copies=_int(environ, "SEATMAP_SIMULATED_WEBHOOK_COPIES", 1, minimum=1),
            simulated_out_of_order=_bool(environ, "SEATMAP_SIMULATED_OUT_OF_ORDER", False),
            simulated_webhook_delay=_float(environ, "SEATMAP_SIMULATED_WEBHOOK_DELAY", 0.0),
            simulated_webhook_url=environ.get("SEATMAP_SIMULATED_WEBHOOK_URL") or None,
            checkin_opens_before=_int(environ, "SEATMAP_CHECKIN_OPENS_BEFORE", 3600),
            refund_deadline=_int(environ, "SEATMAP_REFUND_DEADLINE", 7200),
            refund_timeout=_float(environ, "SEATMAP_REFUND_TIMEOUT", 30.0),
            simulated_latency=_float(environ, "SEATMAP_SIMULATED_LATENCY", 0.0),
            simulated_refund_failure_rate=_float(environ, "SEATMAP_SIMULATED_REFUND_FAILURE_RATE", 0.0),
            simulated_refund_timeout_rate=_float(environ, "SEATMAP_SIMULATED_REFUND_TIMEOUT_RATE", 0.0),
            job_concurrency=_int(environ, "SEATMAP_JOB_CONCURRENCY", 32, minimum=1),
            job_max_attempts=_int(environ, "SEATMAP_JOB_MAX_ATTEMPTS", 10, minimum=1),
            job_backoff=_float(environ, "SEATMAP_JOB_BACKOFF", 2.0),
            job_max_backoff=_float(environ, "SEATMAP_JOB_MAX_BACKOFF", 600.0),
            job_lease=_float(environ, "SEATMAP_JOB_LEASE", 60.0),
            job_poll_interval=_float(environ, "SEATMAP_JOB_POLL_INTERVAL", 1.0),
            inline_worker=_bool(environ, "SEATMAP_INLINE_WORKER", dev),
            ws_max_message=_int(environ, "SEATMAP_WS_MAX_MESSAGE", 16 * 1024, minimum=256),
            ws_queue_size=_int(environ, "SEATMAP_WS_QUEUE_SIZE", 256, minimum=1),
            ws_heartbeat=_float(environ, "SEATMAP_WS_HEARTBEAT", 20.0),
            ws_batch_window=_int(environ, "SEATMAP_WS_BATCH_WINDOW_MS", 10, minimum=0) / 1000,
            ws_commands_per_second=_float(environ, "SEATMAP_WS_COMMANDS_PER_SECOND", 10.0),
            ws_command_burst=_int(environ, "SEATMAP_WS_COMMAND_BURST", 20, minimum=1),
            sweep_interval=_float(environ, "SEATMAP_SWEEP_INTERVAL", 0.5),
            expiry_notifications=_bool(environ, "SEATMAP_EXPIRY_NOTIFICATIONS", True),
            recovery_log_length=_int(environ, "SEATMAP_RECOVERY_LOG_LENGTH", 1000, minimum=10),
            strand_max_share=_float(environ, "SEATMAP_STRAND_MAX_SHARE", 0.9),
            sweet_row=_float(environ, "SEATMAP_SWEET_ROW", 0.6),
            log_level=(environ.get("SEATMAP_LOG_LEVEL") or "INFO").upper(),
            log_json=_bool(environ, "SEATMAP_LOG_JSON", not dev),
        )


def _dev_secret(data_dir: Path) -> str:
    """A random secret kept in the data dir, so dev logins survive a restart."""
    path = data_dir / "jwt_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    # Write aside, then link into place: link() fails if the file exists, so when several
    # processes start at once the first one wins and every process reads the same secret.
    tmp = data_dir / f".jwt_secret.{os.getpid()}"
    tmp.write_text(secrets.token_urlsafe(48))
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
