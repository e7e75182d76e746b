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


def test_the_settings_reference_documents_every_setting():
    reference = (EXAMPLE.parent / "docs" / "settings.md").read_text()
    assert [s.option for s in config.SETTINGS if f"| `{s.option}` | `{s.env}` |" not in reference] == []
