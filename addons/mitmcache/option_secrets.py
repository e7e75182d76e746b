"""Options never show a secret: a setting whose value may hold one (a Redis URL's password) is
shown redacted wherever mitmproxy shows options (mitmweb's editor, ``--options``), and the value
with its secret is remembered here, so that the settings parsed from the shown form still carry it.
"""

from typing import Any

from .settings_table import SETTINGS, Setting


class OptionSecrets:
    def __init__(self) -> None:
        self._secrets: dict[tuple[str, str], str] = {}  # (option, value shown) -> value with its secret

    def conceal(self, setting: Setting, value: str) -> str:
        """The form of ``value`` that options show, remembering the secret it stands for."""
        shown = setting.shown(value)
        if shown != value:
            self._secrets[(setting.option, shown)] = value
        return shown

    def reveal(self, values: dict[str, str]) -> dict[str, str]:
        """Option values as shown, with the secrets they stand for put back."""
        return {option: self._secrets.get((option, value), value) for option, value in values.items()}

    def conceal_options(self, options: Any) -> None:
        """An option set to a value with a secret (``--set``, mitmweb) keeps only its shown form."""
        for setting in SETTINGS:
            value = getattr(options, setting.option, None)
            if value is not None and (shown := self.conceal(setting, value)) != value:
                options.update(**{setting.option: shown})
