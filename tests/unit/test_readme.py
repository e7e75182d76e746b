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


def test_nothing_outside_tests_cites_documents_that_are_not_in_the_repository():
    """A reader cannot follow "the addon guide §5" or "the seed's header"."""
    cited = []
    for path in [README, *ROOT.glob("docs/*.md"), *ROOT.glob("addons/**/*.py"), *ROOT.glob("scripts/*")]:
        text = path.read_text(errors="replace")
        cited += [
            f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"addon guide|guide §|\bseeds?\b", text)
        ]
    assert cited == []
