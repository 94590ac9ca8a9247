"""Pictures: training curves and predictions (:mod:`.figures`), comparisons of runs (:mod:`.comparisons`),
class statistics, diagrams of the method, and the notebooks' live explorers (:mod:`.widgets`). Each module
is imported by name; this package itself imports nothing."""
