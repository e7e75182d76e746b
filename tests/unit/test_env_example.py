""".env.example documents every setting, with its built-in default."""

from pathlib import Path

from dotenv import dotenv_values

from mitmcache import config

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting_with_its_default():
    values = dotenv_values(EXAMPLE)
    assert {s.env: s.default for s in config.SETTINGS} == {s.env: values.get(s.env) for s in config.SETTINGS}


def test_env_example_values_are_all_valid():
    values = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    config.parse_settings(config.defaults(values, cwd=EXAMPLE.parent / "nonexistent"))


def test_readme_or_the_docs_document_every_setting():
    """The README keeps the common settings; a topic's own settings may live in its docs/ page."""
    root = EXAMPLE.parent
    text = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    assert [s.env for s in config.SETTINGS if f"`{s.env}`" not in text] == []
