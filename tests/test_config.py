"""Settings: environment, flags, and a one-line failure naming a bad variable."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from app.config import ConfigError, add_arguments, load_settings


def test_defaults() -> None:
    """With nothing set, one process on 8888 uses the memory broker."""
    settings = load_settings(environ={})
    assert settings.port == 8888 and settings.broker_url == "memory://"
    assert settings.history_size == 100 and settings.client_publish == ("chat.*",)


def test_environment_is_read() -> None:
    """Environment variables set the matching settings, lists split on commas."""
    settings = load_settings(
        environ={
            "PORT": "9001",
            "REDIS_URL": "redis://h:1/0",
            "ALLOWED_ORIGINS": "https://a, http://b:81",
            "HEARTBEAT_INTERVAL": "0.5",
        }
    )
    assert settings.port == 9001 and settings.broker_url == "redis://h:1/0"
    assert settings.allowed_origins == ("https://a", "http://b:81") and settings.heartbeat_interval == 0.5


def test_flags_win_over_environment() -> None:
    """A command-line flag overrides the environment variable of the same setting."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = parser.parse_args(["--port", "7000", "--history-size", "5"])
    settings = load_settings(environ={"PORT": "9001"}, flags=flags)
    assert (settings.port, settings.history_size) == (7000, 5)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"HISTORY_SIZE": "0"}, "HISTORY_SIZE"),
        ({"HEARTBEAT_INTERVAL": "nan"}, "HEARTBEAT_INTERVAL"),
        ({"REDIS_URL": "mysql://x"}, "REDIS_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"ALLOWED_ORIGINS": "example.com"}, "ALLOWED_ORIGINS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    """Each bad value raises ConfigError whose message starts with the variable's name."""
    with pytest.raises(ConfigError, match=f"^{named}"):
        load_settings(environ=env)


def test_cli_fails_fast_with_one_line() -> None:
    """python -m app with a bad setting exits 2 with a single line naming the variable."""
    proc = subprocess.run(
        [sys.executable, "-m", "app"],
        env={"PORT": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["windsock: PORT='abc' is not a valid int"]
