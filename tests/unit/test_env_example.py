""".env.example documents every setting, with its built-in default."""

from pathlib import Path

from dotenv import dotenv_values

from mitmcache import config
from mitmcache.writequeue.settings import parse_queue_settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting_with_its_default():
    values = dotenv_values(EXAMPLE)
    assert {s.env: s.default for s in config.SETTINGS} == {s.env: values.get(s.env) for s in config.SETTINGS}


def test_env_example_lists_every_write_queue_setting_with_its_default():
    values = dotenv_values(EXAMPLE)
    settings = config.WRITE_QUEUE_SETTINGS
    assert {s.env: s.default for s in settings} == {s.env: values.get(s.env) for s in settings}


def test_env_example_values_are_all_valid():
    values = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    raw = config.defaults(values, cwd=EXAMPLE.parent / "nonexistent")
    settings = config.parse_settings(raw)
    parse_queue_settings(raw, settings.upstream_timeout, EXAMPLE.parent)


def test_write_queue_doc_documents_every_write_queue_setting():
    doc = (EXAMPLE.parent / "docs" / "write-queue.md").read_text()
    assert [s.env for s in config.WRITE_QUEUE_SETTINGS if f"`{s.env}`" not in doc] == []


def test_the_settings_reference_documents_every_setting():
    reference = (EXAMPLE.parent / "docs" / "settings.md").read_text()
    settings = config.ALL_SETTINGS
    assert [s.option for s in settings if f"| `{s.option}` | `{s.env}` |" not in reference] == []
