"""Cost tools: the training-step benchmark behind ``convlora bench`` (:mod:`.step_benchmark`) and the FLOP
budget of a run (:mod:`.compute_budget`). Each module is imported by name; this package imports nothing."""
