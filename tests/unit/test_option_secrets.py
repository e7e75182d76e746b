"""option_secrets.py: what options show of a setting that may hold a secret, and how the value with
its secret is found again."""

from mitmcache.option_secrets import OptionSecrets
from mitmcache.settings_table import BY_OPTION

STORE = BY_OPTION["cache_store"]
URL = "redis://user:s3cret@127.0.0.1:6379/0"
SHOWN = "redis://user:[redacted]@127.0.0.1:6379/0"


class Options:
    """The part of mitmproxy's option manager the secrets use: attributes and ``update``."""

    def __init__(self, **values: str) -> None:
        self.__dict__.update(values)

    def update(self, **values: str) -> None:
        self.__dict__.update(values)


def test_a_value_with_a_password_is_shown_redacted():
    assert OptionSecrets().conceal(STORE, URL) == SHOWN


def test_the_shown_form_is_revealed_as_the_value_it_stands_for():
    secrets = OptionSecrets()
    secrets.conceal(STORE, URL)
    assert secrets.reveal({"cache_store": SHOWN, "cache_ttl": "60"}) == {
        "cache_store": URL,
        "cache_ttl": "60",
    }


def test_a_value_without_a_secret_is_shown_and_revealed_as_it_is():
    secrets = OptionSecrets()
    assert secrets.conceal(STORE, "memory") == "memory"
    assert secrets.reveal({"cache_store": "memory"}) == {"cache_store": "memory"}


def test_an_option_set_with_a_secret_keeps_only_its_shown_form():
    secrets, options = OptionSecrets(), Options(cache_store=URL)
    secrets.conceal_options(options)
    assert options.cache_store == SHOWN and secrets.reveal({"cache_store": SHOWN}) == {"cache_store": URL}
