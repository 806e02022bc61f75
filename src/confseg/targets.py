"""Label strategies: turn a confidence map into a training ``(target, weight)`` pair.

A confidence map ``c`` holds values in [0, 1] (0 = not marked). Every strategy is a small
frozen dataclass, parsed from a string and recorded in each run's config:

============== ======================================= ===============================
strategy       target                                  weight
============== ======================================= ===============================
threshold:t    1 where c > 0 and c >= t, else 0        1
soft           c                                       1
ignore:lo-hi   1 where c >= hi; 0 where c < lo or c==0 0 for marked pixels in [lo, hi)
weighted       1 where c > 0                           c where marked, 1 elsewhere
rater[:NAME]   one rater's mask (random each call,     1
               or the named rater)
============== ======================================= ===============================

Every strategy has one :meth:`Strategy.apply` signature that receives everything a strategy
may need: the confidence, the item's rater maps with their names, and a random generator
seeded per (seed, epoch, sample). A new multi-rater strategy (majority vote, a soft mean of
raters, STAPLE) is one new class; the data pipeline does not change.

``threshold:0`` is the conventional label (every marked pixel). Levels are a fraction in
[0, 1] (``0.6``; ``1`` is 100 %), a whole percent 2..100 (``60``) or a percent with a sign
(``60%``, ``1.5%``); ``1.5`` is refused as ambiguous. Comparisons allow 1e-6 of slack so a
level stored as 60 % counts as ``>= 0.6`` after float32 conversion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from typing_extensions import override

from confseg.errors import StrategyError

EPS = 1e-6

__all__ = [
    "IgnoreBand",
    "RaterSample",
    "Soft",
    "Strategy",
    "Threshold",
    "Weighted",
    "parse_strategy",
]


def _check_unit(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0 or np.isnan(value):
        raise StrategyError(f"{what}={value!r} is outside [0, 1]; give a fraction like 0.6 "
                            "or a percent like 60")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """Base class: ``apply(conf, ...) -> (target, weight)``, float32 arrays shaped like ``conf``.

    Attributes:
        needs_raters: The strategy reads rater maps; a dataset without ``raters/`` is refused
            where the training data is assembled.
    """

    needs_raters: ClassVar[bool] = False

    @property
    def spec(self) -> str:
        """The strategy string that parses back to this strategy."""
        raise NotImplementedError

    @property
    def slug(self) -> str:
        """A folder-safe name (``threshold-0.6``, ``ignore-0.2-0.6``, ``rater-r1``)."""
        return re.sub(r"[^A-Za-z0-9._-]", "-", self.spec.replace(":", "-"))

    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Map confidence to ``(target, weight)``.

        Args:
            conf: Confidence in [0, 1], any shape (typically ``(K, H, W)``).
            raters: ``(R, *conf.shape)`` maps in [0, 1] of the raters who annotated this item
                (absent raters are left out), or None.
            rater_names: The names of ``raters``, in order.
            rng: Random generator seeded per (seed, epoch, sample).
        """
        raise NotImplementedError

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True, kw_only=True)
class Threshold(Strategy):
    """Binarise at a confidence threshold; ``t=0`` keeps every marked pixel."""

    t: float

    def __post_init__(self) -> None:
        _check_unit(self.t, "threshold")

    @property
    @override
    def spec(self) -> str:
        return f"threshold:{self.t:g}"

    @override
    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(conf, dtype=np.float32)
        target = ((c > 0) & (c >= self.t - EPS)).astype(np.float32)
        return target, np.ones_like(c)


@dataclass(frozen=True, kw_only=True)
class Soft(Strategy):
    """Use the confidence itself as a soft target."""

    @property
    @override
    def spec(self) -> str:
        return "soft"

    @override
    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(conf, dtype=np.float32)
        return c.copy(), np.ones_like(c)


@dataclass(frozen=True, kw_only=True)
class IgnoreBand(Strategy):
    """Hard labels outside a confidence band; marked pixels inside ``[lo, hi)`` are ignored."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        _check_unit(self.lo, "ignore band low")
        _check_unit(self.hi, "ignore band high")
        if self.lo > self.hi:
            raise StrategyError(f"ignore:{self.lo:g}-{self.hi:g}: low end is above high end; "
                                "write ignore:LO-HI with LO <= HI")
        if self.hi == 0:
            raise StrategyError("ignore:..-0 would make every marked pixel background; "
                                "use a high end above 0")

    @property
    @override
    def spec(self) -> str:
        return f"ignore:{self.lo:g}-{self.hi:g}"

    @override
    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(conf, dtype=np.float32)
        target = (c >= self.hi - EPS).astype(np.float32)
        band = (c > 0) & (c >= self.lo - EPS) & (c < self.hi - EPS)
        return target, np.where(band, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Weighted(Strategy):
    """Every marked pixel is foreground, weighted by its confidence."""

    @property
    @override
    def spec(self) -> str:
        return "weighted"

    @override
    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(conf, dtype=np.float32)
        marked = c > 0
        return marked.astype(np.float32), np.where(marked, c, 1.0).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class RaterSample(Strategy):
    """Train on one rater's mask: a random rater of the item each call, or a named rater."""

    name: str | None = None
    needs_raters: ClassVar[bool] = True

    @property
    @override
    def spec(self) -> str:
        return "rater" if self.name is None else f"rater:{self.name}"

    @override
    def apply(self, conf: np.ndarray, *, raters: np.ndarray | None = None,
              rater_names: Sequence[str] = (), rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        if raters is None or len(raters) == 0:
            raise StrategyError(f"strategy {self.spec!r} needs rater masks, but this item has "
                                "none; use a dataset with raters/ or another strategy")
        r = np.asarray(raters, dtype=np.float32)
        if self.name is not None:
            names = list(rater_names)
            if self.name not in names:
                raise StrategyError(f"strategy {self.spec!r}: this item has no mask from rater "
                                    f"{self.name!r} (it has {names}); pick a rater every item has")
            index = names.index(self.name)
        else:
            index = int((rng or np.random.default_rng()).integers(len(r)))
        return r[index].copy(), np.ones_like(r[index], dtype=np.float32)


_NUM = r"((?:\d+(?:\.\d*)?|\.\d+)%?)"


def _unit(text: str, what: str) -> float:
    """A confidence level from a strategy string, read one unambiguous way.

    ``0.6`` (a value in [0, 1]) is a fraction; ``60`` (a whole number 2..100) or ``60%`` /
    ``1.5%`` (a ``%`` sign) is a percent. ``1`` is 100 % (a fraction). A number above 1 that
    is not whole and has no ``%`` (``1.5``) is refused: it could mean 1.5 % or a typo.
    """
    percent = text.endswith("%")
    v = float(text.rstrip("%"))
    if percent or v > 1.0:
        if not percent and v != int(v):
            raise StrategyError(f"{what} {text} is ambiguous; write a fraction (0.015) or a "
                                f"percent with a sign ({text}%)")
        if v > 100:
            raise StrategyError(f"{what} {text} is above 100 %; give a fraction like 0.6 or a "
                                "percent like 60")
        v /= 100.0
    return _check_unit(v, what)


def parse_strategy(text: str | Strategy) -> Strategy:
    """Parse a strategy string such as ``threshold:0.6``, ``soft``, ``ignore:0.2-0.6``.

    Raises:
        StrategyError: for an unknown or malformed string, naming it and the valid forms.
    """
    if isinstance(text, Strategy):
        return text
    s = str(text).strip().lower()
    if s in ("soft",):
        return Soft()
    if s in ("weighted",):
        return Weighted()
    if s in ("rater", "random-rater"):
        return RaterSample()
    if re.fullmatch(r"rater:[a-z0-9_-]+", s):
        return RaterSample(name=str(text).strip().split(":", 1)[1])
    if s in ("conventional", "any"):
        return Threshold(t=0.0)
    if m := re.fullmatch(rf"threshold:{_NUM}", s):
        return Threshold(t=_unit(m.group(1), "threshold"))
    if m := re.fullmatch(rf"ignore:{_NUM}-{_NUM}", s):
        return IgnoreBand(lo=_unit(m.group(1), "ignore band low"),
                          hi=_unit(m.group(2), "ignore band high"))
    raise StrategyError(
        f"unknown label strategy {text!r}; use threshold:T (e.g. threshold:0.6), soft, "
        "ignore:LO-HI (e.g. ignore:0.2-0.6), weighted, or rater[:NAME]")
