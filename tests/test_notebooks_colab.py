"""Every notebook on the ``colab`` preset, its paper-scale cells included, shrunk to CPU size.

What a Colab user's run downloads is served from 127.0.0.1 in the official formats
(``tests/mirror.py``): the seven real datasets (installed by the notebooks through
``download_dataset`` from ``$CONVLORA_DATA_BASE_URL``), Meta's MAE ViT-B file (fetched by
``MAE_CHECKPOINT="auto"`` from ``$CONVLORA_MAE_BASE_URL``) and Imagenette (``$CONVLORA_IMAGENETTE_URL``).
SAM ViT-B with random weights is written as Meta's ``.pth`` and passed as ``CHECKPOINT`` (``"auto"``
would check Meta's sha256, which random weights cannot have). The budget knobs shrink every run to
one batch of one epoch at 128 px; nothing else differs from a Colab session: the notebooks take
their ``not OFFLINE`` branches, compare with the paper and read their runs back.

The main job's runner executes them (``scripts/run_notebooks.py``, so the figure and output checks
apply) and records each kernel's host-memory peak, which must stay well under a Colab runtime's
12.7 GB together with the recorded host peak of the colab step at its true size (the GPU check's CPU
stand-in, ``benchmarks/results/gpu_check_cpu_colab_stand_in_*.json``). The numbers of these runs mean
nothing (random weights, a handful of images).
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
from mirror import sam2_checkpoint, serve, write_mirror

from convlora_lite.reports.readings import CONV_LORA_OFFLINE_NOTE
from convlora_lite.training.presets import OFFICIAL_SEED
from convlora_lite.training.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from gpu_check import recorded_colab_stand_in  # noqa: E402
from run_notebooks import notebook_paths, run_notebooks  # noqa: E402

#: a Colab runtime's host memory is about 12.7 GB; every notebook must stay well under it.
HOST_PEAK_LIMIT_GB = 8.0
#: the budget knobs and probe sizes that bring the colab preset down to CPU size.
SHRUNK = dict(EPOCHS=1, IMAGE_SIZE=128, MAX_TRAIN_BATCHES=1, PROBE_PER_CLASS=2, ATTENTION_IMAGES=2, N_IMAGES=2,
              USAGE_IMAGES=2, MAE_CHECKPOINT="auto", LIVE_SEEDS=0)


@pytest.fixture(scope="module")
def colab_outputs(tmp_path_factory):
    """Run every notebook once on the shrunk colab preset; yields (results, output folder)."""
    folder = tmp_path_factory.mktemp("colab")
    write_mirror(folder / "mirror", per_split={"train": 4, "val": 2})
    hiera_s = folder / "mirror" / "sam2.1_hiera_small.pt"  # notebook 13's SAM 2 (Meta's format, random weights)
    hiera_s.write_bytes(sam2_checkpoint("sam2.1_hiera_small"))
    with serve(folder / "mirror") as url, pytest.MonkeyPatch.context() as env:
        env.setenv("CONVLORA_DATA_BASE_URL", f"{url}/datasets")
        env.setenv("CONVLORA_MAE_BASE_URL", f"{url}/mae")
        env.setenv("CONVLORA_IMAGENETTE_URL", f"{url}/imagenette2-160.tgz")
        env.setenv("CONVLORA_CACHE", str(folder / "cache"))
        env.setenv("OMP_NUM_THREADS", "1")  # two test workers share two cores
        results = run_notebooks(folder / "out", preset="colab", log=lambda *_: None,
                                parameters=dict(SHRUNK, CHECKPOINT=str(folder / "mirror/sam/sam_vit_b_01ec64.pth"),
                                                SAM2_CHECKPOINT=str(hiera_s)))
    for big in ("mirror", "cache"):  # ViT-B and MAE weights twice over (1.4 GB): the tests read only the outputs
        shutil.rmtree(folder / big, ignore_errors=True)
    yield results, folder / "out"
    shutil.rmtree(folder, ignore_errors=True)


def test_every_notebook_runs_on_the_colab_preset(colab_outputs):
    results, out = colab_outputs
    assert [r["name"] for r in results] == [p.name for p in notebook_paths()]
    failed = {r["name"]: r["error"] for r in results if not r["ok"]}
    assert not failed, failed
    (out / "peaks.json").write_text(json.dumps({r["name"]: round(r["peak_gb"], 2) for r in results}))
    # Shrunk, a notebook's peak is its kernel, libraries and data; the recorded step at the true size holds
    # the process's own libraries and ViT-B too, so the sum over-counts: under the limit, the real one is.
    step_gb = recorded_colab_stand_in()["host_peak_gib"] * 2 ** 30 / 1e9
    for r in results:
        assert 0 < r["peak_gb"] and r["peak_gb"] + step_gb < HOST_PEAK_LIMIT_GB, (r["name"], r["peak_gb"], step_gb)


def _outputs_text(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))


def test_the_paper_scale_branches_ran(colab_outputs):
    """The notebooks took their paper-scale paths: real datasets, ViT-B, the MAE probe on Imagenette, the
    comparison with the paper and no offline explanation, 08's grid trained on ViT-B, 11's export round trip."""
    _, out = colab_outputs
    text = {p.name[:2]: _outputs_text(p) for p in (out / "notebooks").glob("*.ipynb")}
    assert "PAPER-SCALE mode (preset 'colab')" in text["00"]
    assert "vit_b at 128 px" in text["00"]
    assert "MAE ViT-B" in text["01"] and "Imagenette" in text["01"]
    for number in ("03", "04", "05", "06", "07"):
        assert "next to the paper (ViT-H); difference to the paper's" in text[number], number
    assert all(CONV_LORA_OFFLINE_NOTE not in shown and "synthetic analog, trained offline" not in shown
               for shown in text.values())  # the micro SAM's explanation is not about these runs
    assert "1 dataset(s) x 4 methods x 1 seed(s) on the colab preset" in text["08"]
    runs = out / "runs" / "sweep_colab_e1_px128_b1"
    grid = [RunDir.of(runs, "polyp", method, OFFICIAL_SEED) for method in ("decoder_only", "vpt", "lora", "conv_lora")]
    assert all(run.is_complete() and run.read_config_dict()["model"] == "vit_b" for run in grid), grid
    trained = {p.parents[2].name for p in runs.glob("*/*/seed*/metrics.json")}
    assert trained == {"polyp", "isic2017", "camo", "sbu", "leaf", "road", "trans10k", "own_my_data"}
    assert all((out / "data" / name).is_dir() for name in ("polyp", "SBU-shadow", "trans10k"))
    assert ": the same mask as from the run directory: True" in text["11"]  # the export's round trip
    assert "PAPER-SCALE mode (preset 'colab'): sam2.1_hiera_small" in text["13"]
    hiera = [RunDir.of(out / "runs" / "sweep_colab_e1_px128_b1_sam2.1_hiera_small", "polyp", method, OFFICIAL_SEED)
             for method in ("lora", "conv_lora")]
    assert all(run.is_complete() and run.read_config_dict()["model"] == "sam2.1_hiera_small" for run in hiera)
