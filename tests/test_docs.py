"""The manual in docs/: every page is in mkdocs.yml's nav, nothing of the old README was dropped,
and the README's links and the architecture page follow the files. Fast: no build, no server
(`make docs` builds it, strict, and checks the links and anchors between pages)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
# The section the manual took over from the README (tests/integration/test_readme_project.py runs
# it): the newest README in git's history that still has it is the README before the manual.
MOVED_SECTION = "## Adding poller to an existing Celery project"


def headings(markdown: str, levels: str = "#+") -> list[str]:
    """The text of the Markdown headings of ``levels`` (a regex of #s), outside code blocks."""
    found: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(rf"({levels}) (.+?)\s*(\{{[^}}]*\}})?$", line)):
            found.append(match.group(2))
    return found


def nav_pages(nav: Any) -> Iterator[str]:
    """Every page path of an mkdocs.yml nav (items are paths, or {title: path or nav})."""
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from nav_pages(value)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def readme_before_the_manual() -> str:
    """README.md as it was before its sections moved to docs/ (skips without git history)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the old README is read from its history")
    try:
        commits = git("log", "--format=%H", "--", "README.md").split()
        for commit in commits:
            text = git("show", f"{commit}:README.md")
            if MOVED_SECTION in text.splitlines():
                return text
    except subprocess.CalledProcessError as err:
        pytest.skip(f"no git history to read the old README from: {err.stderr.strip()}")
    pytest.skip("no README in git's history has the section the manual took over")


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = list(nav_pages(config["nav"]))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert sorted(pages - set(in_nav)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(in_nav) - pages) == [], "nav entries without a page"
    assert len(in_nav) == len(set(in_nav)), "a page is twice in the nav"


def test_every_section_of_the_old_readme_is_a_heading_of_the_manual() -> None:
    old = headings(readme_before_the_manual(), levels="##|###")
    assert len(old) > 10, old  # the parser found the old README's sections
    manual = {heading for page in DOCS.rglob("*.md") for heading in headings(page.read_text())}
    assert [heading for heading in old if heading not in manual] == []


def test_the_readme_links_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local), local
    assert [link for link in local if not (ROOT / link).exists()] == []


def test_the_architecture_page_names_every_part_of_the_package() -> None:
    page = (DOCS / "architecture.md").read_text()
    package = ROOT / "poller"
    parts = [f"{path.parent.name}/" for path in package.glob("*/__init__.py")]
    parts += [path.name for path in package.glob("*.py")]
    assert sorted(part for part in parts if part not in page) == []


def test_the_quick_start_keeps_the_demo_up_the_way_the_demo_says() -> None:
    from poller.testing.demo import CLI_KEEP, MAKE_KEEP

    # The demo prints how to keep its stack up (under Flower's URL); the quick starts say the same
    for page in (ROOT / "README.md", DOCS / "getting-started.md"):
        text = page.read_text()
        assert MAKE_KEEP in text, page
    assert CLI_KEEP in (DOCS / "getting-started.md").read_text()
