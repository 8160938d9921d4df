"""deploy/stack.py's nginx sizing options, which the bench starts the stack with: rendered, not run."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
import stack as launcher  # noqa: E402  (deploy/stack.py, the `make run` launcher)


def main_lines(path: Path) -> list[str]:
    """The main config's worker_processes and worker_connections lines, stripped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line.startswith(("worker_processes", "worker_connections"))]


def test_defaults_render_make_runs_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the options, nginx gets one worker process and the descriptor limit less 64 connections."""
    monkeypatch.delenv("NGINX_WORKERS", raising=False)
    monkeypatch.delenv("NGINX_CONNECTIONS", raising=False)
    args = launcher.parse_args([])
    assert (args.nginx_workers, args.nginx_connections) == (1, 0)
    values = launcher.native_values(8080, [8001], 1000)
    main = launcher.write_nginx_config(
        tmp_path, values, workers=args.nginx_workers, connections=args.nginx_connections
    )
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    expected = max(1024, min(65536, nofile - 64))
    assert main_lines(main) == ["worker_processes 1;", f"worker_connections {expected};"]
    assert main.read_text() == launcher.write_nginx_config(tmp_path / "plain", values).read_text().replace(
        str(tmp_path / "plain"), str(tmp_path)
    )


def test_options_and_their_variables_size_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--nginx-workers and --nginx-connections, or NGINX_WORKERS and NGINX_CONNECTIONS, size nginx."""
    args = launcher.parse_args(["--nginx-workers", "2", "--nginx-connections", "20000"])
    main = launcher.write_nginx_config(
        tmp_path,
        launcher.native_values(8080, [8001], 1000),
        workers=args.nginx_workers,
        connections=args.nginx_connections,
    )
    assert main_lines(main) == ["worker_processes 2;", "worker_connections 20000;"]
    monkeypatch.setenv("NGINX_WORKERS", "3")
    monkeypatch.setenv("NGINX_CONNECTIONS", "5000")
    args = launcher.parse_args([])
    assert (args.nginx_workers, args.nginx_connections) == (3, 5000)


def test_options_refuse_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    """No nginx worker process, or a negative connection count, is refused with a usage error."""
    for argv in (["--nginx-workers", "0"], ["--nginx-connections", "-1"]):
        with pytest.raises(SystemExit):
            launcher.parse_args(argv)
        assert argv[0] in capsys.readouterr().err
