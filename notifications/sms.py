r"""SMS length rules: GSM-7 vs UCS-2, segment counting and fitting a text into N segments.

An SMS body is sent either in the GSM 03.38 7-bit default alphabet (GSM-7) or, as soon as one
character is outside it, in UCS-2 (UTF-16 code units). One segment holds 160 GSM-7 septets or
70 UCS-2 code units; a concatenated (multi-part) message loses room to the user data header and
holds 153 septets or 67 code units per segment. Characters of the GSM-7 extension table
(``€ { } [ ] ~ ^ \ |`` and form feed) take two septets (escape + character), and an escape pair
or a UTF-16 surrogate pair is never split across two segments.

:func:`fit_sms` makes a rendered reminder fit: it transliterates typographic characters (smart
quotes, dashes, ellipsis, odd spaces, accented letters) so that the text stays GSM-7 where that is
possible without losing meaning, then shortens the text at a word boundary, keeping any URL whole.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

#: The GSM 03.38 default alphabet (one septet each). The escape code 0x1B is not a character.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

#: The GSM 03.38 extension table (two septets each: escape + character).
GSM7_EXTENDED: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67

#: What replaces text cut off by :func:`fit_sms` (GSM-7, unlike "…").
ELLIPSIS = "..."

Encoding = Literal["GSM-7", "UCS-2"]

_TYPOGRAPHIC: dict[str, str] = {
    **dict.fromkeys("‘’‚‛′‹›`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    **dict.fromkeys("\t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008", " "),
    **dict.fromkeys("\u2009\u200a\u202f\u205f\u3000", " "),
    **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", ""),
    "…": "...",
    "•": "-",
    "·": "-",
    "×": "x",
    "©": "(c)",
    "®": "(R)",
    "⁄": "/",
}

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
#: Characters not worth keeping right before an ellipsis.
_TRAILING = " \t\n,;:.-(["


@dataclass(frozen=True)
class SmsInfo:
    """How a text would be sent as SMS.

    Attributes:
        encoding: ``"GSM-7"`` or ``"UCS-2"``.
        units: GSM-7 septets (extension characters count 2) or UTF-16 code units.
        segments: Number of SMS segments (0 for an empty text).
        per_segment: Capacity of each segment for this text (160/153 or 70/67).
    """

    encoding: Encoding
    units: int
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM-7 default or extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text)


def _costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if char in GSM7_EXTENDED else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def sms_segments(text: str) -> SmsInfo:
    """Count the encoding, units and segments of ``text`` sent as one SMS.

    Args:
        text: The message body.

    Returns:
        The encoding, the units (septets or UTF-16 code units), the number of segments and the
        capacity per segment.
    """
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_MULTI)
    costs = _costs(text, encoding)
    units = sum(costs)
    if units <= single:
        return SmsInfo(encoding, units, 1 if units else 0, single)
    # Concatenated: fill segments in order; a two-unit character never straddles two segments.
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return SmsInfo(encoding, units, segments, multi)


def _transliterate_char(char: str) -> str | None:
    if char in GSM7_BASIC or char in GSM7_EXTENDED:
        return char
    if char in _TYPOGRAPHIC:
        return _TYPOGRAPHIC[char]
    # Accented letters and compatibility forms: keep the base characters, drop combining marks,
    # but only when what remains is plain GSM-7 (so "ő" → "o", "ﬁ" → "fi", but "中" stays).
    decomposed = unicodedata.normalize("NFKD", char)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base and all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in base):
        return base
    return None


def to_gsm7(text: str) -> str | None:
    """``text`` transliterated to GSM-7, or None when that is not possible without loss.

    Smart quotes become straight quotes, dashes a hyphen, "…" three dots, non-breaking and other
    spaces a plain space, and letters missing from GSM-7 their unaccented form ("á" → "a", while
    "é", "ü", "ñ" are GSM-7 and stay). Emoji and other scripts cannot be transliterated.
    """
    parts: list[str] = []
    for char in text:
        replacement = _transliterate_char(char)
        if replacement is None:
            return None
        parts.append(replacement)
    return "".join(parts)


def _fits(text: str, limit_segments: int) -> bool:
    return sms_segments(text).segments <= limit_segments


def _shorten(head: str, tail: str, limit_segments: int) -> str | None:
    """The longest ``head`` prefix (cut at a word if possible) + "..." + tail that fits."""
    joiner = " " if tail else ""

    def candidate(prefix: str) -> str:
        prefix = prefix.rstrip(_TRAILING)
        return f"{prefix}{ELLIPSIS}{joiner}{tail}" if prefix else tail

    # Word boundaries first, longest prefix first.
    for index in range(len(head) - 1, 0, -1):
        if head[index].isspace() and not head[index - 1].isspace():
            text = candidate(head[:index])
            if text != tail and _fits(text, limit_segments):
                return text
    # A single long word: cut inside it.
    for index in range(len(head) - 1, 0, -1):
        text = candidate(head[:index])
        if text != tail and _fits(text, limit_segments):
            return text
    return None


def fit_sms(text: str, limit_segments: int = 1) -> str:
    """Make ``text`` fit into ``limit_segments`` SMS segments.

    Non-GSM-7 text is first transliterated to GSM-7 (see :func:`to_gsm7`) when that removes every
    non-GSM-7 character; otherwise it is kept as is and measured as UCS-2. A text that is still too
    long is cut at a word boundary and "..." is appended. A URL is never cut: the text before the
    first URL is shortened instead, and the URL (with anything after it) is kept whole. When even
    the URL alone does not fit, the URL is returned whole anyway (over the limit) rather than
    broken.

    Args:
        text: The rendered SMS body.
        limit_segments: The most segments the result may use (at least 1).

    Returns:
        The text to send.

    Raises:
        ValueError: ``limit_segments`` is less than 1.
    """
    if limit_segments < 1:
        raise ValueError(f"limit_segments must be at least 1, not {limit_segments}")
    if not is_gsm7(text):
        text = to_gsm7(text) or text
    if _fits(text, limit_segments):
        return text
    url = _URL.search(text)
    head, tail = (text[: url.start()], text[url.start() :]) if url else (text, "")
    shortened = _shorten(head, tail, limit_segments)
    if shortened is not None:
        return shortened
    if url is None:  # pragma: no cover - a one-character prefix always fits
        return text[:1]
    return tail if _fits(tail, limit_segments) else url.group()
