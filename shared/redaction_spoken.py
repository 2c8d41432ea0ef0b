"""Digits said in words, as speech-to-text writes them: English, Spanish and German.

"four one one one", "forty-one eleven", "double four", "cuatro once", "treinta y uno",
"vier eins eins", "einundvierzig", with fillers ("uh", "äh") and punctuation between them. A run of
such words (and digits) becomes a run of digit groups for the card detector; each word is one
group, so a card number is looked for at word boundaries only.
"""

from __future__ import annotations

import re

from shared.redaction_patterns import WordStart, first_char_scan, trie, word_branches

_EN_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_EN_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
             "seventeen", "eighteen", "nineteen"]
_EN_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fourty": 4, "fifty": 5, "sixty": 6,
            "seventy": 7, "eighty": 8, "ninety": 9}
_ES_UNITS = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"]
_ES_TEENS = ["diez", "once", "doce", "trece", "catorce", "quince", "dieciséis", "diecisiete",
             "dieciocho", "diecinueve"]
_ES_TWENTIES = ["veinte", "veintiuno", "veintidós", "veintitrés", "veinticuatro", "veinticinco",
                "veintiséis", "veintisiete", "veintiocho", "veintinueve"]
_ES_TENS = {"treinta": 3, "cuarenta": 4, "cincuenta": 5, "sesenta": 6, "setenta": 7,
            "ochenta": 8, "noventa": 9}
_DE_UNITS = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
_DE_TEENS = ["zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
             "achtzehn", "neunzehn"]
_DE_TENS = {"zwanzig": 2, "dreißig": 3, "dreissig": 3, "vierzig": 4, "fünfzig": 5, "sechzig": 6,
            "siebzig": 7, "achtzig": 8, "neunzig": 9}
# "ein" only inside compounds ("einundzwanzig"); alone it is an article.
_DE_COMPOUND_UNITS = ["", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]


def _vocabulary() -> dict[str, str]:
    words: dict[str, str] = {"oh": "0", "zwo": "2", "fuenf": "5", "zwoelf": "12",
                             "dieciseis": "16", "veintidos": "22", "veintitres": "23",
                             "veintiseis": "26"}
    for units, teens in ((_EN_UNITS, _EN_TEENS), (_ES_UNITS, _ES_TEENS), (_DE_UNITS, _DE_TEENS)):
        words.update({w: str(d) for d, w in enumerate(units)})
        words.update({w: str(10 + d) for d, w in enumerate(teens)})
    words.update({w: str(20 + d) for d, w in enumerate(_ES_TWENTIES)})
    for unit, digit in [*zip(_EN_UNITS, "0123456789", strict=True), ("oh", "0")]:
        words[f"double {unit}"] = digit * 2
        words[f"triple {unit}"] = digit * 3
    for tens, value in _EN_TENS.items():
        words[tens] = f"{value}0"
        for d, unit in enumerate(_EN_UNITS[1:], start=1):
            words[f"{tens} {unit}"] = f"{value}{d}"
    for tens, value in _ES_TENS.items():
        words[tens] = f"{value}0"
        for d, unit in enumerate(_ES_UNITS[1:], start=1):
            words[f"{tens} y {unit}"] = f"{value}{d}"
    for tens, value in _DE_TENS.items():
        words[tens] = f"{value}0"
        for d, unit in enumerate(_DE_COMPOUND_UNITS[1:], start=1):
            words[f"{unit}und{tens}"] = f"{value}{d}"
    return words


WORDS = _vocabulary()


_TRIE = trie(WORDS, space="[ -]")
# Between two spoken digits: punctuation, spaces, a filler word, or "and".
_GAP = r"[\s,.;:\-\u2013\u2014/]{1,6}+"
_JOIN = rf"{_GAP}(?:(?i:uh|um|uhm|hmm|er|äh|ähm|öh|eh|and|und|y){_GAP})?"
_TOKEN = rf"(?:(?<!\w)(?i:{_TRIE})\b|[0-9]++)"
# A run starts at a word (so text of plain digits costs nothing here); digits said before the
# first word ("4 one one …") are taken in by NUMERALS_BEFORE.
SPOKEN_RUN = WordStart(first_char_scan(word_branches(WORDS, space="[ -]", after=r"\b"), r"\w",
                                       name="word") + rf"(?:{_JOIN}{_TOKEN})*+")
NUMERALS_BEFORE = re.compile(rf"(?<![0-9])(?:[0-9]++{_JOIN})++\Z")
NUMERALS_REACH = 64
# A run split at its tokens: what joins them at even indexes, the tokens at odd ones.
SPOKEN_TOKEN = re.compile(rf"((?<!\w)(?i:{_TRIE})\b|[0-9]++)")


# Lower-case spellings, with a hyphen or a space inside compounds ("forty-one", "forty one").
_LOOKUP = {**WORDS, **{w.replace(" ", "-"): d for w, d in WORDS.items()}}


def digits_of(word: str) -> str:
    """The digits a number word stands for ("Forty-One" → "41")."""
    return _LOOKUP[word.lower()]

