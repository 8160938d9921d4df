"""Tornado's private API is used in app/transports/tornado_compat.py only, and it is all there.

Private names are found the way a reader would find them: the ``_names``
Tornado's modules and classes define (class attributes, and the attributes
their methods set on ``self``), matched against every ``_name`` app/ touches
through an import, through ``tornado.x._name``, through ``self`` in a class
built on a Tornado class, or on another object.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import tornado
import tornado.websocket

import app

ROOT = Path(__file__).resolve().parent.parent
COMPAT = "app.transports.tornado_compat"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def tornado_modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.iter_modules(tornado.__path__, "tornado."):
        if info.name.split(".")[-1] in {"curl_httpclient", "wsgi", "autoreload", "testing", "test"}:
            continue
        try:
            found.append(importlib.import_module(info.name))
        except ImportError:  # an optional dependency (pycurl, twisted) is absent
            continue
    return found


@cache
def class_tree(cls: type) -> ast.ClassDef | None:
    """The parsed source of ``cls`` (None where it has none: a builtin, a C type)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return None
    node = tree.body[0]
    return node if isinstance(node, ast.ClassDef) else None


def self_attributes(cls: type) -> set[str]:
    """The private attributes ``cls``'s own source reads or sets on ``self`` or ``cls``."""
    tree = class_tree(cls)
    if tree is None:
        return set()
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in {"self", "cls"}
        and _private(node.attr)
    }


def class_body_names(cls: type) -> set[str]:
    """The private names ``cls``'s source defines in its body, and touches on ``self``.

    From the source, not ``vars(cls)``: a Tornado decorator's attribute
    (``stream_request_body``) or the ``abc`` module's is not the class's doing.
    """
    tree = class_tree(cls)
    if tree is None:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if _private(name)} | self_attributes(cls)


@cache
def tornado_class_privates(cls: type) -> frozenset[str]:
    """Private names a Tornado class has: in its namespace or set on its instances."""
    return frozenset(name for name in vars(cls) if _private(name)) | self_attributes(cls)


@cache
def tornado_privates() -> frozenset[str]:
    """Every private name Tornado's modules and classes define."""
    names: set[str] = set()
    for module in tornado_modules():
        for name, value in vars(module).items():
            if _private(name):
                names.add(name)
            if inspect.isclass(value) and value.__module__.startswith("tornado"):
                names |= tornado_class_privates(value)
    return frozenset(names)


def app_modules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.walk_packages(app.__path__, "app."):
        if info.name != "app.__main__":
            modules.append(importlib.import_module(info.name))
    return modules


def is_tornado(cls: type) -> bool:
    return cls.__module__.startswith("tornado")


def own_definitions(modules: list[ModuleType]) -> set[str]:
    """Private names app/'s own non-Tornado classes define: not Tornado's, whatever they collide with."""
    names: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            mine = inspect.isclass(value) and value.__module__ == module.__name__
            if mine and not any(is_tornado(base) for base in value.__mro__):
                names |= class_body_names(value)
    return names


def violations(module: ModuleType, own: set[str]) -> list[str]:
    """Each use of a private Tornado name in ``module``, as "line: what"."""
    privates = tornado_privates()
    source = inspect.getsource(module)
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tornado"):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in privates:
            target = node.value
            if isinstance(target, ast.Name) and target.id in {"self", "cls"}:
                continue  # judged per class, below
            chain = ast.unparse(target)
            if chain.startswith("tornado.") or node.attr not in own:
                found.append(f"{node.lineno}: {chain}.{node.attr}")
    # A class built on Tornado's: what it and its own bases define or touch
    # must not be one of the private names of the Tornado classes beneath.
    for value in vars(module).values():
        if not (inspect.isclass(value) and value.__module__ == module.__name__):
            continue
        tornado_bases = [base for base in value.__mro__ if is_tornado(base)]
        if not tornado_bases:
            continue
        beneath = frozenset().union(*(tornado_class_privates(base) for base in tornado_bases))
        for cls in value.__mro__:
            if is_tornado(cls) or cls is object or cls.__module__ == COMPAT:
                continue
            mine = class_body_names(cls)
            found += [f"{value.__name__} ({cls.__name__}): {name}" for name in sorted(mine & beneath)]
    return found


def test_private_tornado_names_appear_in_the_compat_module_only() -> None:
    """No app/ module but tornado_compat imports, reads, sets or overrides a private Tornado name."""
    modules = app_modules()
    own = own_definitions(modules)
    found = [f"{m.__name__}:{v}" for m in modules if m.__name__ != COMPAT for v in violations(m, own)]
    assert not found, "private Tornado names outside tornado_compat:\n" + "\n".join(found)


def test_the_check_finds_private_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above reports each way of reaching Tornado's privates (it is not blind)."""
    (tmp_path / "leaky.py").write_text(
        textwrap.dedent(
            """
            import tornado.websocket
            from tornado.websocket import _WebSocketParams
            from tornado.web import RequestHandler

            class Handler(RequestHandler):
                def write_error(self, status_code, **kwargs):
                    return self._reason

            def written(stream):
                return stream._total_write_index

            THRESHOLD = tornado.websocket._YIELD_THRESHOLD
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = "\n".join(violations(importlib.import_module("leaky"), set()))
    for name in ("_WebSocketParams", "_reason", "_total_write_index", "_YIELD_THRESHOLD"):
        assert name in found


def compat_uses() -> list[tuple[str, str]]:
    """The private names tornado_compat uses: (where, name), where is a module or "attribute"."""
    tree = ast.parse((ROOT / "app" / "transports" / "tornado_compat.py").read_text())
    uses: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tornado"):
            uses += [(node.module or "", a.name) for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and not node.attr.startswith("__"):
            uses.append(("attribute", node.attr))
    return uses


@pytest.mark.parametrize(("where", "name"), compat_uses(), ids=lambda value: value)
def test_every_private_name_the_compat_module_uses_exists_in_this_tornado(where: str, name: str) -> None:
    """Each private Tornado name tornado_compat reaches exists in the installed Tornado, by name."""
    if where != "attribute":
        module = importlib.import_module(where)
        assert hasattr(module, name), f"tornado {tornado.version}: {where}.{name} is gone"
        return
    assert name in tornado_privates(), f"tornado {tornado.version}: no class has {name} any more"


def test_the_frame_protocol_still_overrides_what_tornado_calls() -> None:
    """Tornado still calls the hooks FrameProtocol replaces, with the signatures it expects."""
    protocol = tornado.websocket.WebSocketProtocol13
    for name in ("_receive_frame_loop", "_accept_connection", "_abort", "_read_bytes", "_write_frame"):
        assert name in vars(protocol) or name in vars(tornado.websocket.WebSocketProtocol), name
    assert list(inspect.signature(protocol._accept_connection).parameters) == ["self", "handler"]
    assert list(inspect.signature(protocol._write_frame).parameters)[:4] == ["self", "fin", "opcode", "data"]
    source = inspect.getsource(protocol)
    # Tornado's own frame loop is what calls _receive_frame_loop: if it is not
    # started from _accept_connection any more, the strict loop never runs.
    assert "_receive_frame_loop()" in source
