"""The native stack's fixtures (tests/stack/conftest.py), for the client's tests."""

from tests.stack.conftest import fresh_stack, native_stack

__all__ = ["fresh_stack", "native_stack"]
