"""The README stays a user's guide: short enough to read, its details in docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 320


def test_the_readme_stays_under_320_lines():
    lines = README.read_text().splitlines()
    assert len(lines) < MAX_LINES, f"README.md has {len(lines)} lines: move details to docs/"


def test_every_file_the_readme_links_to_exists():
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    assert targets, "the README links to docs/"
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_every_document_named_outside_tests_is_in_the_repository():
    """A reader of a clone must be able to open every Markdown document the README, the docs, the
    code and the scripts name (by path from the root or from the naming file's folder)."""
    missing = []
    for path in [README, *ROOT.glob("docs/*.md"), *ROOT.glob("addons/**/*.py"), *ROOT.glob("scripts/*")]:
        for name in re.findall(r"[\w./-]*\w\.md\b", path.read_text(errors="replace")):
            if not ((ROOT / name).exists() or (path.parent / name).exists()):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert missing == []
