"""Probes of models: parameter counts, linear probes, attention distance, expert routing, zero-shot SAM,
a model's predictions on dataset items.

Each module is imported by name (``from convlora_lite.analysis.expert_routing import record_routing``);
this package itself imports nothing. Reports on runs are in :mod:`convlora_lite.reports`, pictures in
:mod:`convlora_lite.plots`, cost tools in :mod:`convlora_lite.bench`."""
