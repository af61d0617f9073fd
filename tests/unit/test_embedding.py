"""Fig. 3 embedding: hidden-state shapes, percentile-filtered hulls, UMAP panels, the embed command.

umap-learn pulls in numba (10-20 s on first import), so every test that runs UMAP shares the one
module-scoped ``embedded`` fixture or runs after it in this module.
"""

import numpy as np
import pytest

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.configurations import paper_configurations
from mosaic_hpc.evaluation.embedding import (
    hull_polygon,
    modality_embeddings,
    normalise,
    percentile_mask,
    scalar_column,
    write_embedding,
)
from mosaic_hpc.evaluation.predictor import load_run

N_GALAXIES = 60


@pytest.fixture(scope="module")
def predictor(tiny_run_dir):
    return load_run(tiny_run_dir, device="cpu")


@pytest.fixture(scope="module")
def truth(toy_catalog_dir):
    return Catalog.open(toy_catalog_dir, "test").read(0, N_GALAXIES)


@pytest.fixture(scope="module")
def embedded(predictor, truth, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "umap.png"
    configs = paper_configurations(predictor.schema)[:2]
    png, npz = write_embedding(predictor, truth, configs, out, "log10_stellar_mass", seed=0, n_epochs=20)
    return png, npz, configs


def test_modality_embeddings_shapes(predictor, truth):
    cfg = paper_configurations(predictor.schema)[0]
    emb = modality_embeddings(predictor, truth, cfg, batch_size=16)  # several batches
    d = predictor.config.model.d_model
    assert list(emb) == list(predictor.schema.names)
    for name, x in emb.items():
        assert x.shape == (N_GALAXIES, d), name
        assert np.isfinite(x).all()
    # The given modality's states depend on its values; a hidden one's differ between galaxies
    # only through attention to the given tokens, so both vary across galaxies.
    assert emb["lsst"].std(axis=0).mean() > 0 and emb["sed"].std(axis=0).mean() > 0


def test_percentile_mask_drops_extremes_in_x_and_y():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, size=(5000, 2))
    xy[0] = [50.0, 0.5]  # extreme in x only
    xy[1] = [0.5, -50.0]  # extreme in y only
    keep = percentile_mask(xy, 0.1, 99.9)
    assert not keep[0] and not keep[1]
    # 0.1% of points cut at each end of each axis: at most 4 x 5 points, at least the 2 planted ones
    assert 5000 - 20 <= keep.sum() <= 4998
    lo, hi = np.percentile(xy, [0.1, 99.9], axis=0)
    assert (xy[keep] >= lo).all() and (xy[keep] <= hi).all()


def test_hull_excludes_outliers_and_is_closed():
    g = np.linspace(0, 1, 40)
    xy = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)  # 1600 points on the unit square
    xy = np.vstack([xy, [[30.0, 30.0]]])
    ring = hull_polygon(xy, 0.1, 99.9)
    assert ring is not None and (ring[0] == ring[-1]).all()
    assert ring.max() <= 1.0 and ring.min() >= 0.0  # the outlier is not on the hull
    unfiltered = hull_polygon(xy, 0.0, 100.0)
    assert unfiltered.max() == 30.0
    assert hull_polygon(np.c_[np.arange(10.0), np.arange(10.0)], 0, 100) is None  # collinear: no area


def test_normalise_and_color_column(predictor):
    np.testing.assert_allclose(normalise(np.array([2.0, 4.0, np.nan, 3.0])), [0.0, 1.0, np.nan, 0.5])
    assert scalar_column(predictor.schema, "redshift") == ("scalars", 0)
    with pytest.raises(ValueError, match="valid columns: redshift, log10_halo_mass, log10_stellar_mass"):
        scalar_column(predictor.schema, "colour")


def test_embedding_files(embedded, predictor, truth):
    png, npz, configs = embedded
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert npz == png.with_suffix(".npz")
    data = np.load(npz)
    n_mod = len(predictor.schema)
    assert data["coords"].shape == (len(configs), n_mod, N_GALAXIES, 2)
    assert np.isfinite(data["coords"]).all()
    assert list(data["configurations"]) == [c.name for c in configs]
    assert list(data["modalities"]) == list(predictor.schema.names)
    np.testing.assert_array_equal(data["color_value"], truth["scalars"][:, 2])


def test_embed_cli_end_to_end(embedded, tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    out = tmp_path / "plot.png"
    args = ["embed", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--out", str(out)]
    code = main([*args, "--n", "40", "--umap-epochs", "10", "--configuration", "given=lsst"])
    assert code == 0
    assert out.stat().st_size > 0 and np.load(out.with_suffix(".npz"))["coords"].shape[:3] == (1, 5, 40)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--color-by", "colour"], "valid columns: redshift, log10_halo_mass, log10_stellar_mass"),
        (["--n", "1"], "--n must be >= 2"),
        (["--configuration", "given=euclid"], "euclid"),
    ],
)
def test_embed_cli_bad_input_exits_2(extra, message, tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    args = ["embed", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--out", str(tmp_path / "p.png")]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_embed_cli_bad_output_suffix(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    code = main(["embed", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--out", str(tmp_path / "p")])
    assert code == 2 and ".png, .pdf or .svg" in capsys.readouterr().err
