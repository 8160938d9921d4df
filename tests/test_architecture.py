"""The package's edges, read from the source: the hub is the only door to the broker."""

from __future__ import annotations

import re
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _sources(*allowed: str) -> dict[str, str]:
    """Every module of app/ but the allowed ones (paths relative to app/), by path."""
    return {
        str(path.relative_to(APP)): path.read_text()
        for path in sorted(APP.rglob("*.py"))
        if not any(str(path.relative_to(APP)).startswith(a) for a in allowed)
    }


def test_only_the_hub_touches_a_broker() -> None:
    """Outside app/hub.py and app/brokers/, no module reaches a broker or imports one (but server.py)."""
    offenders = {
        name
        for name, text in _sources("hub.py", "brokers/").items()
        if re.search(r"\.broker\b|\._broker\b", text)
        or (re.search(r"^from app\.brokers|^import app\.brokers", text, re.M) and name != "server.py")
    }
    assert offenders == set()


def test_the_server_only_builds_the_broker_for_the_hub() -> None:
    """app/server.py takes make_broker alone from app.brokers, to hand the broker to the Hub it builds."""
    text = (APP / "server.py").read_text()
    assert re.findall(r"^from app\.brokers.*$", text, re.M) == ["from app.brokers import make_broker"]
    assert re.search(r"Hub\(\s*make_broker\(settings\)", text)


def test_counters_are_kept_by_the_hub() -> None:
    """Transports and sources report to the hub's methods; none bumps its stats directly (reading is fine)."""
    bump = re.compile(r"hub\.stats\.\w+(\[[^]]*\])?\s*[-+]?=")
    offenders = {name for name, text in _sources("hub.py").items() if bump.search(text)}
    assert offenders == set()


def test_every_app_module_is_at_most_300_lines() -> None:
    """No file in app/ is over 300 lines: a module that grows past that is doing two jobs."""
    sizes = {name: len(text.splitlines()) for name, text in _sources().items()}
    assert "hub.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 300} == {}
