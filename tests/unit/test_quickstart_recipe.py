"""`make run` after a recipe change trains the new recipe: the old run is set aside, never reused or deleted."""

from conftest import REPO

from mosaic_hpc.commands.quickstart import set_aside_other_recipe
from mosaic_hpc.config import load_config
from mosaic_hpc.training.runner import run_training


def test_a_run_of_another_recipe_is_renamed_and_the_same_recipe_kept(tmp_path, toy_catalog_dir):
    cfg = load_config(REPO / "configs" / "tiny.yaml", {"train.max_steps": 2, "train.eval_every": 0})
    run = tmp_path / "quickstart"
    run_training(cfg, toy_catalog_dir, run, resume="none")
    longer = load_config(REPO / "configs" / "tiny.yaml", {"train.max_steps": 5, "train.eval_every": 0})
    assert set_aside_other_recipe(run, longer) is None and run.is_dir()  # more steps: the same run, resumed
    other = load_config(REPO / "configs" / "tiny.yaml", {"train.max_steps": 2, "train.ema_decay": 0.9})
    (run / "catalog").mkdir()  # the quickstart's mock catalog lives in the run directory: it stays
    (run / "catalog" / "train.h5").write_bytes(b"kept")
    aside = set_aside_other_recipe(run, other)
    assert aside is not None and aside.name.startswith("quickstart.replaced-")
    assert (aside / "checkpoints" / "step_00000002" / "model.pt").is_file()  # nothing lost
    assert (
        sorted(p.name for p in run.iterdir()) == ["catalog"] and (run / "catalog" / "train.h5").read_bytes() == b"kept"
    )
    assert set_aside_other_recipe(run, other) is None  # no run there any more: nothing to do
