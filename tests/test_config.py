"""Settings: environment, flags, and a one-line failure naming a bad variable."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from app.config import ConfigError, add_arguments, check_exposure, is_loopback, load_settings


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


# Secure by default: no keyless publishing on an address other machines reach.


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (" LocalHost ", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.0.2.2", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    """Only 127.0.0.0/8, ::1 and localhost count as loopback; every interface and any name do not."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("env", "serves_api", "named"),
    [
        ({"HOST": "0.0.0.0"}, True, "HOST='0.0.0.0' .* PUBLISH_KEY is empty"),
        ({"HOST": ""}, True, "HOST='' .* PUBLISH_KEY is empty"),
        ({"HOST": "127.0.0.1", "HTTP_BIND": "0.0.0.0"}, True, "HTTP_BIND='0.0.0.0' .* PUBLISH_KEY is empty"),
        ({"HOST": "0.0.0.0", "HTTP_BIND": "192.0.2.2"}, True, "HTTP_BIND='192.0.2.2' .* PUBLISH_KEY"),
        ({"UDP_HOST": "0.0.0.0"}, False, "UDP_HOST='0.0.0.0' .* UDP_TOKEN is empty"),
        ({"UDP_HOST": "127.0.0.1", "UDP_BIND": "0.0.0.0"}, False, "UDP_BIND='0.0.0.0' .* UDP_TOKEN is empty"),
        ({"UDP_HOST": "0.0.0.0", "PUBLISH_KEY": "k"}, True, "UDP_HOST='0.0.0.0' .* UDP_TOKEN is empty"),
        ({"OPEN_PUBLISH": "false", "HOST": "0.0.0.0"}, True, "HOST='0.0.0.0' .* OPEN_PUBLISH=true"),
    ],
)
def test_exposure_without_a_key_is_refused(env: dict[str, str], serves_api: bool, named: str) -> None:
    """A non-loopback bind without PUBLISH_KEY (HTTP) or UDP_TOKEN (UDP) raises one error naming both."""
    settings = load_settings(environ=env)
    with pytest.raises(ConfigError, match=f"^{named}") as info:
        check_exposure(settings, serves_api=serves_api)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "serves_api"),
    [
        ({}, True),
        ({"HOST": "0.0.0.0", "PUBLISH_KEY": "k"}, True),
        (
            {"HOST": "0.0.0.0", "HTTP_BIND": "127.0.0.1"},
            True,
        ),  # compose: the container binds, nginx publishes
        ({"HOST": "0.0.0.0", "SOURCES": ""}, False),  # an ingest process serves only /healthz
        ({"HOST": "0.0.0.0", "SOURCES": "", "OPEN_PUBLISH": "true"}, True),
        ({"UDP_HOST": "0.0.0.0", "UDP_TOKEN": "t"}, False),
        ({"UDP_HOST": "0.0.0.0", "UDP_BIND": "127.0.0.1"}, False),
        ({"UDP_HOST": "0.0.0.0", "SOURCES": "demo"}, True),  # no UDP listener at all
        ({"HOST": "0.0.0.0", "UDP_HOST": "0.0.0.0", "OPEN_PUBLISH": "yes"}, True),
    ],
)
def test_exposure_allowed(env: dict[str, str], serves_api: bool) -> None:
    """Loopback binds, a key or token, a publish port on loopback, or OPEN_PUBLISH start normally."""
    check_exposure(load_settings(environ=env), serves_api=serves_api)


@pytest.mark.parametrize(
    ("raw", "value"), [("", False), ("0", False), ("false", False), ("On", True), ("1", True), ("TRUE", True)]
)
def test_open_publish_is_a_boolean(raw: str, value: bool) -> None:
    """OPEN_PUBLISH takes true/false, 1/0, yes/no, on/off (any case); empty is false."""
    assert load_settings(environ={"OPEN_PUBLISH": raw}).open_publish is value


def test_open_publish_rejects_other_words() -> None:
    """OPEN_PUBLISH=maybe stops the program with a message naming the variable."""
    with pytest.raises(ConfigError, match=r"^OPEN_PUBLISH='maybe' must be true or false$"):
        load_settings(environ={"OPEN_PUBLISH": "maybe"})


def _run_app(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={"PATH": "/usr/bin:/bin", "PORT": "0", "SOURCES": "", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_worker_on_every_interface_without_key_refuses_to_start() -> None:
    """python -m app --host 0.0.0.0 without PUBLISH_KEY exits 2 at once with one line naming both."""
    proc = _run_app("--host", "0.0.0.0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "windsock: HOST='0.0.0.0' is reachable from other machines and PUBLISH_KEY is empty, so anyone "
        "could publish: set PUBLISH_KEY, or bind 127.0.0.1, or set OPEN_PUBLISH=true to allow it"
    ]


def test_ingest_udp_on_every_interface_without_token_refuses_to_start() -> None:
    """python -m app ingest with UDP_HOST=0.0.0.0 and no UDP_TOKEN exits 2 with one line naming both."""
    proc = _run_app("ingest", SOURCES="udp", UDP_HOST="0.0.0.0", UDP_PORT="0")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("windsock: UDP_HOST='0.0.0.0' is reachable"), lines
    assert "UDP_TOKEN is empty" in lines[0]


def test_check_flag_reports_without_starting() -> None:
    """--check exits 0 for usable settings and 2 with the reason otherwise, binding nothing."""
    assert _run_app("--check", HTTP_BIND="127.0.0.1", HOST="0.0.0.0").returncode == 0
    refused = _run_app("--check", HTTP_BIND="0.0.0.0")
    assert refused.returncode == 2 and refused.stderr.startswith("windsock: HTTP_BIND='0.0.0.0'")


def test_unknown_source_kind_refuses_to_start_naming_the_known_ones() -> None:
    """SOURCES=udp,bogus exits 2 with one line naming the unknown entry and every kind the registry has."""
    from app.sources.registry import KINDS

    proc = _run_app("--check", SOURCES="udp,bogus")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"windsock: SOURCES has unknown entries ['bogus']; use {', '.join(KINDS)}"
    ]
