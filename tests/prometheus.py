"""A real Prometheus server for tests that check what Windsock's /metrics means to its actual consumer.

Parsing the exposition text ourselves would only prove that our parser agrees with our printer; running
Debian's ``prometheus`` binary (apt-get install prometheus) scrapes the endpoints the way production
does, so a malformed line, a wrong metric type, a missing bearer token or a counter that resets shows
up as Prometheus itself sees it, through PromQL. The server binds to 127.0.0.1 on a free port, scrapes
only the static loopback targets it is given, keeps its TSDB and log in the test's temp dir, and is
always stopped (SIGTERM, then SIGKILL), so it never touches port 9090 or any system Prometheus.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.helpers import UNIT, Process, free_port, need_binary

# Loopback only: never route the API calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _duration(seconds: float) -> str:
    """A Prometheus duration ("500ms"): whole milliseconds, as its parser accepts no fractions."""
    millis = round(seconds * 1000)
    assert millis > 0, f"duration must be at least 1 ms, not {seconds!r} s"
    return f"{millis}ms"


class Prometheus:
    """A real ``prometheus`` process on a loopback port, its config, data and log under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        """Find the binary (skipped outside CI, a failure in CI, if it is missing); nothing starts yet."""
        self.binary = need_binary("prometheus")
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "prometheus.yml"
        self.log = self.dir / "prometheus.log"
        self.port = 0
        self.process: Process | None = None

    @property
    def base(self) -> str:
        """The server's URL, http://127.0.0.1:PORT (valid once started)."""
        return f"http://127.0.0.1:{self.port}"

    def start(
        self,
        targets: list[str],
        *,
        scrape_interval: float = 0.5,
        job: str = "windsock",
        metrics_path: str = "/metrics",
        bearer: str | None = None,
    ) -> None:
        """Scrape ``targets`` ("127.0.0.1:PORT") every ``scrape_interval`` s; return once /-/ready is 200.

        ``bearer`` is sent as ``Authorization: Bearer ...`` on every scrape. The scrape timeout equals
        the interval (Prometheus refuses a longer one). If the process exits or is not ready within
        30 s, AssertionError carries the tail of its log.
        """
        assert self.process is None, "Prometheus already started"
        interval = _duration(scrape_interval)
        scrape: dict[str, Any] = {
            "job_name": job,
            "metrics_path": metrics_path,
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": list(targets)}],
        }
        if bearer is not None:
            scrape["authorization"] = {"type": "Bearer", "credentials": bearer}
        timing = {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval}
        config = {
            "global": timing,
            "scrape_configs": [scrape],
        }
        # JSON is YAML: no YAML library needed, and every string is quoted safely.
        self.config.write_text(json.dumps(config, indent=2) + "\n")
        # free_port() may race another process for the port: retry when the bind is what failed.
        for attempt in range(3):
            self.port = free_port()
            self.process = Process(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                log=str(self.log),
            )
            try:
                self._wait_ready(30 * UNIT)
                return
            except AssertionError:
                retry = attempt < 2 and "address already in use" in self._log_tail()
                self.stop()
                if not retry:
                    raise

    def _wait_ready(self, timeout: float) -> None:
        """Poll /-/ready until 200; AssertionError with the log tail if the process dies or time runs out."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.proc.poll()
            if code is not None:
                tail = self._log_tail()
                raise AssertionError(f"prometheus exited with {code} before it was ready:\n{tail}")
            try:
                with _OPENER.open(f"{self.base}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:  # 503 while the TSDB is still opening
                exc.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"prometheus not ready within {timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log (stdout and stderr)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET an API path, decoded; AssertionError with the body unless its status is "success"."""
        url = f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")
        try:
            with _OPENER.open(url, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # 400/422/503 carry a JSON error body
            with exc:
                body = exc.read()
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict) or decoded.get("status") != "success":
            raise AssertionError(f"GET {url}: {body.decode(errors='replace')}")
        return decoded

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now: a list of {"metric": {...}, "value": [ts, "str"]}.

        A scalar or string result comes back as one entry with empty labels, so ``value()`` reads it too.
        """
        data = self._get("/api/v1/query", {"query": promql})["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, promql: str) -> float | None:
        """The query's single value as a float, or None if it has no result; more than one series fails."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, f"{promql!r} has {len(result)} series, expected one: {result}"
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with (among others) scrapeUrl, health and lastError."""
        return list(self._get("/api/v1/targets", {"state": "active"})["data"]["activeTargets"])

    def describe_targets(self) -> str:
        """One line per scrape target: its URL, health and last error, for failure messages."""
        try:
            targets = self.targets()
        except (AssertionError, OSError) as exc:
            return f"  (targets unavailable: {exc})"
        if not targets:
            # Discovery hands targets to the scrape manager only every 5 s, the first time too.
            return "  (no active targets yet: Prometheus 2.x applies its targets about 5 s after start)"
        return "\n".join(
            f"  {t.get('scrapeUrl')}: {t.get('health')}"
            + (f" ({t['lastError']})" if t.get("lastError") else "")
            for t in targets
        )

    def wait_for(self, promql: str, expected: float, timeout: float = 30) -> float:
        """Poll ``value(promql)`` every 0.25 s until it equals ``expected``; return it.

        On timeout, AssertionError names the last value seen and every target's health and last error.
        """
        deadline = time.monotonic() + timeout * UNIT
        last: float | None = None
        while True:
            last = self.value(promql)
            if last is not None and math.isclose(last, expected, rel_tol=1e-9, abs_tol=1e-12):
                return last
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        raise AssertionError(
            f"{promql!r} is {last!r}, not {expected!r}, after {timeout * UNIT:.1f} s; "
            f"scrape targets:\n{self.describe_targets()}"
        )

    def stop(self) -> None:
        """SIGTERM, up to 10 s to exit, then SIGKILL; safe to call twice or before start()."""
        if self.process is not None:
            self.process.stop(timeout=10.0)
            self.process = None
