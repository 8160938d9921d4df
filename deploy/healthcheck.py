"""Container healthcheck for the app service: every worker must answer /healthz.

Standard library only (the image has no curl). "degraded" (Redis away) still
counts as alive: restarting app containers cannot fix Redis, and the workers
catch up by themselves when it returns. A worker that does not answer at all
makes the container unhealthy.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def check(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return str(json.load(response)["status"])
    except urllib.error.HTTPError as exc:
        with exc:
            return str(json.load(exc)["status"])
    except (OSError, ValueError, KeyError) as exc:
        return f"down ({exc})"


def main() -> int:
    base = int(os.environ.get("APP_BASE_PORT", "8001"))
    workers = int(os.environ.get("WORKERS", "4"))
    states = {base + i: check(base + i) for i in range(workers)}
    bad = {port: state for port, state in states.items() if state not in {"ok", "degraded"}}
    print(json.dumps(states))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
