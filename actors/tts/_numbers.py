"""Numbers in English words, and the pass that rewrites every number in a text.

Used by :func:`actors.tts.normalize.speakable`, whose docstring states the
rules (the year rule among them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["cardinal", "numbers_to_words", "ordinal", "year"]

_ONES: Final = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS: Final = (
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)
_SCALES: Final = (
    (10**18, "quintillion"),
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_IRREGULAR_ORDINALS: Final = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _under_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _under_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        words.append(_under_100(rest))
    return " ".join(words)


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s)


def cardinal(n: int) -> str:
    """``1234`` -> "one thousand two hundred thirty-four" (American, no "and")."""
    if n < 0:
        return f"minus {cardinal(-n)}"
    if n == 0:
        return "zero"
    if n >= 10**21:
        return _digits(str(n))
    words = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            words.append(f"{_under_1000(count)} {name}")
    if n:
        words.append(_under_1000(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """``21`` -> "twenty-first"."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def year(n: int) -> str:
    """``1999`` -> "nineteen ninety-nine", ``2005`` -> "two thousand five", ``1900`` -> "nineteen hundred"."""
    century, rest = divmod(n, 100)
    if 2000 <= n <= 2009 or 1000 <= n <= 1009:
        return cardinal(n)
    if rest == 0:
        return f"{cardinal(century)} hundred"
    if rest < 10:
        return f"{cardinal(century)} oh {_ONES[rest]}"
    return f"{cardinal(century)} {_under_100(rest)}"


def _plural(words: str) -> str:
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"


_SIMPLE_FRACTIONS: Final = {
    ("1", "2"): "one half",
    ("1", "3"): "one third",
    ("2", "3"): "two thirds",
    ("1", "4"): "one quarter",
    ("3", "4"): "three quarters",
}
# Marks the phonemizers read as pauses, from other scripts and typography.
# --- numbers in text ------------------------------------------------------

_INT = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
_NUM = rf"(?P<sign>(?<![\w.])-\s?)?(?P<int>{_INT})(?:\.(?P<frac>\d+))?"
_UNITS: Final = {
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
}
# Words after a number that make it a quantity, never a year.
_UNIT_WORDS: Final = frozenset(
    {w for pair in _UNITS.values() for form in pair for w in form.split()[:1]}
    | {
        "dollars",
        "euros",
        "pounds",
        "yen",
        "pence",
        "cents",
        "percent",
        "degrees",
        "meters",
        "metres",
        "miles",
        "feet",
        "inches",
        "yards",
        "grams",
        "liters",
        "litres",
        "bytes",
        "calories",
        "kcal",
        "steps",
        "words",
        "tokens",
        "characters",
        "pixels",
        "px",
        "times",
        "x",
        "m",
        "s",
        "g",
        "l",
    }
)
_CURRENCIES: Final = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_SCALE_WORDS: Final = {
    "k": "thousand",
    "K": "thousand",
    "thousand": "thousand",
    "m": "million",
    "M": "million",
    "mn": "million",
    "million": "million",
    "b": "billion",
    "B": "billion",
    "bn": "billion",
    "billion": "billion",
    "trillion": "trillion",
}
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_TIME = re.compile(
    r"(?<![\d:.,])(?P<h>[01]?\d|2[0-4]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?(?![\d:])"
    r"(?:\s?(?P<ap>[AaPp])\.?[Mm]\b\.?)?"
)
_CLOCK = re.compile(r"(?<![\d:.,])(?P<h>1[0-2]|0?\d)\s?(?P<ap>[AaPp])\.?[Mm]\b\.?")
_ISO_DATE = re.compile(
    r"(?<![\d-])(?P<y>\d{4})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])(?![\d-])"
)
_SCALES_RE = "|".join(sorted(_SCALE_WORDS, key=len, reverse=True))
_CURRENCY_BEFORE = re.compile(
    rf"(?P<neg>(?<![\w.])-\s?)?(?P<cur>[$£€¥₹])\s?(?P<sign>-)?(?P<int>{_INT})(?:\.(?P<frac>\d+))?"
    rf"(?:\s?(?P<scale>{_SCALES_RE})(?![\w]))?"
)
_CURRENCY_AFTER = re.compile(rf"(?<![\d.,]){_NUM}\s?(?P<cur>[$£€¥₹¢])")
_DEGREES = re.compile(rf"(?<![\d.,]){_NUM}\s?°\s?(?P<scale>[CFK](?![\w]))?")
_PERCENT = re.compile(rf"(?<![\d.,]){_NUM}\s?%")
_ORDINAL = re.compile(rf"(?<![\d.,])(?P<int>{_INT})(?:st|nd|rd|th)(?![^\W\d_])", re.I)
_DECADE = re.compile(r"(?<![\w.,])'?(?P<int>[1-9]\d*0)s\b")
_VERSION = re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?![.]?\d)")
_THOUSANDS = re.compile(rf"(?<![\d.,]){_NUM}k\b")
_UNIT = re.compile(
    rf"(?<![\d.,]){_NUM}\s?(?P<unit>{'|'.join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))})(?![\w/])"
)
_FRACTION = re.compile(r"(?<![\d/.,])([123])/([234])(?![\d/])")
_NUMBER_SIGN = re.compile(r"#\s?(?=\d)")
_ABOUT = re.compile(r"~\s?(?=[-$£€¥₹]?\d)")
_OPERATORS: Final = (
    (re.compile(r"(?<=\d)\s+[x\N{MULTIPLICATION SIGN}*]\s+(?=-?\d)"), " times "),
    (re.compile(r"(?<=\d)[\N{MULTIPLICATION SIGN}*]\s*(?=-?\d)"), " times "),
    (re.compile(r"(?<=\d)x(?=\d)"), " by "),
    (re.compile(r"(?<=\d)\s*÷\s*(?=-?\d)"), " divided by "),
    (re.compile(r"(?<=\d)\s*\^\s*(?=-?\d)"), " to the power of "),
    (re.compile(r"(?<=[\w\s])=(?=[\w\s-])"), " equals "),
    (re.compile(r"(?<=\d)\s*<\s*(?=-?\d)"), " is less than "),
    (re.compile(r"(?<=\d)\s*>\s*(?=-?\d)"), " is greater than "),
    (re.compile(r"(?<=\d)\s+-\s+(?=\d)"), " minus "),
    (re.compile(r"(?<=\d)\s*[-\N{EN DASH}]\s*(?=\d)"), " to "),
    (re.compile(r"(?<=\d)\s*/\s*(?=\d)"), " slash "),
    (re.compile(r"(?<=\d)\s*:\s*(?=\d)"), " to "),
)
_NUMBER = re.compile(rf"(?<!\d){_NUM}")
_LEADING_DECIMAL = re.compile(r"(?<![\w.])\.(\d+)")
_NEXT_WORD = re.compile(r"\s*([^\W\d_]+|[%°])")


def _read(int_s: str, frac: str | None = None, sign: str | None = None) -> str:
    digits = int_s.replace(",", "")
    if len(digits) > 1 and digits[0] == "0" and "," not in int_s:
        words = _digits(digits)
    else:
        words = cardinal(int(digits))
    if frac:
        words += f" point {_digits(frac)}"
    return f"minus {words}" if sign else words


def _number_words(m: re.Match[str]) -> str:
    return _read(m.group("int"), m.group("frac"), m.group("sign"))


def _is_one(m: re.Match[str]) -> bool:
    return m.group("int") == "1" and not m.group("frac")


def _time(m: re.Match[str]) -> str:
    words = [cardinal(int(m.group("h")))]
    minutes = int(m.group("m"))
    ap = m.group("ap")
    if minutes == 0:
        if not ap and not m.group("s"):
            words.append("o'clock")
    else:
        words.append(f"oh {_ONES[minutes]}" if minutes < 10 else _under_100(minutes))
    if m.group("s"):
        seconds = int(m.group("s"))
        words.append(f"oh {_ONES[seconds]}" if seconds < 10 else _under_100(seconds))
    if ap:
        words.append(f"{ap.upper()}M")
    return f" {' '.join(w for w in words if w)}{_kept_stop(m)} "


def _clock(m: re.Match[str]) -> str:
    return f" {cardinal(int(m.group('h')))} {m.group('ap').upper()}M{_kept_stop(m)} "


def _kept_stop(m: re.Match[str]) -> str:
    """ "p.m." swallowed a full stop: give it back when it ended the sentence."""
    if not m.group(0).endswith("."):
        return ""
    after = m.string[m.end() :]
    return "." if not after.strip() or re.match(r"\s+[A-Z]", after) else ""


def _iso_date(m: re.Match[str]) -> str:
    month = _MONTHS[int(m.group("mo")) - 1]
    y = int(m.group("y"))
    return (
        f" {month} {ordinal(int(m.group('d')))}, {year(y) if 1100 <= y <= 2099 else cardinal(y)} "
    )


def _currency(m: re.Match[str]) -> str:
    one, many, minor_one, minor_many = _CURRENCIES[m.group("cur")]
    negative = "minus " if m.group("neg") or m.group("sign") else ""
    int_s, frac, scale = m.group("int"), m.group("frac"), m.group("scale")
    amount = int(int_s.replace(",", ""))
    if scale:
        return f" {negative}{_read(int_s, frac)} {_SCALE_WORDS[scale]} {many} "
    if not frac or (int(frac) == 0 and len(frac) <= 2):
        return f" {negative}{cardinal(amount)} {one if amount == 1 else many} "
    if len(frac) <= 2 and minor_one:
        cents = int(frac.ljust(2, "0"))
        minor = f"{cardinal(cents)}"
        if amount == 0:
            return f" {negative}{minor} {minor_one if cents == 1 else minor_many} "
        return f" {negative}{cardinal(amount)} {one if amount == 1 else many} {minor} "
    return f" {negative}{_read(int_s, frac)} {many} "


def _currency_after(m: re.Match[str]) -> str:
    if m.group("cur") == "¢":
        return f" {_number_words(m)} {'cent' if _is_one(m) else 'cents'} "
    one, many, *_ = _CURRENCIES[m.group("cur")]
    return f" {_number_words(m)} {one if _is_one(m) else many} "


def _degrees(m: re.Match[str]) -> str:
    unit = {"C": " Celsius", "F": " Fahrenheit", "K": " Kelvin", None: ""}[m.group("scale")]
    return f" {_number_words(m)} {'degree' if _is_one(m) else 'degrees'}{unit} "


def _decade(m: re.Match[str]) -> str:
    n = int(m.group("int"))
    words = year(n) if 1100 <= n <= 2099 else cardinal(n)
    if words.startswith("one ") and " " not in words[4:]:  # 100s: "hundreds", not "one hundreds"
        words = words[4:]
    return f" {_plural(words)} "


def _version(m: re.Match[str]) -> str:
    return f" {' dot '.join(_read(part) for part in m.group(0).split('.'))} "


def _unit(m: re.Match[str]) -> str:
    one, many = _UNITS[m.group("unit")]
    return f" {_number_words(m)} {one if _is_one(m) else many} "


def _generic(m: re.Match[str]) -> str:
    int_s, frac, sign = m.group("int"), m.group("frac"), m.group("sign")
    if not frac and not sign and len(int_s) == 4 and 1100 <= int(int_s) <= 2099:
        before = m.string[: m.start()].rstrip()
        nxt = _NEXT_WORD.match(m.string, m.end())
        glued = m.end() < len(m.string) and m.string[m.end()].isalpha()
        quantity = nxt is not None and (nxt.group(1) in "%°" or nxt.group(1).lower() in _UNIT_WORDS)
        if not glued and not quantity and not before.endswith(("number", "$", "£", "€", "¥", "₹")):
            return f" {year(int(int_s))} "
    return f" {_read(int_s, frac, sign)} "


def numbers_to_words(text: str) -> str:
    """Every number in ``text`` spoken in words; no digit is left."""
    steps: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
        (_NUMBER_SIGN, "number "),
        (_ABOUT, "about "),
        (_ISO_DATE, _iso_date),
        (_TIME, _time),
        (_CLOCK, _clock),
        (_CURRENCY_BEFORE, _currency),
        (_CURRENCY_AFTER, _currency_after),
        (_DEGREES, _degrees),
        (_PERCENT, lambda m: f" {_number_words(m)} percent "),
        (_ORDINAL, lambda m: f" {ordinal(int(m.group('int').replace(',', '')))} "),
        (_DECADE, _decade),
        (_VERSION, _version),
        (_THOUSANDS, lambda m: f" {_number_words(m)} thousand "),
        (_UNIT, _unit),
        (_FRACTION, lambda m: f" {_SIMPLE_FRACTIONS.get((m[1], m[2]), f'{m[1]} slash {m[2]}')} "),
        (_LEADING_DECIMAL, lambda m: f" point {_digits(m.group(1))} "),
    )
    for pattern, replacement in steps:
        text = pattern.sub(replacement, text)
    for pattern, words in _OPERATORS:
        text = pattern.sub(words, text)
    text = _NUMBER.sub(_generic, text)
    return re.sub(r"\d", lambda m: f" {_ONES[int(m.group(0))]} ", text)  # nothing should be left
