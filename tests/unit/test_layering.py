"""The package's layering: who may import whom, and what each module costs to import.

Users install the catalog tools without DeepSpeed, and ``mosaic-hpc --help`` must not pay for
torch or MPI start-up, so heavy or optional dependencies are imported by exactly one module each,
and lazily. Every module must import on its own in a fresh interpreter (a circular import shows
only when the circle is entered at the wrong module, which one process importing everything in a
fixed order cannot see), and imports only point down the layers of ``LAYERS``.
"""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mosaic_hpc

PKG = Path(mosaic_hpc.__file__).parent
OWNERS = {
    "deepspeed": {"training/deepspeed_engine.py", "training/ds_checkpoint.py", "train.py"},
    "mpi4py": {"data/reader.py", "data/mock/generator.py"},
    "wandb": {"training/wandb_sink.py"},
    "umap": {"evaluation/embedding.py"},
}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("dep", sorted(OWNERS))
def test_optional_dependency_has_one_owner_and_is_lazy(dep):
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if dep in _all_imports(path):
            assert rel in OWNERS[dep], f"{rel} imports {dep}; only {sorted(OWNERS[dep])} may"
            assert dep not in _top_level_imports(path), f"{rel} imports {dep} at module level"


# Lower layers never import higher ones; a module may import its own layer and any below.
# The package root (``mosaic_hpc/__init__.py``: the version and the lazy ``load_run`` facade) is
# outside the layers: any module may read ``__version__`` from it.
LAYERS = (
    {"schema", "config", "cpu_load", "dist_env", "provenance", "devices"},  # catalog schema, run config, device
    {"data"},  # catalogs, readers, masking, normalisation
    {"mixture", "model", "loss"},  # mixture: the predictive distribution both use
    {"training"},
    {"evaluation", "lifecycle"},  # scoring, prediction, export; load_run reads exported models too
    {"bench", "commands", "train", "cli", "rail_bridge"},  # entry points and adapters
)

# Inside bench/ (one module per job): imports point strictly down these layers, so bench/ has no
# import circle and no helper depends on a benchmark. A new bench module must be placed here.
BENCH_LAYERS = (
    {"arith", "devices", "machine", "presets", "report", "synthetic"},  # one job each, torch-free at import
    {"timing"},  # the timed training step and the CPU matmul peak, on devices
    {"dataloader", "predict", "scaling", "throughput"},  # the benchmarks behind `mosaic-hpc bench`
)

# Imported once in the parent so every forked child pays only for the package's own modules.
_PER_MODULE_IMPORT = """
import importlib, os, sys, traceback
import numpy, torch, h5py, yaml  # third-party only: nothing of mosaic_hpc is imported here
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        failed.append(name)
print("FAILED:" + ",".join(failed))
"""


def _package_modules() -> list[str]:
    # mosaic_hpc.train is a script entry point (parses argv at import under some launchers)
    return [m.name for m in pkgutil.walk_packages([str(PKG)], prefix="mosaic_hpc.") if m.name != "mosaic_hpc.train"]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package root
    for i, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS: add it to the layer it belongs to")


def _package_imports(path: Path, module: str) -> set[str]:
    """Every mosaic_hpc module ``path`` imports, lazy imports included, relative ones resolved."""
    is_pkg = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            targets.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mosaic_hpc"):
            targets.add(node.module)
        elif isinstance(node, ast.Import):
            targets |= {a.name for a in node.names if a.name.startswith("mosaic_hpc")}
    return targets


def test_every_module_imports_on_its_own_in_a_fresh_process():
    modules = _package_modules()
    assert len(modules) > 50, modules  # the walk found the package
    proc = subprocess.run(
        [sys.executable, "-c", _PER_MODULE_IMPORT, *modules], capture_output=True, text=True, check=True
    )
    failed = proc.stdout.strip().rpartition("FAILED:")[2]
    assert failed == "", f"modules that do not import on their own: {failed}\n{proc.stderr[-4000:]}"


def test_imports_point_down_the_layers():
    upward = []
    for path in PKG.rglob("*.py"):
        parts = list(path.with_suffix("").relative_to(PKG.parent).parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        src = _layer(module)
        if src is None:
            continue
        for target in _package_imports(path, module):
            dst = _layer(target)
            if dst is not None and dst > src:
                upward.append(f"{module} (layer {src}) imports {target} (layer {dst})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def _bench_layer(name: str) -> int:
    for i, layer in enumerate(BENCH_LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"mosaic_hpc/bench/{name}.py is in no layer of BENCH_LAYERS: add it where it belongs")


def _bench_imports(path: Path) -> set[str]:
    """The bench modules ``path`` imports (``from . import x`` and ``from .x import y`` alike), lazy ones included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mosaic_hpc.bench"):
            rest = node.module.split(".")[2:]
            names |= {rest[0]} if rest else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[2] for a in node.names if a.name.startswith("mosaic_hpc.bench.")}
    return names


def test_bench_imports_point_strictly_down_the_bench_layers():
    found = {p.stem for p in (PKG / "bench").glob("*.py")} - {"__init__"}
    assert found == set().union(*BENCH_LAYERS), "BENCH_LAYERS and the files of mosaic_hpc/bench/ differ"
    wrong = []
    for path in (PKG / "bench").glob("*.py"):
        if path.name == "__init__.py":
            continue
        src = _bench_layer(path.stem)
        for target in _bench_imports(path):
            if _bench_layer(target) >= src:
                wrong.append(f"bench/{path.stem} (layer {src}) imports bench/{target} (layer {_bench_layer(target)})")
    assert not wrong, "imports within bench/ that are not strictly downward:\n" + "\n".join(sorted(wrong))


def test_owner_files_exist():
    for dep, owners in OWNERS.items():
        for rel in owners:
            assert (PKG / rel).is_file(), f"OWNERS[{dep!r}] names {rel}, which is not in the package"


def test_cli_help_does_not_import_torch():
    code = "import sys; from mosaic_hpc.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
