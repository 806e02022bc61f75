"""The clinical model: lung-water courses, oxygenation (SpO2, FiO2, S/F) and readmission.

Each patient has a hidden lung-water course ``L_d`` in [0, 1] over the study days.
It drives the B-lines of every view (see :mod:`confseg.synth.scene`) and, through an
oxygenation "capacity" (the S/F ratio the lungs would give), the SpO2 and FiO2 that
are recorded. Readmission within 30 days is drawn from a logistic model of the course.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from confseg.data.clinical import ClinicalColumn, ClinicalSchema

CLINICAL_SCHEMA = ClinicalSchema.of(
    ClinicalColumn(name="lung_water", kind="float",
                   description="simulated extravascular lung water in [0, 1] (latent; drives "
                               "B-lines, S/F and readmission)"),
    ClinicalColumn(name="spo2", kind="int", unit="%", description="peripheral O2 saturation"),
    ClinicalColumn(name="fio2", kind="float", description="inspired O2 fraction"),
    ClinicalColumn(name="sf_ratio", kind="float", description="SpO2 / FiO2"),
    ClinicalColumn(name="sf_change", kind="category", levels=("up", "down", "same"),
                   description="S/F against the previous day (|delta| <= 15 is same); empty "
                               "on the first day"),
    ClinicalColumn(name="readmit_30d", kind="binary",
                   description="readmitted within 30 days (one value per patient)"),
    ClinicalColumn(name="b_lines", kind="int", description="true B-lines summed over the "
                                                            "patient-day's views"),
    ClinicalColumn(name="probe", kind="category", levels=("convex", "linear"),
                   description="probe used on every view and day"),
)
CLINICAL_COLUMNS = CLINICAL_SCHEMA.names
SF_TOLERANCE = 15.0
FIO2_STEPS = (0.21, 0.24, 0.28, 0.32, 0.36, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00)
SF_HEALTHY, SF_SEVERE = 470.0, 150.0
READMIT_COEF = (-2.2, 3.0, 4.0)  # intercept, last-day lung water, change first -> last


@dataclass(frozen=True, kw_only=True)
class PatientCourse:
    """One patient's hidden state.

    Attributes:
        patient: Patient id.
        lung_water: Lung-water level per day.
        probe: ``"convex"`` or ``"linear"`` (the same probe on every view and day).
        pleura_depth: Pleural depth on the beam axis (chest-wall thickness).
    """

    patient: str
    lung_water: tuple[float, ...]
    probe: str
    pleura_depth: float


def sample_course(rng: np.random.Generator, patient: str, days: int, probe: str
                  ) -> PatientCourse:
    """Draw a course: baseline ``L_0 ~ Beta(1.2, 1.5)``, a linear trend, daily noise.

    ``L_d = clip(L_0 + b d + e_d, 0, 1)`` with ``b ~ N(-0.06, 0.12)`` (improving on
    average) and ``e_d ~ N(0, 0.04)``. ``probe="mixed"`` picks convex or linear with
    equal chance.
    """
    if probe == "mixed":
        probe = "convex" if rng.random() < 0.5 else "linear"
    base, slope = rng.beta(1.2, 1.5), rng.normal(-0.06, 0.12)
    lw = tuple(float(np.clip(base + slope * d + (rng.normal(0, 0.04) if d else 0.0), 0, 1))
               for d in range(days))
    return PatientCourse(patient=patient, lung_water=lw, probe=probe,
                         pleura_depth=float(rng.uniform(0.27, 0.36)))


def view_lung_water(lung_water: float, view_index: int, rng: np.random.Generator) -> float:
    """Regional lung water of a view: lower zones (higher index) carry a little more.

    ``L_v = clip(L_d + 0.04 (min(zone, 2) - 1) + N(0, 0.07), 0, 1)``,
    ``zone = view_index // 2`` (R1/L1 upper, R2/L2 middle, R3/L3 and below basal).
    """
    zone = min(view_index // 2, 2)
    return float(np.clip(lung_water + 0.04 * (zone - 1) + rng.normal(0, 0.07), 0, 1))


def oxygenation(lung_water: float, rng: np.random.Generator) -> tuple[int, float, float]:
    """SpO2 (%), FiO2 and S/F ratio for a lung-water level.

    The capacity ``C = 470 - 320 L + N(0, 20)`` (floored at 60) is the S/F the lungs
    would give. On room air (FiO2 0.21) SpO2 would be ``min(100, 0.21 C)``; if that is
    below 88 % FiO2 is raised through the usual steps until ``C * FiO2`` reaches a target
    SpO2 drawn in [92, 96]. Recorded SpO2 = ``min(100, round(C * FiO2 + N(0, 1)))`` and
    ``S/F = SpO2 / FiO2``.
    """
    capacity = max(60.0, SF_HEALTHY - (SF_HEALTHY - SF_SEVERE) * lung_water
                   + rng.normal(0.0, 20.0))
    target = rng.uniform(92.0, 96.0)
    fio2 = FIO2_STEPS[-1]
    for f in FIO2_STEPS:
        if (f == 0.21 and capacity * f >= 88.0) or capacity * f >= target:
            fio2 = f
            break
    spo2 = int(min(100, round(capacity * fio2 + rng.normal(0.0, 1.0))))
    return spo2, fio2, spo2 / fio2


def sf_change(previous: float | None, current: float, tolerance: float = SF_TOLERANCE) -> str:
    """"up", "down" or "same" (|delta| <= tolerance); "" on the first day."""
    if previous is None:
        return ""
    delta = current - previous
    if abs(delta) <= tolerance:
        return "same"
    return "up" if delta > 0 else "down"


def readmission_probability(lung_water: tuple[float, ...]) -> float:
    """``sigmoid(-2.2 + 3.0 L_last + 4.0 (L_last - L_first))``."""
    b0, b1, b2 = READMIT_COEF
    last, first = lung_water[-1], lung_water[0]
    return 1.0 / (1.0 + math.exp(-(b0 + b1 * last + b2 * (last - first))))


def clinical_rows(courses: list[PatientCourse], rng: np.random.Generator) -> list[dict[str, Any]]:
    """One row per patient-day (``b_lines`` left at 0 for the caller to fill)."""
    rows: list[dict[str, Any]] = []
    for c in courses:
        readmit = int(rng.random() < readmission_probability(c.lung_water))
        prev: float | None = None
        for day, lw in enumerate(c.lung_water):
            spo2, fio2, sf = oxygenation(lw, rng)
            rows.append({"patient": c.patient, "day": day, "lung_water": round(lw, 4),
                         "spo2": spo2, "fio2": fio2, "sf_ratio": round(sf, 1),
                         "sf_change": sf_change(prev, round(sf, 1)), "readmit_30d": readmit,
                         "b_lines": 0, "probe": c.probe})
            prev = round(sf, 1)
    return rows
