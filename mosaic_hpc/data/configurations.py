"""Fixed input configurations for evaluation and prediction: which values the model is given.

A configuration is written as a short spec, ``given=lsst,spherex`` or
``given=lsst,sfh[t>=10Gyr]`` or ``given=scalars[log10_stellar_mass]``, optionally prefixed by a
name: ``late_sfh:given=lsst,sfh[t>=10Gyr]``. Inside brackets, vectors take conditions on their
axis joined by ``&`` (``t`` = cosmic time, ``lambda`` = wavelength, ``i`` = index; units Gyr,
Myr, A, nm, um), and scalars take column names joined by ``|``. Everything not given is hidden.

The paper's Fig. 2 labels "early SFH (0-10 Gyr masked)" and "late SFH (10-13.8 Gyr masked)"
contradict its prose, so configurations here are named by the time range that is *given*, and
both are evaluated.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np

from ..schema import CatalogSchema, ModalitySpec

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_UNITS = {
    "gyr": ("cosmic_time", 1.0),
    "myr": ("cosmic_time", 1e-3),
    "a": ("wavelength", 1.0),
    "aa": ("wavelength", 1.0),
    "angstrom": ("wavelength", 1.0),
    "nm": ("wavelength", 10.0),
    "um": ("wavelength", 1e4),
    "micron": ("wavelength", 1e4),
    "": (None, 1.0),
}
_VARS = {"t": "cosmic_time", "time": "cosmic_time", "lambda": "wavelength", "wl": "wavelength", "i": "index"}
_COND = re.compile(r"^\s*(\w+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*([A-Za-z]*)\s*$")
_ITEM = re.compile(r"(\w+)(?:\[([^\]]*)\])?")


@dataclass(frozen=True)
class InputConfiguration:
    """A named set of given values. ``given`` maps modality -> selector ('' = whole modality)."""

    name: str
    given: tuple[tuple[str, str], ...]
    label: str = ""

    @property
    def spec(self) -> str:
        items = [n + (f"[{sel}]" if sel else "") for n, sel in self.given]
        return f"given={','.join(items)}"

    def given_mask(self, schema: CatalogSchema) -> dict[str, np.ndarray]:
        """Per modality, a bool [L] array, True where the value is given to the model."""
        out = {m.name: np.zeros(m.length, dtype=bool) for m in schema}
        for name, selector in self.given:
            if name not in out:
                raise ValueError(f"configuration {self.name!r}: no modality {name!r} in {list(schema.names)}")
            out[name] |= _select(schema[name], selector, self.name)
        return out

    def hidden_masks(self, schema: CatalogSchema, batch_size: int) -> dict[str, np.ndarray]:
        """The complement of :meth:`given_mask`, broadcast to [B, L] like the training masker."""
        return {n: np.broadcast_to(~g, (batch_size, g.size)).copy() for n, g in self.given_mask(schema).items()}


def _select(spec: ModalitySpec, selector: str, config_name: str) -> np.ndarray:
    if not selector:
        return np.ones(spec.length, dtype=bool)
    if spec.is_scalars:
        sel = np.zeros(spec.length, dtype=bool)
        for col in selector.split("|"):
            sel[spec.column_index(col.strip())] = True
        return sel
    sel = np.ones(spec.length, dtype=bool)
    for cond in selector.split("&"):
        m = _COND.match(cond)
        if not m:
            raise ValueError(f"configuration {config_name!r}: cannot parse condition {cond!r} (e.g. t>=10Gyr)")
        var, op, value, unit = m.group(1).lower(), m.group(2), float(m.group(3)), m.group(4).lower()
        if var not in _VARS:
            raise ValueError(f"configuration {config_name!r}: unknown variable {var!r}; use one of {sorted(_VARS)}")
        quantity = _VARS[var]
        if quantity == "index":
            coord = np.arange(spec.length, dtype=np.float64)
        else:
            if spec.axis_quantity != quantity:
                raise ValueError(
                    f"configuration {config_name!r}: {spec.name} axis is {spec.axis_quantity or 'not set'}, "
                    f"cannot select on {quantity}"
                )
            if unit not in _UNITS or _UNITS[unit][0] not in (None, quantity):
                raise ValueError(f"configuration {config_name!r}: unit {unit!r} does not fit {quantity}")
            value *= _UNITS[unit][1] / _axis_scale(spec)
            coord = spec.axis_array()
        sel &= _OPS[op](coord, value)
    if not sel.any():
        raise ValueError(f"configuration {config_name!r}: {spec.name}[{selector}] selects no value")
    return sel


def _axis_scale(spec: ModalitySpec) -> float:
    """Size of one axis unit in the canonical unit (Gyr for time, Angstrom for wavelength)."""
    unit = spec.axis_unit.lower()
    return {"gyr": 1.0, "myr": 1e-3, "angstrom": 1.0, "a": 1.0, "aa": 1.0, "nm": 10.0, "um": 1e4, "micron": 1e4}.get(
        unit, 1.0
    )


def parse_configuration(text: str, schema: CatalogSchema | None = None, label: str = "") -> InputConfiguration:
    """Parse ``[name:]given=a,b[cond]``; with a schema, check names, columns and axes now."""
    name, _, body = text.rpartition(":") if ":" in text else ("", "", text)
    body = body.strip()
    if body.startswith("given="):
        body = body[len("given=") :]
    if not body:
        raise ValueError(f"configuration {text!r} gives nothing; write e.g. given=lsst,spherex")
    items = []
    pos = 0
    for m in _ITEM.finditer(body):
        gap = body[pos : m.start()].strip()
        if gap not in ("", ","):
            raise ValueError(f"configuration {text!r}: cannot parse near {gap!r}")
        items.append((m.group(1), (m.group(2) or "").strip()))
        pos = m.end()
    if body[pos:].strip(" ,"):
        raise ValueError(f"configuration {text!r}: cannot parse near {body[pos:]!r}")
    cfg = InputConfiguration(name=name.strip() or _auto_name(items), given=tuple(items), label=label)
    if schema is not None:
        for mod, _ in items:
            schema[mod]  # unknown modality -> ValueError with the valid names
        cfg.given_mask(schema)
    return cfg


def _auto_name(items: list[tuple[str, str]]) -> str:
    return "+".join(n + (f"[{s}]" if s else "") for n, s in items)


# Paper Sec. 3 / Fig. 2 / Table 1, named by what is given (see module docstring).
PAPER_CONFIGURATIONS: tuple[InputConfiguration, ...] = (
    parse_configuration("lsst_only:given=lsst", label="LSST magnitudes only"),
    parse_configuration("lsst_spherex:given=lsst,spherex", label="LSST magnitudes + SPHEREx colors"),
    parse_configuration("lsst_sfh_0_10gyr:given=lsst,sfh[t<10Gyr]", label="LSST + SFH (0-10 Gyr given)"),
    parse_configuration("lsst_sfh_10_13.8gyr:given=lsst,sfh[t>=10Gyr]", label="LSST + SFH (10-13.8 Gyr given)"),
    parse_configuration("stellar_mass_only:given=scalars[log10_stellar_mass]", label="Stellar mass only"),
)


def expressible(
    configs: tuple[InputConfiguration, ...] | list[InputConfiguration], schema: CatalogSchema
) -> tuple[list[InputConfiguration], list[str]]:
    """The configurations this catalog can express, and one note per one it cannot.

    A catalog of magnitudes and redshift has no SPHEREx, SFH or stellar mass: the paper's
    configurations that need them are skipped (with the reason, for the user to see), so that
    evaluate and embed work on any schema instead of stopping.
    """
    ok, notes = [], []
    for cfg in configs:
        try:
            cfg.given_mask(schema)
        except ValueError as err:
            notes.append(f"{cfg.name}: {str(err).removeprefix(f'configuration {cfg.name!r}: ')}")
            continue
        ok.append(cfg)
    return ok, notes


def paper_configurations(schema: CatalogSchema, notes: list[str] | None = None) -> list[InputConfiguration]:
    """The paper's five configurations that this catalog can express (needs its modalities).

    Args:
        schema: the run's catalog schema.
        notes: if given, one line per skipped configuration is appended (see :func:`expressible`).
    """
    ok, skipped = expressible(PAPER_CONFIGURATIONS, schema)
    if notes is not None:
        notes.extend(skipped)
    return ok


SKIPPED_NOTE = "skipped the paper's configurations this catalog cannot express"
