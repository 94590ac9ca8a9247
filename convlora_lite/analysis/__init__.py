"""What the runs and models show: parameter counts, step benchmarks, linear probes, attention
distance, expert routing, predictions, results and paper tables, figures.

Each module is imported by name (``from convlora_lite.analysis.figures import plot_history``);
this package itself imports nothing, so the training code can use a figure without loading the
rest."""
