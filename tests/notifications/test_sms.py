from __future__ import annotations

import pytest

from notifications.sms import GSM7_BASIC, GSM7_EXTENDED, fit_sms, sms_segments, to_gsm7

URL = "https://duly.example.com/ack/Zq3xY8pLr2Vb9TtKc4WmHn7sDf0GjA1eUoIiPyRw5Q"


def test_alphabets() -> None:
    assert len(GSM7_BASIC) == 127  # 128 positions minus the escape code
    assert set("€{}[]~^\\|") <= GSM7_EXTENDED
    assert not GSM7_BASIC & GSM7_EXTENDED
    assert {"@", "£", "é", "Δ", "\n", "ß"} <= GSM7_BASIC


@pytest.mark.parametrize(
    ("length", "segments", "per_segment"),
    [(0, 0, 160), (1, 1, 160), (160, 1, 160), (161, 2, 153), (306, 2, 153), (307, 3, 153)],
)
def test_gsm7_boundaries(length: int, segments: int, per_segment: int) -> None:
    info = sms_segments("a" * length)
    assert (info.encoding, info.units, info.segments, info.per_segment) == (
        "GSM-7",
        length,
        segments,
        per_segment,
    )


@pytest.mark.parametrize("char", list("€{}[]~^\\|"))
def test_extended_characters_count_two(char: str) -> None:
    assert sms_segments(char * 80) == sms_segments("a" * 160)
    info = sms_segments(char * 80 + "a")
    assert (info.encoding, info.units, info.segments) == ("GSM-7", 161, 2)


def test_escape_pair_never_straddles_segments() -> None:
    # 306 septets would be 2 segments, but the € cannot be split after 152 septets.
    info = sms_segments("a" * 152 + "€" + "a" * 152)
    assert (info.units, info.segments) == (306, 3)


@pytest.mark.parametrize(
    ("text", "units", "segments", "per_segment"),
    [
        ("ą" * 70, 70, 1, 70),
        ("ą" * 71, 71, 2, 67),
        ("ą" * 134, 134, 2, 67),
        ("ą" * 135, 135, 3, 67),
        ("😀" * 35, 70, 1, 70),
        ("😀" * 35 + "a", 71, 2, 67),
        ("Done 😀", 7, 1, 70),
    ],
)
def test_ucs2_boundaries(text: str, units: int, segments: int, per_segment: int) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.units, info.segments, info.per_segment) == (
        "UCS-2",
        units,
        segments,
        per_segment,
    )


def test_surrogate_pair_never_straddles_segments() -> None:
    info = sms_segments("a" * 66 + "😀" + "a" * 66)
    assert (info.units, info.segments) == (134, 3)


def test_transliteration_to_gsm7() -> None:
    text = "“Café” – naïve… ‘résumé’\u00a0ok — Ação"
    fitted = fit_sms(text)
    assert fitted == "\"Café\" - naive... 'résumé' ok - Acao"
    assert sms_segments(fitted).encoding == "GSM-7"
    assert to_gsm7("Señor Müller") == "Señor Müller"  # already GSM-7
    assert to_gsm7("ﬁle ™") == "file TM"


def test_text_that_cannot_be_gsm7_is_kept_as_is() -> None:
    assert to_gsm7("Done 😀") is None
    assert to_gsm7("Łódź") is None  # Ł has no decomposition
    assert fit_sms("“Done” 😀") == "“Done” 😀"


def test_truncates_at_a_word_boundary() -> None:
    text = " ".join(f"word{i}" for i in range(60))
    fitted = fit_sms(text)
    info = sms_segments(fitted)
    assert (info.encoding, info.segments) == ("GSM-7", 1)
    assert fitted.endswith("...") and "…" not in fitted
    assert text.startswith(fitted[:-3]) and text[len(fitted) - 3] == " "
    assert len(fitted) > 150


def test_truncation_keeps_the_url_whole() -> None:
    text = "Duly: " + "a very long requirement title " * 8 + f"is due today. Ack: {URL}"
    fitted = fit_sms(text)
    assert sms_segments(fitted).segments == 1
    assert fitted.endswith(f"... {URL}")
    assert fitted.startswith("Duly: a very long")


def test_url_longer_than_the_limit_is_returned_whole() -> None:
    url = "https://duly.example.com/ack/" + "x" * 200
    assert fit_sms(f"Please acknowledge: {url}") == url


def test_more_segments_allowed() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    fitted = fit_sms(text, limit_segments=2)
    assert sms_segments(fitted).segments == 2 and len(fitted) > 250
    assert fit_sms("short", limit_segments=3) == "short"


def test_ucs2_truncation() -> None:
    text = "😀 " + "слово " * 30
    fitted = fit_sms(text)
    info = sms_segments(fitted)
    assert (info.encoding, info.segments) == ("UCS-2", 1)
    assert fitted.endswith("...")


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit_sms("x", limit_segments=0)
