"""What a notebook prints of paths: the machine's folders written as the notebook's parameters."""
from pathlib import Path

from convlora_lite.progress import hide_folders


def test_hide_folders_writes_each_folder_as_its_label_and_nothing_else(tmp_path):
    out, data = tmp_path / "runs", tmp_path / "runs" / "data"
    folders = {"OUTPUT_DIR": out, "DATA_ROOT": data}
    assert hide_folders(out / "sweep_cpu" / "synth_polyp", folders) == "OUTPUT_DIR/sweep_cpu/synth_polyp"
    assert hide_folders(data / "my_data", folders) == "DATA_ROOT/my_data"  # the deeper folder wins
    assert hide_folders(f"[1/2] x -> {out}/a: done, {out}.", folders) == "[1/2] x -> OUTPUT_DIR/a: done, OUTPUT_DIR."
    assert hide_folders(f"{out}2/a and {out}-old", folders) == f"{out}2/a and {out}-old"  # other folders stay
    assert hide_folders("no path here", folders) == "no path here"


def test_hide_folders_resolves_a_relative_folder_as_the_session_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hide_folders(Path(tmp_path.resolve(), "runs/notebooks/x"), {"OUTPUT_DIR": "runs/notebooks"}) == \
        "OUTPUT_DIR/x"
