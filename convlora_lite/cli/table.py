"""``convlora table RUN_DIRS...``: the paper-style table of finished runs, with each method's device-hours."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("table", help="results table (mean ± std over seeds, x100) from run directories, "
                                                 "with each method's device-hours")
    parser.add_argument("run_dirs", nargs="+", help="run directories, or folders that contain them")
    parser.add_argument("--output", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--csv", type=Path, help="also write the long table (one row per run, split and metric)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlora_lite.reports.results_tables import collect_runs, results_table, run_hours, table_markdown

    runs = collect_runs(args.run_dirs)
    markdown = table_markdown(results_table(runs), run_hours(runs.run_dir))
    print(markdown, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        runs.to_csv(args.csv, index=False)
    return 0
