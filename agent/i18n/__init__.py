"""French and English for everything a technician reads.

    t("status.broker", host=...)  ->  the message in the chosen language

The language comes from `--lang` (or `BATIGATE_LANG`), else from the POSIX locale variables in
their order of precedence (LC_ALL, then LC_MESSAGES, then LANG): `fr_FR.UTF-8` gives French,
anything else English. The catalogs are `en.py` and `fr.py`; tests/agent/test_i18n.py checks that
both hold the same keys with the same placeholders and that every key the code uses exists.
Machine output (`--json`, MQTT, the API's field names) is never translated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.i18n import en, fr

CATALOGS: dict[str, dict[str, str]] = {"en": en.MESSAGES, "fr": fr.MESSAGES}
LANGUAGES = tuple(CATALOGS)
_current: str | None = None


def detect(environ: Mapping[str, str] | None = None) -> str:
    """The language the environment asks for: BATIGATE_LANG, then the locale (POSIX order)."""
    env = os.environ if environ is None else environ
    for name in ("BATIGATE_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:  # the first variable that is set decides, even when it says "C"
            return parse(value)
    return "en"


def parse(value: str) -> str:
    """`fr_FR.UTF-8`, `fr`, `FR-be` -> fr; `C`, `POSIX`, `en_GB`, `de_DE` -> en."""
    code = value.strip().replace("-", "_").split("_")[0].split(".")[0].lower()
    return code if code in CATALOGS else "en"


def set_language(lang: str | None) -> str:
    """Use `lang` (None: detect it again from the environment); returns the language in force."""
    global _current  # noqa: PLW0603 - one process, one language, chosen once at start
    _current = parse(lang) if lang else detect()
    return _current


def language() -> str:
    return _current or set_language(None)


class Message(str):
    """A translated message that still knows its key: `--json` output asks it for the English
    text (`english()`), since machine output is never translated."""

    __slots__ = ("key", "values")
    key: str
    values: dict[str, object]

    def english(self) -> str:
        return t(self.key, "en", **self.values)


def t(key: str, lang: str | None = None, /, **values: object) -> str:
    """The message `key` in `lang` (default: the language in force), placeholders filled in.
    An unknown key is a bug that the catalog test catches; at run time it shows the key itself
    rather than failing in front of a technician."""
    catalog = CATALOGS[parse(lang) if lang else language()]
    text = catalog.get(key) or en.MESSAGES.get(key) or key
    message = Message(text.format(**values) if values else text)
    message.key, message.values = key, values
    return message


def english(message: str) -> str:
    """The English text of a message made by `t()` (any other string as it is)."""
    return message.english() if isinstance(message, Message) else message
