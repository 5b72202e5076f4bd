"""Configuration, read once from the environment (12-factor).

`Settings.from_environ(os.environ)` is called once per process and the frozen result is
passed to `create_app`; no module reads a global settings object. Secrets are wrapped in
`Secret` so that a `repr` of the settings (in a log line, a traceback) never shows them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from seatmap.errors import ConfigError

# Each field's default is `setting(...)`, which returns the dataclass field itself (so a call).
# ruff: noqa: RUF009
DEFAULT_DATA_DIR: Final = "./.seatmap"
# What `seatmap serve` serves by default; the public URL of a dev server that was not told its own.
DEV_PUBLIC_URL: Final = "http://localhost:8000"


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


def _mask_url(url: str) -> str:
    """`postgresql://app:hunter2@db/x` -> `postgresql://app:**********@db/x` (also `?password=`)."""
    masked = re.sub(r"(://[^/@:]*:)[^/]*@", r"\1**********@", url)
    return re.sub(r"(password=)[^&]*", r"\1**********", masked, flags=re.IGNORECASE)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Variable:
    """How one setting is read from the environment: its name there, bounds and meaning.

    Kept in the field's metadata, so the field's type and default and this are one declaration.
    `positive` refuses 0 where 0 would make a loop spin (a sleep of 0 between polls) or a wait
    that cannot succeed; `minimum`/`maximum` are inclusive.
    """

    env: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()
    min_length: int = 0
    # The environment gives an integer of milliseconds; the field holds seconds.
    milliseconds: bool = False
    # The default read from the environment in dev mode or outside it, when it differs from
    # the field's (which is what `Settings(...)` and `replace` start from).
    dev_default: object = None
    production_default: object = None


_MISSING: Final = dataclasses.MISSING


def setting(env: str, default: Any = _MISSING, *, help: str, **rules: Any) -> Any:
    """Declare a field of `Settings`: its default (none: `from_environ` works it out by hand) and
    the `Variable` that reads it. Typed `Any` so that `x: int = setting(...)` type-checks."""
    variable = Variable(env=env, help=help, **rules)
    return dataclasses.field(default=default, metadata={"variable": variable})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the process is configured with. Built by `from_environ`; tests use `replace`.

    Each field is declared once, with `setting(...)`: type, default, environment variable,
    bounds, meaning. `dev` and `jwt_secret` have no default: they depend on the other values
    and are worked out by `from_environ` (dev mode is on when a server has to be embedded).
    """

    database_url: str | None = setting(
        "DATABASE_URL", None, help="PostgreSQL URL; unset, an embedded server is started"
    )
    redis_url: str | None = setting("REDIS_URL", None, help="Redis URL; unset, an embedded server is started")
    data_dir: Path = setting(
        "SEATMAP_DATA_DIR", Path(DEFAULT_DATA_DIR), help="embedded servers' data and the dev JWT secret"
    )
    dev: bool = setting("SEATMAP_DEV", help="dev mode; on when DATABASE_URL or REDIS_URL is unset")
    jwt_secret: Secret = setting(
        "SEATMAP_JWT_SECRET", min_length=32, help="signs access tokens; generated and kept in dev mode"
    )
    redis_cluster: bool = setting(
        "SEATMAP_REDIS_CLUSTER",
        False,
        help="REDIS_URL is a Redis Cluster (7+): one node or comma-separated seeds, redis://h1:7001,h2:7002",
    )
    # Pub/sub ignores SELECT, so a database number would not separate channels.
    redis_prefix: str = setting(
        "SEATMAP_REDIS_PREFIX",
        "sm",
        help="prefix of every Redis key and channel: deployments can share one",
    )
    access_token_ttl: int = setting(
        "SEATMAP_ACCESS_TOKEN_TTL", 900, minimum=10, help="lifetime of an access token"
    )
    refresh_token_ttl: int = setting(
        "SEATMAP_REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=60, help="lifetime of a refresh token"
    )
    cookie_secure: bool = setting(
        "SEATMAP_COOKIE_SECURE", False, production_default=True, help="`Secure` flag of the session cookies"
    )
    allowed_origins: tuple[str, ...] = setting(
        "SEATMAP_ALLOWED_ORIGINS", (),
        help="other origins whose pages may open the WebSocket and send cookie-authenticated changes",
    )  # fmt: skip
    # Every absolute URL we hand out (payment redirects, webhook targets) is built from this, never
    # from the request's Host header, which the client chooses (see `base_url`).
    public_url: str | None = setting(
        "SEATMAP_PUBLIC_URL", None,
        help="the address users reach us at (http[s]://host[:port]); required outside dev mode",
    )  # fmt: skip
    smtp_url: Secret | None = setting("SEATMAP_SMTP_URL", None, help="mail server; unset, mail stays stored")
    mail_from: str = setting("SEATMAP_MAIL_FROM", "seatmap <no-reply@seatmap.local>", help="sender of mails")
    login_max_attempts: int = setting(
        "SEATMAP_LOGIN_MAX_ATTEMPTS", 5, minimum=1, help="failed logins per account per window"
    )
    login_window: int = setting("SEATMAP_LOGIN_WINDOW", 300, minimum=1, help="the login rate-limit window")
    login_ip_max_attempts: int = setting(
        "SEATMAP_LOGIN_IP_MAX_ATTEMPTS", 30, minimum=1, help="failed logins per client IP per window"
    )
    login_device_max_attempts: int = setting(
        "SEATMAP_LOGIN_DEVICE_MAX_ATTEMPTS", 5, minimum=1,
        help="failed logins per window from a device cookie, which the IP and account limits spare",
    )  # fmt: skip
    device_cookie_ttl: int = setting(
        "SEATMAP_DEVICE_COOKIE_TTL", 180 * 24 * 3600, minimum=60,
        help="how long a device that logged in stays known to the login limits",
    )  # fmt: skip
    register_max_per_address: int = setting(
        "SEATMAP_REGISTER_MAX_PER_ADDRESS", 20, minimum=1, help="registrations per client IP per window"
    )
    register_window: int = setting(
        "SEATMAP_REGISTER_WINDOW", 3600, minimum=1, help="the registration rate-limit window"
    )
    require_verified_email: bool = setting(
        "SEATMAP_REQUIRE_VERIFIED_EMAIL", True, help="holding seats and ordering need a verified email"
    )
    verification_code_ttl: int = setting(
        "SEATMAP_VERIFICATION_CODE_TTL", 900, minimum=60, help="lifetime of an e-mail verification code"
    )
    hold_ttl: int = setting("SEATMAP_HOLD_TTL", 600, minimum=1, help="how long a seat hold lasts")
    hold_max: int = setting(
        "SEATMAP_HOLD_MAX", 1800, minimum=1, help="the longest a hold can be extended to (not below the TTL)"
    )
    hold_max_seats: int = setting("SEATMAP_HOLD_MAX_SEATS", 10, minimum=1, help="seats in one hold")
    holds_per_user: int = setting(
        "SEATMAP_HOLDS_PER_USER", 1, minimum=1, help="holds one user may have per screening"
    )
    holds_per_account: int = setting(
        "SEATMAP_HOLDS_PER_ACCOUNT", 3, minimum=0,
        help="live holds one account may have across all screenings (429 beyond; 0: no cap)",
    )  # fmt: skip
    hold_seats_per_address: int = setting(
        "SEATMAP_HOLD_SEATS_PER_ADDRESS", 40, minimum=0,
        help="seats held from one client address on one screening, all accounts together (0: no cap)",
    )  # fmt: skip
    payment_window: int = setting(
        "SEATMAP_PAYMENT_WINDOW", 900, minimum=30,
        help="making an order extends its hold to this (never past the hold's max)",
    )  # fmt: skip
    payment_provider: str = setting("SEATMAP_PAYMENT_PROVIDER", "simulated", help="payment gateway")
    webhook_secret: Secret | None = setting(
        "SEATMAP_WEBHOOK_SECRET", None, min_length=32,
        help="HMAC-SHA256 key of payment webhooks; unset, one is derived from the JWT secret",
    )  # fmt: skip
    webhook_tolerance: int = setting(
        "SEATMAP_WEBHOOK_TOLERANCE", 300, minimum=1,
        help="a webhook further than this from our clock is refused (a replay)",
    )  # fmt: skip
    webhook_allow_private: bool = setting(
        "SEATMAP_WEBHOOK_ALLOW_PRIVATE", False,
        help="outgoing webhooks may go to loopback and private addresses (tests, a receiver on this host)",
    )  # fmt: skip
    webhook_timeout: float = setting(
        "SEATMAP_WEBHOOK_TIMEOUT", 10.0, positive=True,
        help="how long one outgoing webhook waits for the integrator's answer (then it is retried)",
    )  # fmt: skip
    simulated_decline: bool = setting(
        "SEATMAP_SIMULATED_DECLINE", False, help="simulated gateway: decline every payment"
    )
    simulated_webhook_copies: int = setting(
        "SEATMAP_SIMULATED_WEBHOOK_COPIES",
        1,
        minimum=1,
        help="simulated gateway: copies of each webhook",
    )
    simulated_out_of_order: bool = setting(
        "SEATMAP_SIMULATED_OUT_OF_ORDER",
        False,
        help="simulated gateway: events out of order",
    )
    simulated_webhook_delay: float = setting(
        "SEATMAP_SIMULATED_WEBHOOK_DELAY",
        0.0,
        minimum=0,
        help="simulated gateway: webhooks this late",
    )
    simulated_webhook_url: str | None = setting(
        "SEATMAP_SIMULATED_WEBHOOK_URL",
        None,
        help="simulated gateway: webhooks to (unset: us)",
    )
    checkin_opens_before: int = setting(
        "SEATMAP_CHECKIN_OPENS_BEFORE", 3600, minimum=0, help="door check-in opens this long before the start"
    )
    refund_deadline: int = setting(
        "SEATMAP_REFUND_DEADLINE", 7200, minimum=0,
        help="a customer may refund a paid order until this long before the start",
    )  # fmt: skip
    nearly_sold_out: float = setting(
        "SEATMAP_NEARLY_SOLD_OUT", 0.9, positive=True, maximum=1,
        help="share of a screening's sellable seats sold that alerts admins (and shows few_left)",
    )  # fmt: skip
    ask_holder_names: bool = setting(
        "SEATMAP_ASK_HOLDER_NAMES", False,
        help="checkout and the box office ask a name per ticket (required only where the event asks)",
    )  # fmt: skip
    refund_timeout: float = setting(
        "SEATMAP_REFUND_TIMEOUT", 30.0, positive=True,
        help="how long a refund waits for the gateway before counting as failed (and retried)",
    )  # fmt: skip
    simulated_latency: float = setting(
        "SEATMAP_SIMULATED_LATENCY", 0.0, minimum=0, help="simulated gateway: seconds each call takes"
    )
    simulated_refund_failure_rate: float = setting(
        "SEATMAP_SIMULATED_REFUND_FAILURE_RATE", 0.0, minimum=0, maximum=1,
        help="simulated gateway: share of refund calls that fail before refunding",
    )  # fmt: skip
    simulated_refund_timeout_rate: float = setting(
        "SEATMAP_SIMULATED_REFUND_TIMEOUT_RATE", 0.0, minimum=0, maximum=1,
        help="simulated gateway: share of refund calls that refund but never answer",
    )  # fmt: skip
    # A worker has no web server: its counters (jobs and refunds by outcome, webhook deliveries)
    # are only seen if it serves them itself. Queue depth and ages are read from PostgreSQL by
    # every web process's /metrics, so they need no worker port.
    worker_metrics_port: int = setting(
        "SEATMAP_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535,
        help="a worker serves its own metrics at http://HOST:PORT/metrics; 0: not served",
    )  # fmt: skip
    worker_metrics_host: str = setting(
        "SEATMAP_WORKER_METRICS_HOST", "127.0.0.1", help="the address the worker's metrics listen on"
    )
    job_concurrency: int = setting(
        "SEATMAP_JOB_CONCURRENCY", 32, minimum=1, help="jobs one worker process runs at once"
    )
    job_max_attempts: int = setting(
        "SEATMAP_JOB_MAX_ATTEMPTS", 10, minimum=1, help="attempts before a job is dead"
    )
    job_backoff: float = setting(
        "SEATMAP_JOB_BACKOFF", 2.0, positive=True,
        help="delay before a failed job's first retry (doubling, jittered, capped)",
    )  # fmt: skip
    job_max_backoff: float = setting(
        "SEATMAP_JOB_MAX_BACKOFF", 600.0, positive=True, help="the longest delay between retries"
    )
    job_lease: float = setting(
        "SEATMAP_JOB_LEASE", 5.0, positive=True,
        help="a running job's lease, renewed every third of it: a dead worker's job comes due after this",
    )  # fmt: skip
    outage_max_backoff: float = setting(
        "SEATMAP_OUTAGE_MAX_BACKOFF", 5.0, positive=True,
        help="background loops retry through a PostgreSQL/Redis outage at most this far apart",
    )  # fmt: skip
    job_poll_interval: float = setting(
        "SEATMAP_JOB_POLL_INTERVAL", 1.0, positive=True, help="workers look for due jobs at least this often"
    )
    # On in dev mode, so one `seatmap serve` does everything; production runs `seatmap worker`.
    inline_worker: bool = setting(
        "SEATMAP_INLINE_WORKER", False, dev_default=True, help="run the job worker inside the web process too"
    )
    ws_max_message: int = setting(
        "SEATMAP_WS_MAX_MESSAGE", 16 * 1024, minimum=256, help="largest WebSocket message a client may send"
    )
    ws_queue_size: int = setting(
        "SEATMAP_WS_QUEUE_SIZE", 256, minimum=1,
        help="deltas queued for one socket before it is reset to a snapshot (~5 s at 50 changes/s)",
    )  # fmt: skip
    ws_heartbeat: float = setting("SEATMAP_WS_HEARTBEAT", 20.0, positive=True, help="WebSocket ping interval")
    ws_send_timeout: float = setting(
        "SEATMAP_WS_SEND_TIMEOUT", 5.0, positive=True,
        help="a frame not sent within this (the client stopped reading) closes the socket with 4009",
    )  # fmt: skip
    ws_batch_window: float = setting(
        "SEATMAP_WS_BATCH_WINDOW_MS", 0.01, minimum=0, milliseconds=True,
        help="for ?batch=1 clients, at most one frame per socket per window (0: no batching)",
    )  # fmt: skip
    ws_commands_per_second: float = setting(
        "SEATMAP_WS_COMMANDS_PER_SECOND", 10.0, positive=True, help="sustained commands per socket"
    )
    ws_command_burst: int = setting(
        "SEATMAP_WS_COMMAND_BURST", 20, minimum=1, help="command burst per socket"
    )
    ws_max_per_address: int = setting(
        "SEATMAP_WS_MAX_PER_ADDRESS", 500, minimum=0, maximum=100_000,
        help="open WebSockets per client address across all web processes (HTTP 429 beyond; 0: no cap)",
    )  # fmt: skip
    sweep_interval: float = setting(
        "SEATMAP_SWEEP_INTERVAL",
        0.5,
        positive=True,
        help="how often the sweeper looks for expired holds",
    )
    expiry_notifications: bool = setting(
        "SEATMAP_EXPIRY_NOTIFICATIONS", True,
        help="listen for keyspace `expired` events (the fast restock path); the sweeper runs regardless",
    )  # fmt: skip
    reconcile_interval: float = setting(
        "SEATMAP_RECONCILE_INTERVAL", 30.0, positive=True,
        help="how often one web process checks the seat map in Redis against the tickets in PostgreSQL "
        "and marks sold again any ticketed seat shown free",
    )  # fmt: skip
    recovery_log_length: int = setting(
        "SEATMAP_RECOVERY_LOG_LENGTH", 1000, minimum=10, help="changes kept per screening for resume"
    )
    strand_max_share: float = setting(
        "SEATMAP_STRAND_MAX_SHARE", 0.9, minimum=0, maximum=1,
        help="the no-stranded-seat rule steps aside once this share of a hall is taken",
    )  # fmt: skip
    sweet_row: float = setting(
        "SEATMAP_SWEET_ROW", 0.6, minimum=0, maximum=1,
        help="best-available's sweet spot: this fraction of the depth from the screen, on the centre line",
    )  # fmt: skip
    log_level: str = setting(
        "SEATMAP_LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="the least level logged",
    )  # fmt: skip
    log_json: bool = setting(
        "SEATMAP_LOG_JSON", False, production_default=True, help="one JSON object per log line"
    )

    @property
    def base_url(self) -> str:
        """The public base URL, without a trailing slash: `SEATMAP_PUBLIC_URL`, or in dev mode
        (where `seatmap serve` sets it to the address it serves) `http://localhost:8000`.

        Outside dev mode an unset one is a ConfigError; `create_app` asks at start-up, so a web
        process refuses to start rather than hand out URLs built from a client's Host header.
        """
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        if self.dev:
            return DEV_PUBLIC_URL
        raise ConfigError(
            f"{_variable('public_url').env} is not set. It is required outside dev mode: it is the "
            "address users reach this server at (e.g. https://tickets.example.com), from which "
            "payment redirects and webhook URLs are built."
        )

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
        """Read every declared variable; an unset or empty one takes its default."""
        kinds = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.default is not _MISSING:
                values[f.name] = _read(environ, f.metadata["variable"], kinds[f.name], f.default)
        embedded = values["database_url"] is None or values["redis_url"] is None
        dev = _read(environ, _variable("dev"), bool, embedded)
        for f in dataclasses.fields(cls):
            variable = f.metadata["variable"]
            mode_default = variable.dev_default if dev else variable.production_default
            if mode_default is not None:
                values[f.name] = _read(environ, variable, kinds[f.name], mode_default)
        jwt = _variable("jwt_secret")
        secret = _read(environ, jwt, Secret | None, None)
        if secret is None:
            if not dev:
                raise ConfigError(
                    f"{jwt.env} is not set. It is required outside dev mode "
                    "(dev mode is on when DATABASE_URL or REDIS_URL is unset, or SEATMAP_DEV=1)."
                )
            secret = Secret(_dev_secret(values["data_dir"]))
        if values["public_url"] is not None:
            values["public_url"] = _public_url(values["public_url"])
        if values["hold_max"] < values["hold_ttl"]:
            raise ConfigError("SEATMAP_HOLD_MAX must not be shorter than SEATMAP_HOLD_TTL")
        return cls(dev=dev, jwt_secret=secret, **values)


def _variable(name: str) -> Variable:
    variable: Variable = Settings.__dataclass_fields__[name].metadata["variable"]
    return variable


def variables() -> list[Variable]:
    """Every environment variable the settings read, in declaration order (for the docs test)."""
    return [f.metadata["variable"] for f in dataclasses.fields(Settings)]


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _read(environ: Mapping[str, str], variable: Variable, kind: Any, default: Any) -> Any:
    """The value of one variable, parsed as `kind` and checked against its bounds."""
    raw = environ.get(variable.env)
    if raw is None or raw == "":
        return default
    name = variable.env
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")
    if kind is int or variable.milliseconds:
        try:
            number: float = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        _check_bounds(variable, number)
        return number / 1000 if variable.milliseconds else number
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        _check_bounds(variable, number)
        return number
    if kind == tuple[str, ...]:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind is Path:
        return Path(raw).expanduser()
    if len(raw) < variable.min_length:
        raise ConfigError(f"{name} must be at least {variable.min_length} characters long")
    if kind == Secret | None or kind is Secret:
        return Secret(raw)
    if variable.choices:
        if raw.upper() not in variable.choices:
            raise ConfigError(f"{name} must be one of {', '.join(variable.choices)}, got {raw!r}")
        return raw.upper()
    assert kind is str or kind == str | None, f"{name}: no reader for {kind}"
    return raw


def _public_url(raw: str) -> str:
    """`SEATMAP_PUBLIC_URL` checked: an http(s) URL with a host, a valid port and nothing after
    its path (no user, query or fragment); returned without a trailing slash."""
    name = _variable("public_url").env
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ConfigError(f"{name} must be a URL such as https://tickets.example.com, got {raw!r}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(f"{name} must be a URL such as https://tickets.example.com, got {raw!r}")
    return raw.strip().rstrip("/")


def _check_bounds(variable: Variable, value: float) -> None:
    name = variable.env
    if variable.positive and value <= 0:
        raise ConfigError(f"{name} must be greater than 0 (0 would leave no pause), got {value:g}")
    if variable.minimum is not None and value < variable.minimum:
        raise ConfigError(f"{name} must be at least {variable.minimum:g}, got {value:g}")
    if variable.maximum is not None and value > variable.maximum:
        raise ConfigError(f"{name} must be at most {variable.maximum:g}, got {value:g}")


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
