"""Run presets by name: ``--config tiny`` is ``configs/tiny.yaml`` of the repository checkout.

Shared by ``mosaic-hpc train`` and ``mosaic-hpc quickstart``, so a user following the docs can
name a preset instead of finding the path to it.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # configs/ sits next to the package in the repository


def resolve_config(name_or_path: str) -> Path:
    """A YAML path as given, or ``configs/<name>.yaml`` of the repository checkout.

    The presets ship with the repository, not inside the installed package, so a
    non-editable install must pass a path.

    Raises:
        FileNotFoundError: a path (``.yaml`` or with a directory) that does not exist.
        ValueError: a name that is no preset (names the places looked at).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix.lower() in (".yaml", ".yml") or len(path.parts) > 1:  # meant as a path, not a preset name
        raise FileNotFoundError(f"config file {path} does not exist")
    preset = REPO_ROOT / "configs" / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise ValueError(
        f"config {name_or_path!r} not found (neither a file nor {preset}); the presets live in the repository's "
        "configs/ directory: run from a checkout or pass --config PATH.yaml"
    )
