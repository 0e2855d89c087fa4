"""Searching outputs for the personal data a run sent in: caller phone numbers and dispatchers' free text.

A phone number counts as found in whatever format it appears: the scanner takes every phone-like
run of text (digits with spaces, dots, dashes, brackets or a plus between them), keeps its digits,
and looks for any input number's digits in them (``+1 (314) 555-0142`` matches an input sent as
``314.555.0142``, and the reverse). Free text counts as found when the unique token each one
carries (``crisis.chaos.stream.FREE_TEXT_TOKEN``) or one of the names and streets only free text
uses appears.

A hit is reported by where it is (the output's name and the offset), never by what it is: the
report of a leak must not leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from crisis.chaos.stream import FREE_TEXT_FRAGMENTS, FREE_TEXT_TOKEN

# Digits, possibly separated the ways phone numbers are written; at most 15 digits (E.164) are kept.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d ().\-]{5,22}\d")
_NOT_DIGIT = re.compile(r"\D")


@dataclass(frozen=True)
class Hit:
    """One piece of personal data found: in which output, where, and what kind (never the value)."""

    source: str
    offset: int
    kind: str  # "phone" or "free_text"


class PersonalDataScanner:
    """Finds the given phone numbers (any format) and free texts in text."""

    def __init__(self, phones: Iterable[str], free_texts: Iterable[str],
                 fragments: Iterable[str] = FREE_TEXT_FRAGMENTS) -> None:
        self.digits = {_NOT_DIGIT.sub("", phone) for phone in phones}
        # The national number too: "+1 314 555 0142" may come back as "3145550142".
        self.digits |= {number[1:] for number in self.digits if len(number) == 11 and number.startswith("1")}
        self.digits = {number for number in self.digits if len(number) >= 7}
        self.lengths = sorted({len(number) for number in self.digits})
        self.tokens = {match.group(0) for text in free_texts for match in FREE_TEXT_TOKEN.finditer(text)}
        self.fragments = tuple(fragment for fragment in fragments if fragment)

    def scan(self, source: str, text: str) -> list[Hit]:
        """Every hit in ``text``, labelled with ``source``."""
        hits: list[Hit] = []
        for match in _PHONE_LIKE.finditer(text):
            digits = _NOT_DIGIT.sub("", match.group(0))
            if len(digits) > 15:
                continue  # longer than any phone number: an id, an offset, a timestamp
            if any(digits[i:i + n] in self.digits for n in self.lengths for i in range(len(digits) - n + 1)):
                hits.append(Hit(source, match.start(), "phone"))
        for match in FREE_TEXT_TOKEN.finditer(text):
            if match.group(0) in self.tokens:
                hits.append(Hit(source, match.start(), "free_text"))
        for fragment in self.fragments:
            start = text.find(fragment)
            if start >= 0:
                hits.append(Hit(source, start, "free_text"))
        return hits

    def scan_bytes(self, source: str, data: bytes) -> list[Hit]:
        return self.scan(source, data.decode("utf-8", "replace"))
