"""Text that people type into the product: the one definition of a control character."""

import unicodedata

# Control characters (NUL, CR, LF among them), Unicode's own line and paragraph separators,
# and lone surrogates, which no database can store. A line break inside a one-line text
# becomes a header injection in a mail or a broken line in an export.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
# What a text of several lines (a description, a mail's body) may hold of them.
LINE_BREAKS = frozenset("\r\n\t\u2028\u2029")


def has_control_characters(text: str, *, multiline: bool = False) -> bool:
    """Tell whether ``text`` holds a control character; ``multiline`` allows line breaks."""
    allowed = LINE_BREAKS if multiline else frozenset()
    return any(unicodedata.category(ch) in CONTROL_CATEGORIES and ch not in allowed for ch in text)


def has_lone_surrogate(value) -> bool:
    """Tell whether ``value`` (text, or JSON's lists and objects of it) holds a lone surrogate.

    JSON's ``\\ud800`` escapes decode to lone surrogates, which no database can store.
    """
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False
