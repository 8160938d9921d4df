"""deploy/stack.py, with nginx sized for 10,000 proxied streams under a 20,000-descriptor limit.

The benchmark runs the stack exactly as `make run` does (same launcher, same
template, same supervisord.conf), except for two lines of nginx's main
config. worker_connections counts descriptors, and a proxied stream takes
two (client and upstream), so deploy/stack.py's nofile/2 - 64 allows only
about 4,950 streams. 10,000 streams need 20,000 descriptors, which one
process cannot hold when the hard limit is 20,000 (an unprivileged
container cannot raise it): with BENCH_NGINX_WORKERS=2 worker processes
(default 1) each holds half.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_stack() -> object:
    spec = importlib.util.spec_from_file_location("windsock_stack", ROOT / "deploy" / "stack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    stack = load_stack()
    workers = int(os.environ.get("BENCH_NGINX_WORKERS", "1"))
    main_conf: str = stack.NGINX_MAIN  # type: ignore[attr-defined]
    patched = main_conf.replace("worker_processes 1;", f"worker_processes {workers};").replace(
        "worker_connections {connections};", "worker_connections {nofile};"
    )
    if patched == main_conf:
        print("stack_launch: deploy/stack.py's nginx config changed; running it unpatched", file=sys.stderr)
    stack.NGINX_MAIN = patched  # type: ignore[attr-defined]
    return int(stack.main())  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
