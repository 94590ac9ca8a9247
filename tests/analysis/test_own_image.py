"""A finished run on an image of another size comes back at that image's size."""
import io
import sys
import types

from PIL import Image

from convlora_lite.data.own import example_image
from convlora_lite.inference.segmenter import Segmenter
from convlora_lite.plots.widgets import draw_own_image, own_image
from convlora_lite.training import TrainConfig, fit


def test_own_image_is_segmented_at_its_own_size(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLORA_HEADLESS", "1")
    run = fit(TrainConfig.resolve("synth_polyp", "decoder_only", "smoke", model="test_tiny", checkpoint=None,
                                  data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "run")))
    path = example_image("synth_polyp", tmp_path / "data", tmp_path / "photo.png")
    assert Image.open(path).size == (413, 297)
    segmenter = Segmenter.from_run(run)
    assert segmenter.segment(Image.open(path)).shape == (297, 413)
    figure = own_image(run, path)
    assert figure.axes[0].get_title() == "your image (413 x 297 px)"
    assert figure.axes[1].images[1].get_array().shape == (297, 413)
    assert own_image(run) is None  # headless and nothing given: nothing to show
    assert draw_own_image(segmenter, path).axes[1].get_title().startswith("decoder_only: predicted mask")

    # live on Colab: Colab's own upload dialog (google.colab.files.upload -> {name: bytes}), not ipywidgets
    monkeypatch.delenv("CONVLORA_HEADLESS")
    photo = io.BytesIO()
    Image.new("RGB", (150, 90), (200, 30, 30)).save(photo, "JPEG")
    answers = [{"holiday.jpg": photo.getvalue()}, {}]  # one upload, then a cancelled dialog
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(upload=lambda: answers.pop(0))
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    figure = own_image(run)
    assert figure.axes[0].get_title() == "your image (150 x 90 px)" and figure._suptitle.get_text() == "holiday.jpg"
    assert figure.axes[1].images[1].get_array().shape == (90, 150)
    assert own_image(run) is None and answers == []
