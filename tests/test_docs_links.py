"""Every relative link and #anchor in README.md and docs/*.md resolves; the markdown helpers behind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_blocks import ROOT, anchors, broken_links, links, manual_files, slug


@pytest.mark.parametrize("path", manual_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    """Each relative link in this manual page names an existing file, and each #anchor an existing heading."""
    assert broken_links(path) == []


def test_readme_links_every_docs_page() -> None:
    """README.md links every page under docs/, so none is orphaned."""
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links((ROOT / "README.md").read_text())}
    assert [p.name for p in manual_files()[1:] if p.resolve() not in linked] == []


def test_slug_follows_githubs_rule() -> None:
    """Headings become GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    assert slug("Docker: what is verified") == "docker-what-is-verified"
    assert slug("Targets (issue 8)") == "targets-issue-8"
    assert slug("The `/healthz` of ingest") == "the-healthz-of-ingest"
    assert slug("Leases: one active poller per source") == "leases-one-active-poller-per-source"


def test_anchors_number_repeats_and_ignore_code() -> None:
    """A repeated heading gets -1, and a `#` line inside a fenced block is no heading."""
    text = "# A\n\n## B\n\n```sh\n# not a heading\n```\n\n## B\n"
    assert anchors(text) == {"a", "b", "b-1"}


def test_links_skip_code_and_find_images() -> None:
    """Links and images are found in prose, never inside inline code or fenced blocks."""
    text = "See [x](a.md#b) and ![img](p.png).\n`[no](c.md)`\n```\n[no](d.md)\n```\n"
    assert links(text) == ["a.md#b", "p.png"]


def test_broken_links_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    """A link to a missing file or a missing heading is reported; good ones and URLs are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Alpha\n\n## Beta gamma\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/a.md#beta-gamma) [self](#top) [gone](docs/b.md) [bad](docs/a.md#delta) "
        "[web](https://example.org/x#y)\n\n# Top\n"
    )
    assert broken_links(readme, tmp_path) == [
        "docs/b.md: docs/b.md does not exist",
        "docs/a.md#delta: no heading #delta in docs/a.md",
    ]
