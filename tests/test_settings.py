"""Settings.from_environ: defaults, dev mode, refusals, and secrets that never print."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from seatmap import settings as settings_module
from seatmap.errors import ConfigError
from seatmap.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-" + "k" * 40
PRODUCTION = {
    "DATABASE_URL": "postgresql://app:pg-password@db.internal:5432/seatmap",
    "REDIS_URL": "redis://:redis-password@cache.internal:6379/0",
    "SEATMAP_JWT_SECRET": SECRET,
}


def test_defaults_with_real_servers() -> None:
    """With both URLs and a secret set, the process runs in production mode with the defaults."""
    settings = Settings.from_environ(PRODUCTION)
    assert settings.database_url == PRODUCTION["DATABASE_URL"]
    assert settings.redis_url == PRODUCTION["REDIS_URL"]
    assert not settings.dev and not settings.embedded
    assert settings.jwt_secret.reveal() == SECRET
    assert settings.data_dir == Path(".seatmap")
    assert settings.redis_prefix == "sm"
    assert (settings.hold_ttl, settings.hold_max, settings.access_token_ttl) == (600, 1800, 900)
    assert settings.cookie_secure and settings.log_json  # production defaults
    assert settings.allowed_origins == ()
    assert settings.smtp_url is None


def test_values_from_the_environment() -> None:
    """Every kind of value (int, float, bool, list) is read from its variable."""
    settings = Settings.from_environ(
        {
            **PRODUCTION,
            "SEATMAP_HOLD_TTL": "120",
            "SEATMAP_HOLD_MAX": "240",
            "SEATMAP_SWEEP_INTERVAL": "0.25",
            "SEATMAP_COOKIE_SECURE": "no",
            "SEATMAP_ALLOWED_ORIGINS": "https://a.example, https://b.example,",
            "SEATMAP_REDIS_PREFIX": "prod",
            "SEATMAP_LOG_LEVEL": "debug",
        }
    )
    assert (settings.hold_ttl, settings.hold_max, settings.sweep_interval) == (120, 240, 0.25)
    assert settings.cookie_secure is False
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.redis_prefix == "prod"
    assert settings.log_level == "DEBUG"


def test_dev_mode_persists_a_generated_secret(tmp_path: Path) -> None:
    """Without URLs the process is in dev mode: a random JWT secret is kept in the data dir
    (owner-only) and reused on the next start, so logins survive a restart."""
    data_dir = tmp_path / "fresh" / "data"
    first = Settings.from_environ({"SEATMAP_DATA_DIR": str(data_dir)})
    assert first.dev and first.embedded
    assert first.database_url is None and first.redis_url is None
    assert not first.cookie_secure
    secret_file = data_dir / "jwt_secret"
    assert secret_file.read_text().strip() == first.jwt_secret.reveal()
    assert len(first.jwt_secret.reveal()) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    second = Settings.from_environ({"SEATMAP_DATA_DIR": str(data_dir)})
    assert second.jwt_secret == first.jwt_secret
    assert [p.name for p in data_dir.iterdir()] == ["jwt_secret"]  # no temp files left
    other = Settings.from_environ({"SEATMAP_DATA_DIR": str(tmp_path / "other")})
    assert other.jwt_secret != first.jwt_secret


def test_missing_secret_outside_dev_is_a_config_error(tmp_path: Path) -> None:
    """With real servers (or SEATMAP_DEV=0) a missing SEATMAP_JWT_SECRET refuses to start."""
    without = {k: v for k, v in PRODUCTION.items() if k != "SEATMAP_JWT_SECRET"}
    with pytest.raises(ConfigError, match="SEATMAP_JWT_SECRET"):
        Settings.from_environ(without)
    with pytest.raises(ConfigError, match="SEATMAP_JWT_SECRET"):
        Settings.from_environ({"SEATMAP_DATA_DIR": str(tmp_path), "SEATMAP_DEV": "0"})
    assert not (tmp_path / "jwt_secret").exists()


def test_short_secret_is_refused() -> None:
    """A JWT secret shorter than 32 characters is refused, even in dev mode."""
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_environ({**PRODUCTION, "SEATMAP_JWT_SECRET": "x" * 31})
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_environ({"SEATMAP_DEV": "1", "SEATMAP_JWT_SECRET": "short"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SEATMAP_HOLD_TTL", "ten", "must be an integer"),
        ("SEATMAP_HOLD_TTL", "0", "at least 1"),
        ("SEATMAP_ACCESS_TOKEN_TTL", "5", "at least 10"),
        ("SEATMAP_HOLD_MAX", "60", "must not be shorter"),
        ("SEATMAP_WS_QUEUE_SIZE", "1.5", "must be an integer"),
        ("SEATMAP_SWEEP_INTERVAL", "fast", "must be a number"),
        ("SEATMAP_COOKIE_SECURE", "maybe", "must be a boolean"),
        # A float of 0 where 0 would spin a loop (or make a wait that cannot succeed).
        ("SEATMAP_SWEEP_INTERVAL", "0", "greater than 0"),
        ("SEATMAP_SWEEP_INTERVAL", "-0.5", "greater than 0"),
        ("SEATMAP_JOB_POLL_INTERVAL", "0", "greater than 0"),
        ("SEATMAP_JOB_LEASE", "0.0", "greater than 0"),
        ("SEATMAP_JOB_BACKOFF", "0", "greater than 0"),
        ("SEATMAP_JOB_MAX_BACKOFF", "0", "greater than 0"),
        ("SEATMAP_WS_HEARTBEAT", "0", "greater than 0"),
        ("SEATMAP_WS_COMMANDS_PER_SECOND", "0", "greater than 0"),
        ("SEATMAP_REFUND_TIMEOUT", "0", "greater than 0"),
        ("SEATMAP_SWEEP_INTERVAL", "nan", "finite"),
        ("SEATMAP_JOB_POLL_INTERVAL", "inf", "finite"),
        # Shares are fractions; delays are never negative.
        ("SEATMAP_STRAND_MAX_SHARE", "1.5", "at most 1"),
        ("SEATMAP_SWEET_ROW", "-0.1", "at least 0"),
        ("SEATMAP_SIMULATED_REFUND_FAILURE_RATE", "2", "at most 1"),
        ("SEATMAP_SIMULATED_WEBHOOK_DELAY", "-1", "at least 0"),
        ("SEATMAP_WS_BATCH_WINDOW_MS", "-1", "at least 0"),
        ("SEATMAP_WS_BATCH_WINDOW_MS", "2.5", "must be an integer"),
        ("SEATMAP_REFUND_DEADLINE", "-60", "at least 0"),
        ("SEATMAP_VERIFICATION_CODE_TTL", "10", "at least 60"),
        ("SEATMAP_WEBHOOK_SECRET", "short", "at least 32"),
        ("SEATMAP_LOG_LEVEL", "loud", "one of DEBUG, INFO"),
    ],
)
def test_bad_values_are_refused(name: str, value: str, message: str) -> None:
    """A malformed or out-of-range number, flag or name stops start-up with a message naming it."""
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_environ({**PRODUCTION, name: value})
    assert name in caught.value.message


def test_secrets_never_appear_in_repr() -> None:
    """Printing the settings (a log line, a traceback) shows no secret, token or password."""
    settings = Settings.from_environ({**PRODUCTION, "SEATMAP_SMTP_URL": "smtp://mailer:smtp-password@mx:587"})
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in (SECRET, "pg-password", "redis-password", "smtp-password"):
            assert secret not in text
        assert "db.internal:5432/seatmap" in text  # the rest of the URL still helps debugging
    assert settings.database_url == PRODUCTION["DATABASE_URL"]  # masked only when shown
    assert settings.smtp_url is not None and settings.smtp_url.reveal().endswith("@mx:587")
    query = Settings.from_environ({**PRODUCTION, "DATABASE_URL": "postgresql://db/x?user=a&password=qwerty1"})
    assert "qwerty1" not in repr(query)


def test_bounds_admit_their_edges() -> None:
    """The smallest allowed values start: 0 where 0 means "none" (no batching, no delay) is fine."""
    settings = Settings.from_environ(
        {
            **PRODUCTION,
            "SEATMAP_WS_BATCH_WINDOW_MS": "0",
            "SEATMAP_SIMULATED_WEBHOOK_DELAY": "0",
            "SEATMAP_STRAND_MAX_SHARE": "1",
            "SEATMAP_SWEEP_INTERVAL": "0.001",
            "SEATMAP_LOG_LEVEL": "warning",
        }
    )
    assert (settings.ws_batch_window, settings.simulated_webhook_delay) == (0.0, 0.0)
    assert (settings.strand_max_share, settings.sweep_interval) == (1.0, 0.001)
    assert settings.log_level == "WARNING"
    default = Settings.from_environ(PRODUCTION)
    assert default.ws_batch_window == 0.01  # the variable is in milliseconds, the field in seconds


def test_a_tight_loop_setting_stops_the_command_in_one_line(tmp_path: Path) -> None:
    """`seatmap migrate` with SEATMAP_SWEEP_INTERVAL=0 exits 2 with one line naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEATMAP_", "DATABASE_", "REDIS_"))}
    env.update(SEATMAP_DATA_DIR=str(tmp_path), SEATMAP_SWEEP_INTERVAL="0")
    done = subprocess.run(
        [sys.executable, "-m", "seatmap", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "seatmap: SEATMAP_SWEEP_INTERVAL must be greater than 0 (0 would leave no pause), got 0"
    ]
    assert not (tmp_path / "postgres").exists()  # refused before starting anything


def test_every_variable_is_documented_for_operators() -> None:
    """docs/operations.md lists every environment variable the settings read."""
    read = {variable.env for variable in settings_module.variables()}
    assert {"DATABASE_URL", "REDIS_URL", "SEATMAP_JWT_SECRET", "SEATMAP_SWEEP_INTERVAL"} <= read
    assert len(read) == len(dataclasses.fields(Settings)), "two settings read the same variable"
    docs = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in docs)
    assert not missing, f"not in docs/operations.md: {missing}"
