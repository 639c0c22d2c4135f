"""Numbers within bounds, as a regular expression over their JSON text.

`range_pattern(minimum=0.5, maximum=0.9)` is a pattern that matches exactly the JSON numbers
(no exponent, no leading zeros) from 0.5 to 0.9: an engine renders it as a grammar so the model
can only write such a number, and the core uses it to finish a number the budget cut off.
Integers, numbers, inclusive and exclusive bounds, negative ranges and one-sided ranges are
built digit by digit, the way a range of integers is written as a regular expression (the
classic "1[0-9]|2[0-4]" construction), extended to the fraction digits.
"""

from __future__ import annotations

import math
from decimal import Decimal

#: Digits allowed beyond the bound's own for an unbounded range (JSON grammars cap
#: integral parts at 16 digits too).
MAX_DIGITS = 16

NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
INTEGER = r"-?(0|[1-9][0-9]*)"


def _alt(options: list[str]) -> str:
    """Alternatives as one group; "" among them makes the group optional."""
    options = list(dict.fromkeys(options))
    empty = "" in options
    options = [o for o in options if o]
    if not options:
        return ""
    body = options[0] if len(options) == 1 and not empty else "(" + "|".join(options) + ")"
    if empty:
        body = body + "?" if body.startswith("(") else f"({body})?"
    return body


def _digits(lo: int, hi: int) -> str:
    if lo > hi:
        return ""
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _any(n: int) -> str:
    return "[0-9]" * n if n <= 3 else f"[0-9]{{{n}}}"


# ------------------------------------------------------------------------------ integers


def _fixed_ge(s: str) -> str:
    """Digit strings of len(s) that are >= s."""
    if not s:
        return ""
    if set(s) == {"0"}:
        return _any(len(s))
    d = int(s[0])
    options = [s[0] + _fixed_ge(s[1:])]
    if d < 9:
        options.append(_digits(d + 1, 9) + _any(len(s) - 1))
    return _alt(options)


def _fixed_le(s: str) -> str:
    """Digit strings of len(s) that are <= s."""
    if not s:
        return ""
    if set(s) == {"9"}:
        return _any(len(s))
    d = int(s[0])
    options = [s[0] + _fixed_le(s[1:])]
    if d > 0:
        options.append(_digits(0, d - 1) + _any(len(s) - 1))
    return _alt(options)


def _same_length(a: str, b: str) -> str:
    """Digit strings from a to b, both of the same length."""
    k = 0
    while k < len(a) and a[k] == b[k]:
        k += 1
    if k == len(a):
        return a
    prefix, da, db, rest = a[:k], int(a[k]), int(b[k]), len(a) - k - 1
    options = [str(da) + _fixed_ge(a[k + 1:])]
    if db - da > 1:
        options.append(_digits(da + 1, db - 1) + _any(rest))
    options.append(str(db) + _fixed_le(b[k + 1:]))
    return prefix + _alt(options)


def _natural(lo: int, hi: int | None) -> str:
    """Integers lo..hi (lo >= 0; hi None = unbounded), written without leading zeros."""
    options = []
    length = len(str(lo))
    top = len(str(hi)) if hi is not None else length
    for n in range(length, top + 1):
        first = 10 ** (n - 1) if n > 1 else 0
        a = max(lo, first)
        b = min(hi, 10 ** n - 1) if hi is not None else 10 ** n - 1
        if a <= b:
            options.append(_same_length(str(a), str(b)))
    if hi is None and length < MAX_DIGITS:
        options.append(f"[1-9][0-9]{{{length},{MAX_DIGITS - 1}}}")
    return _alt(options)


def _integers(lo: int | None, hi: int | None) -> str:
    options = []
    if lo is None or lo < 0:  # negative part: -(magnitude) with magnitude max(1, -hi)..-lo
        low_mag = 1 if hi is None or hi >= 0 else -hi
        options.append("-" + _natural(low_mag, None if lo is None else -lo))
    if hi is None or hi >= 0:
        options.append(_natural(max(0, lo or 0), hi))
    return _alt(options)


# ------------------------------------------------------------------------------ fractions
# Fraction digits d (what follows the ".") compared as the value 0.d; `f` is a bound's fraction
# digits without trailing zeros. Each function returns the alternatives for d, "" meaning
# "d may end here".


def _frac_ge(f: str, strict: bool) -> list[str]:
    if not f:
        return ["[0-9]*[1-9][0-9]*"] if strict else ["[0-9]*"]
    d = int(f[0])
    options = [f[0] + _alt(_frac_ge(f[1:], strict))]
    if d < 9:
        options.append(_digits(d + 1, 9) + "[0-9]*")
    return options


def _frac_le(f: str, strict: bool) -> list[str]:
    if not f:
        return [] if strict else ["", "0+"]
    options = [""]
    if int(f[0]) > 0:
        options.append(_digits(0, int(f[0]) - 1) + "[0-9]*")
    sub = _frac_le(f[1:], strict)
    if sub:
        options.append(f[0] + _alt(sub))
    return options


def _frac_positive_le(b: str, strict: bool) -> list[str]:
    """0 < 0.d <(=) 0.b."""
    if not b:
        return []
    b0 = int(b[0])
    if b0 == 0:
        sub = _frac_positive_le(b[1:], strict)
        return ["0" + _alt(sub)] if sub else []
    options = ["0[0-9]*[1-9][0-9]*"]
    if b0 > 1:
        options.append(_digits(1, b0 - 1) + "[0-9]*")
    sub = _frac_le(b[1:], strict)
    if sub:
        options.append(b[0] + _alt(sub))
    return options


def _frac_between(a: str, a_strict: bool, b: str, b_strict: bool) -> list[str]:
    """0.a <(=) 0.d <(=) 0.b with 0.a < 0.b."""
    if not a:
        return _frac_positive_le(b, b_strict) if a_strict else _frac_le(b, b_strict)
    a0, b0 = int(a[0]), int(b[0]) if b else 0
    if a0 == b0:
        return [a[0] + _alt(_frac_between(a[1:], a_strict, b[1:], b_strict))]
    options = [a[0] + _alt(_frac_ge(a[1:], a_strict))]
    if b0 - a0 > 1:
        options.append(_digits(a0 + 1, b0 - 1) + "[0-9]*")
    sub = _frac_le(b[1:], b_strict)
    if sub:
        options.append(b[0] + _alt(sub))
    return options


def _with_fraction(integer: str, fraction: list[str], bare_ok: bool) -> str:
    """`integer` then "." and a fraction from `fraction` (non-empty digit strings)."""
    fraction = [o for o in fraction if o]
    options = []
    if fraction:
        options.append(r"\." + _alt(fraction))
    if bare_ok:
        options.append("")
    if not options:
        return ""
    return integer + _alt(options) if options != [""] else integer


def _split(x: Decimal) -> tuple[int, str]:
    whole = math.floor(x)
    frac = format(x - whole, "f").partition(".")[2].rstrip("0")
    return whole, frac


def _magnitudes(lo: Decimal, lo_strict: bool, hi: Decimal | None, hi_strict: bool) -> str:
    """Non-negative numbers in the range (lo >= 0), with an optional fraction."""
    li, lf = _split(lo)
    any_fraction = r"(\.[0-9]+)?"
    if hi is not None:
        hi_i, hf = _split(hi)
        if li == hi_i:
            bare = not lf and not lo_strict and not (hi_strict and not hf)
            if lf == hf and not lo_strict and not hi_strict:
                return _with_fraction(str(li), [lf + "0*"] if lf else ["0+"], not lf)
            return _with_fraction(str(li), _frac_between(lf, lo_strict, hf, hi_strict), bare)
    low = _frac_ge(lf, lo_strict) if lf or lo_strict else ["[0-9]+"]
    options = [_with_fraction(str(li), low, not lf and not lo_strict)]
    upper = None if hi is None else hi_i - 1
    if upper is None or upper >= li + 1:
        options.append(_natural(li + 1, upper) + any_fraction)
    if hi is not None:
        options.append(_with_fraction(str(hi_i), _frac_le(hf, hi_strict),
                                      bool(hf) or not hi_strict))
    return _alt([o for o in options if o])


def _numbers(lo: Decimal | None, lo_strict: bool, hi: Decimal | None, hi_strict: bool) -> str:
    options = []
    if lo is None or lo < 0:  # -m with m in [max(0, -hi), -lo]
        if hi is not None and hi < 0:
            m_lo, m_lo_strict = -hi, hi_strict
        else:
            m_lo, m_lo_strict = Decimal(0), True  # zero is written without the sign
        m_hi = None if lo is None else -lo
        options.append("-" + _magnitudes(m_lo, m_lo_strict, m_hi, lo_strict))
    if hi is None or hi >= 0:
        p_lo, p_strict = (lo, lo_strict) if lo is not None and lo >= 0 else (Decimal(0), False)
        options.append(_magnitudes(p_lo, p_strict, hi, hi_strict))
    return _alt([o for o in options if o and o != "-"])


def _decimal(value) -> Decimal:
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def bounds(schema: dict) -> tuple:
    """(lo, lo_strict, hi, hi_strict) of a schema's numeric keywords; None = unbounded."""
    lo = hi = None
    lo_strict = hi_strict = False
    if schema.get("minimum") is not None:
        lo = _decimal(schema["minimum"])
    if schema.get("exclusiveMinimum") is not None:
        x = _decimal(schema["exclusiveMinimum"])
        if lo is None or x >= lo:
            lo, lo_strict = x, True
    if schema.get("maximum") is not None:
        hi = _decimal(schema["maximum"])
    if schema.get("exclusiveMaximum") is not None:
        x = _decimal(schema["exclusiveMaximum"])
        if hi is None or x <= hi:
            hi, hi_strict = x, True
    return lo, lo_strict, hi, hi_strict


def has_bounds(schema: dict) -> bool:
    return any(schema.get(k) is not None for k in
               ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))


class EmptyRange(ValueError):
    """No number satisfies the bounds."""


def range_pattern(schema: dict, integer: bool) -> str:
    """The pattern of the JSON numbers (integers when `integer`) a schema's bounds allow."""
    lo, lo_strict, hi, hi_strict = bounds(schema)
    if integer:
        ilo = None if lo is None else (math.floor(lo) + 1 if lo_strict and lo == math.floor(lo)
                                       else math.ceil(lo))
        ihi = None if hi is None else (math.ceil(hi) - 1 if hi_strict and hi == math.ceil(hi)
                                       else math.floor(hi))
        if ilo is not None and ihi is not None and ilo > ihi:
            raise EmptyRange(f"no integer is within {lo} and {hi}")
        return _integers(ilo, ihi)
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_strict or hi_strict))):
        raise EmptyRange(f"no number is within {lo} and {hi}")
    return _numbers(lo, lo_strict, hi, hi_strict)
