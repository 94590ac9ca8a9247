"""Using a trained model: segment images of any size (:class:`Segmenter`), write masks for files
(:func:`predict_files`, ``convlora predict``), export a run to one file and merge LoRA into SAM
(:func:`export_run`, :func:`export_merged_sam`, ``convlora export``), a Hub folder of a run (:func:`export_hub`)
and moving it to and from the Hugging Face Hub (:mod:`~convlora_lite.inference.hub`, ``convlora hub``), and an ONNX
graph of a run for onnxruntime (:func:`export_onnx`, ``--format onnx``)."""
from convlora_lite.inference.export import export_hub, export_merged_sam, export_run, load_source, merged_sam_state
from convlora_lite.inference.onnx_export import export_onnx
from convlora_lite.inference.predict import PredictReport, predict_files
from convlora_lite.inference.segmenter import Segmenter

__all__ = ["Segmenter", "predict_files", "PredictReport", "export_run", "export_hub", "export_merged_sam",
           "merged_sam_state", "load_source", "export_onnx"]
