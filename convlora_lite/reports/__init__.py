"""Reports on finished runs: results tables (:mod:`.results_tables`), the paper's numbers next to ours
(:mod:`.paper_tables`) and the sentences the notebooks print about them (:mod:`.readings`), all computed
from run directories. Each module is imported by name; this package itself imports nothing."""
