"""The texts of dataset rows, by kind: dates, amounts, times, phone numbers ... as people write
them on forms, cheques, invoices and receipts, in several common formats each.

``texts(kind, u)`` turns each row of uniform numbers ``u`` ``(N, TEXT_SLOTS)`` in [0, 1) into one
text, so a row's text is fixed by its uniforms alone (an export hashes them from its seed and the
row's index). Every text holds only characters numgen writes (:data:`numgen.glyphs.CHARACTERS`).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable

import numpy as np

TEXT_SLOTS = 32  # uniform numbers a text may use: the longest format's digits and choices


class Draws:
    """One row's uniform numbers, taken in turn."""

    def __init__(self, u: np.ndarray) -> None:
        self.u, self.i = u, 0

    def next(self) -> float:
        self.i += 1
        return float(self.u[self.i - 1])

    def below(self, n: int) -> int:
        """A whole number in [0, n)."""
        return min(int(self.next() * n), n - 1)

    def pick(self, options):
        return options[self.below(len(options))]

    def digits(self, n: int) -> str:
        return "".join(str(self.below(10)) for _ in range(n))

    def sign(self, minus: float, plus: float) -> str:
        x = self.next()
        return "-" if x < minus else "+" if x < minus + plus else ""


def date(d: Draws) -> str:
    """A calendar date of 1950-2049 in one of the common layouts."""
    year, month = 1950 + d.below(100), 1 + d.below(12)
    day = 1 + d.below(calendar.monthrange(year, month)[1])
    layout = d.pick(("{D}.{M}.{Y}", "{D}/{M}/{Y}", "{D}/{M}/{y}", "{Y}-{M}-{D}", "{D}-{M}-{Y}",
                     "{M}/{D}/{Y}", "{d}.{m}.{Y}", "{D}.{M}.{y}"))  # fmt: skip
    return layout.format(D=f"{day:02d}", M=f"{month:02d}", Y=f"{year}", y=f"{year % 100:02d}",
                         d=day, m=month)  # fmt: skip


def time_of_day(d: Draws) -> str:
    """A time: HH:MM, H:MM, HH:MM:SS or HH.MM."""
    hour, minute, second = d.below(24), d.below(60), d.below(60)
    layout = d.pick(
        ("{H:02d}:{M:02d}", "{H}:{M:02d}", "{H:02d}:{M:02d}:{S:02d}", "{H:02d}.{M:02d}")
    )
    return layout.format(H=hour, M=minute, S=second)


def whole(d: Draws, most: int) -> str:
    """A whole number of 1 to ``most`` digits, sizes spread evenly, no leading zero."""
    n = 1 + d.below(most)
    return str(d.below(9) + 1) + d.digits(n - 1) if n > 1 else str(d.below(10))


def grouped(number: str, mark: str) -> str:
    """``number`` with ``mark`` between groups of three digits from the right."""
    head = len(number) % 3 or 3
    return mark.join([number[:head], *(number[i : i + 3] for i in range(head, len(number), 3))])


def decimal(d: Draws) -> str:
    """A decimal number: an optional sign, 1-4 whole digits, a point or comma, 1-3 decimals."""
    sign = d.sign(0.2, 0.05)
    return sign + whole(d, 4) + d.pick(".,") + d.digits(1 + d.below(3))


def amount(d: Draws) -> str:
    """A sum of money: grouped in thousands (by a space, point or comma) or not, two decimals
    after a comma or point (or none, or ",-"), sometimes signed."""
    sign = d.sign(0.12, 0.05)
    units = whole(d, 7)
    group, point = d.pick(((" ", ","), (" ", "."), (".", ","), (",", "."), ("", ","), ("", ".")))
    cents = d.pick((point + d.digits(2), point + d.digits(2), point + "00", ",-", ""))
    return sign + grouped(units, group) + cents


def phone(d: Draws) -> str:
    """A phone number in one of several national and international layouts (# a digit)."""
    layout = d.pick(("+# (###) ###-##-##", "# (###) ###-##-##", "(###) ###-####", "###-###-####",
                     "+## ## #### ####", "+## ### #######", "0### ######", "+# ### ### ####",
                     "### ## ##", "+##-##-###-####"))  # fmt: skip
    digits = iter(d.digits(layout.count("#")))
    return "".join(next(digits) if c == "#" else c for c in layout)


KINDS: dict[str, Callable[[Draws], str]] = {
    "decimal": decimal, "amount": amount, "date": date, "time": time_of_day, "phone": phone,
}  # fmt: skip
EXAMPLES = {"integer": "2026", "decimal": "-3,14", "amount": "1 234,56", "date": "02.12.2026",
            "time": "12:30", "phone": "+7 (812) 555-01-23"}  # fmt: skip


def texts(kind: str, u: np.ndarray) -> list[str]:
    """One text of ``kind`` (a key of :data:`KINDS`) per row of ``u`` ``(N, TEXT_SLOTS)``."""
    make = KINDS[kind]
    return [make(Draws(row)) for row in u]
