"""Command-line tools that go with Windsock (run them with ``python -m app.tools.NAME``)."""
