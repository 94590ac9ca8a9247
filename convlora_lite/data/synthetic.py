"""Offline synthetic analogs of the paper's seven segmentation tasks: what they keep, and writing them.

These are **analogs, not the real data**. They are procedurally drawn pictures (numpy and
``scipy.ndimage`` only) that let every notebook, test and CPU run work without a download, and
that keep one or two things that make each real task hard, so that a method that cannot cope
with them shows it. Numbers measured on them say nothing about the paper's numbers.

What each analog keeps from its real task (``generate_synthetic`` writes ``synth_<task>``):

* ``synth_polyp`` (Kvasir / CVC polyps): one or two rounded blobs of varied size whose colour is
  close to the surrounding mucosa, with a mottled interior, dome shading, vessel-like lines and
  specular highlights on and off the polyp, and the dark endoscope vignette.
* ``synth_isic2017`` (skin lesions): one irregular pigmented lesion of varied size whose contrast
  with the skin ranges from faint to dark, with a wide fuzzy border (where exactly the border lies
  is ambiguous), variegated pigment (blotches, blue-grey veil, pale regression areas), hairs
  crossing it, a ruler's ticks and dark dermoscope corners in some images.
* ``synth_camo`` (camouflaged objects): an animal-like blob whose texture is drawn from the same
  colours and noise as the background, with only a slight colour / scale shift and faint shading.
* ``synth_sbu`` (shadows): soft-edged cast shadows (penumbra of varied width, bluish tint) over
  textured ground with objects, plus dark objects that are *not* shadows (distractors).
* ``synth_leaf`` (leaf disease): a veined leaf on a plain background with several small diseased
  spots (brown centre, yellow halo; only the spot is foreground), so the foreground is small.
* ``synth_road`` (Massachusetts roads): thin connected road networks (main roads from border to
  border and branches, 6-10 px wide at 256 px, light asphalt with darker verges) over soft-edged
  aerial-like land cover, partly hidden by tree clumps and still labelled there.
* ``synth_trans10k`` (Trans10K-v2, 11 classes + background): transparent objects that show the
  refracted, blurred and tinted background with a reflection, a specular streak, bright inner rims
  and dark outlines; one distinct shape per class (shelf, jar, freezer, window, door, eyeglass,
  cup, wall, bowl, bottle, box), each at a place typical of it (windows high, doors on the floor,
  tableware low); every 5 consecutive images of a split hold all 11 classes.

The two controlled tasks of the local-prior experiment, ``synth_prior_texture`` and
``synth_prior_colour`` (:mod:`convlora_lite.data.prior_scenes`, ``docs/data.md``), are written the same way.

The pictures themselves are drawn by :mod:`convlora_lite.data.synthetic_scenes`. Each analog is
written in its real dataset's on-disk layout, so it loads through the same
classes (:func:`~convlora_lite.data.datasets.build_dataset`):
binary tasks ``{root}/synth_x/synth_x/{train,val,test}.csv`` (with a leading index column, as
the official CSVs) plus ``images/*.png`` and 0/255 ``masks/*.png``; ``synth_trans10k``
``{root}/synth_trans10k/{train,validation,test}/{images/N.jpg, masks_12/N_mask.png}`` with
palette index masks. Defaults: 256 px, 64 train / 16 val / 32 test images (about a second or two
per task on one CPU core; small enough to train on a CPU in minutes). Same arguments -> the same
bytes on disk. The note ``SYNTHETIC.json`` is written last, into the folder of the split
listings: an analog is complete (installed, see :func:`~convlora_lite.data.install.is_installed`)
when it is there, and an interrupted generation is redone.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from convlora_lite.data.prior_scenes import PRIOR_SCENES
from convlora_lite.data.registry import DatasetSpec, get_dataset_spec
from convlora_lite.data.synthetic_scenes import BINARY_SCENES, trans10k_scene
from convlora_lite.errors import ConfigError

SYNTHETIC_TASKS = ("polyp", "isic2017", "camo", "sbu", "leaf", "road", "trans10k")
#: the local-prior experiment's two controlled tasks (:mod:`convlora_lite.data.prior_scenes`), after the analogs.
PRIOR_TASKS = tuple(PRIOR_SCENES)
_TASKS = SYNTHETIC_TASKS + PRIOR_TASKS
_SCENES = {**BINARY_SCENES, **PRIOR_SCENES}
SPLIT_ORDER = ("train", "val", "test")
#: note written last into ``spec.dataset_dir(root)`` of an analog; its presence means "complete".
SYNTHETIC_MARKER = "SYNTHETIC.json"


_TRANS10K_PALETTE = [0, 0, 0, 120, 120, 70, 235, 255, 7, 6, 230, 230, 204, 255, 4, 120, 120, 120,
                     140, 140, 140, 255, 51, 7, 224, 5, 255, 204, 5, 255, 150, 5, 61, 4, 250, 7]


# ----------------------------------------------------------------------------- writing to disk
def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _synthetic_spec(name: str) -> DatasetSpec:
    """The registry spec of ``synth_<task>`` (``name`` may omit the ``synth_`` prefix)."""
    task = name.removeprefix("synth_")
    if task not in _TASKS:
        raise ConfigError(f"no synthetic analog {name!r}; choose one of "
                          f"{', '.join('synth_' + t for t in _TASKS)}")
    return get_dataset_spec(f"synth_{task}")


def _sample_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TASKS.index(task), SPLIT_ORDER.index(split), index])


def _write_csv_split(spec, task, directory: Path, split, count, size, seed):
    lines = [",image,label"]
    for i in range(count):
        image, mask = _SCENES[task](_sample_rng(seed, task, split, i), size)
        stem = f"{split}_{i:04d}"
        Image.fromarray(_to_uint8(image)).save(directory / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(directory / "masks" / f"{stem}.png")
        lines.append(f"{i},images/{stem}.png,masks/{stem}.png")
    (directory / spec.splits[split]).write_text("\n".join(lines) + "\n")


def _write_trans10k_split(spec, directory: Path, split, count, size, seed):
    split_dir = directory / spec.splits[split]
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "masks_12").mkdir()
    objects = spec.num_classes - 1
    for i in range(count):
        rng = _sample_rng(seed, "trans10k", split, i)
        n_objects = 3 + int(rng.random() < 0.5)
        classes = [1 + (2 * i + k) % objects for k in range(n_objects)]  # all 11 in any 5 in a row
        image, labels = trans10k_scene(rng, size, classes)
        stem = f"{split}_{i:04d}"
        Image.fromarray(_to_uint8(image)).save(split_dir / "images" / f"{stem}.jpg", quality=95)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(_TRANS10K_PALETTE)
        mask.save(split_dir / "masks_12" / f"{stem}_mask.png")


def generate_synthetic(name: str, root, *, image_size: int = 256, n_train: int = 64, n_val: int = 16,
                       n_test: int = 32, seed: int = 0) -> Path:
    """Write the synthetic analog ``name`` (``"synth_polyp"`` or ``"polyp"``, ...) under ``root``.

    An existing copy of that analog is replaced. Returns ``spec.dataset_dir(root)``: the folder
    holding ``{train,val,test}.csv`` (binary tasks) or the split folders (``synth_trans10k``).
    The same arguments always give the same bytes.
    """
    spec = _synthetic_spec(name)
    task = spec.name.removeprefix("synth_")
    if min(n_train, n_val, n_test) < 1 or image_size < 32:
        raise ConfigError("generate_synthetic needs at least one image per split and image_size >= 32")
    target = Path(root) / spec.folder
    if target.exists():
        shutil.rmtree(target)
    directory = spec.dataset_dir(root)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if spec.layout == "trans10k":
        directory.mkdir(parents=True)
        for split, count in counts.items():
            _write_trans10k_split(spec, directory, split, count, image_size, seed)
    else:
        (directory / "images").mkdir(parents=True)
        (directory / "masks").mkdir()
        for split, count in counts.items():
            _write_csv_split(spec, task, directory, split, count, image_size, seed)
    info = {"name": spec.name, "synthetic": True, "seed": seed, "image_size": image_size,
            "counts": counts, "note": "procedural analog, not the real data (convlora_lite.data.synthetic)"}
    (directory / SYNTHETIC_MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return directory

