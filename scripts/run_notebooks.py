"""The main job (``make run``): execute every notebook headless and index what they produced.

Each ``notebooks/NN_*.ipynb`` runs with papermill, in order, on one preset (``cpu`` by default:
the bundled micro SAM on the synthetic analogs), with its working directory in ``notebooks/``
and absolute paths for its data and runs, so everything it writes lands under ``--output-dir``::

    outputs/
      index.md               one row per notebook (status, wall time) and links to every figure
      notebooks/NN_*.ipynb   the executed notebooks, with their outputs
      figures/NN_*_k.png     every figure the notebooks drew, extracted from their outputs
      data/  runs/           the synthetic datasets and the run directories they trained

``--jobs N`` runs N notebooks at a time (``make run`` uses 2), each kernel with ``cpu_count // N``
torch threads; notebooks that need the same run or dataset take turns on it. ``parameters``
(``-p NAME VALUE`` on the command line) are passed to every notebook on
top of those, e.g. the budget knobs ``EPOCHS=1 IMAGE_SIZE=128`` or ``CHECKPOINT=/path/to/sam.pth``;
each notebook gets those its ``parameters`` cell declares. The index records each notebook's host-memory peak:
the largest memory of its kernel process and that process's children (PSS), sampled every 0.5 s.

The notebooks run headless (``CONVLORA_HEADLESS=1``: no progress bars). A notebook also fails when
one of its cells displayed a figure that became no picture (a ``<Figure size ...>`` text where an
image belongs), when a cell wrote to stderr (warnings, progress bars) or when one code cell stores more
than :data:`MAX_OUTPUTS_PER_CELL` outputs (echoed reprs, a display in a loop). A failing notebook does
not stop the others; the job exits non-zero when any failed. An executed notebook keeps no widget metadata
that GitHub cannot show (:func:`drop_stateless_widgets`).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: more outputs than this in one code cell means debris (echoed reprs, a display in a loop); consecutive
#: prints count once, as Jupyter shows them as one block. The course's largest cell shows a line and 4 figures.
MAX_OUTPUTS_PER_CELL = 6
#: the kernels' own log (its notice that a local kernel talks over TCP, the interrupt papermill sends
#: at shutdown) stays out of the job's console; what a cell prints or raises is in the notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
_FIGURE_TEXT = re.compile(r"^<Figure size \d+(\.\d+)?x\d+(\.\d+)? with \d+ Axes>$")
#: the key under which Jupyter saves the widgets' state in a notebook's ``metadata.widgets``.
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def notebook_paths(folder: Path = REPO / "notebooks", only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in reading order (``only``: keep those whose name starts with one of
    the given prefixes, e.g. ``["00", "03"]``)."""
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    return paths


def extract_figures(notebook: Path, figures: Path) -> list[Path]:
    """Write every PNG output of an executed notebook to ``figures/<stem>_<k>.png``."""
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                path = figures / f"{notebook.stem}_{len(written) + 1:02d}.png"
                path.write_bytes(base64.b64decode("".join(png) if isinstance(png, list) else png))
                written.append(path)
    return written


def widget_metadata_problem(notebook: dict) -> str | None:
    """What GitHub refuses in a notebook's (parsed .ipynb JSON) ``metadata.widgets``, or None: widget metadata
    without :data:`WIDGET_STATE`'s ``state`` key. GitHub then shows "Invalid Notebook: the 'state' key is
    missing from 'metadata.widgets'" instead of the notebook (nbconvert's HTML export reads that key whenever
    ``metadata.widgets`` is there; nbformat's schema does not check it). Colab saves such metadata."""
    widgets = notebook.get("metadata", {}).get("widgets")
    if widgets is None:
        return None
    entry = widgets.get(WIDGET_STATE) if isinstance(widgets, dict) else None
    if isinstance(entry, dict) and "state" in entry:
        return None
    return (f"metadata.widgets has no 'state' under {WIDGET_STATE!r}: GitHub shows 'Invalid Notebook' instead "
            "of the notebook (remove metadata.widgets)")


def drop_stateless_widgets(notebook: dict) -> bool:
    """Remove ``metadata.widgets`` when GitHub would refuse it (:func:`widget_metadata_problem`), as GitHub asks;
    returns whether it was removed. Papermill keeps the metadata of the notebook it is given (one saved on Colab
    carries such widgets) and writes its own, with their state, only when widgets ran."""
    if widget_metadata_problem(notebook) is None:
        return False
    del notebook["metadata"]["widgets"]
    return True


def _repair_widget_metadata(path: Path) -> None:
    """Rewrite an executed notebook without the widget metadata GitHub refuses (nbformat's own formatting)."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    if drop_stateless_widgets(notebook):
        nbformat.write(notebook, str(path))


def _shown_outputs(outputs: list[dict]) -> int:
    """How many outputs Jupyter shows for a cell: consecutive outputs of the same stream are one block."""
    streams = [o.get("name") if o["output_type"] == "stream" else None for o in outputs]
    return sum(1 for i, name in enumerate(streams) if name is None or i == 0 or streams[i - 1] != name)


def output_problems(notebook: Path) -> list[str]:
    """What is wrong with an executed notebook's outputs, cell by cell: a figure shown as text instead
    of a picture, anything written to stderr, more than :data:`MAX_OUTPUTS_PER_CELL` outputs."""
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    problems = []
    for number, cell in enumerate(cells, 1):
        outputs = cell.get("outputs", [])
        for output in outputs:
            data = output.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if _FIGURE_TEXT.match(text.strip()) and "image/png" not in data:
                problems.append(f"code cell {number} shows {text.strip()!r} but no image")
        stderr = "".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stderr").strip()
        if stderr:
            problems.append(f"code cell {number} wrote to stderr: {stderr.splitlines()[0][:120]!r}")
        blocks = _shown_outputs(outputs)
        if blocks > MAX_OUTPUTS_PER_CELL:
            problems.append(f"code cell {number} stores {blocks} outputs (more than {MAX_OUTPUTS_PER_CELL})")
    return problems


def _process_memory(process) -> int:
    """Bytes of memory ``process`` (a ``psutil.Process``) holds: its proportional set size (PSS,
    pages shared with other processes split between them) from ``/proc/PID/smaps_rollup`` where the
    system has it (one cheap read), else its resident set."""
    try:
        for line in Path(f"/proc/{process.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process.memory_info().rss


@contextmanager
def children_peak_memory(interval: float = 0.5):
    """Sample the memory of this process's children (a notebook's kernel and the data-loader
    workers it starts; PSS, so pages the workers share with the kernel count once) every
    ``interval`` seconds; yields a dict whose ``"bytes"`` is the peak so far."""
    import psutil

    peak, done = {"bytes": 0}, threading.Event()

    def sample():
        me = psutil.Process()
        while not done.wait(interval):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += _process_memory(child)
                except psutil.Error:  # it ended between listing and reading
                    pass
            peak["bytes"] = max(peak["bytes"], total)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def run_notebook(path: Path, output_dir: Path, parameters: dict, timeout: int, threads: int | None = None) -> dict:
    """Execute one notebook into ``output_dir/notebooks`` and extract its figures; returns ``name``,
    ``ok``, ``seconds``, ``peak_gb`` (host memory of its kernel), ``figures`` and ``error``.
    ``threads``: the torch/OpenMP threads of its kernel (default: the library's own choice)."""
    import papermill

    executed = output_dir / "notebooks" / path.name
    if threads is not None:  # the kernel inherits this process's environment
        os.environ["OMP_NUM_THREADS"] = str(threads)
    start, error = time.perf_counter(), None
    declared = papermill.inspect_notebook(str(path))  # a notebook gets only the parameters it has
    given = {k: v for k, v in parameters.items() if k in declared}
    with children_peak_memory() as peak:
        try:
            papermill.execute_notebook(str(path), str(executed), parameters=given, cwd=str(path.parent),
                                       execution_timeout=timeout, progress_bar=False,
                                       extra_arguments=KERNEL_ARGUMENTS)
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}"
    if executed.exists():
        _repair_widget_metadata(executed)
    if error is None:
        problems = output_problems(executed)
        error = "; ".join(problems) if problems else None
    seconds = time.perf_counter() - start
    figures = extract_figures(executed, output_dir / "figures") if executed.exists() else []
    return dict(name=path.name, ok=error is None, seconds=seconds, peak_gb=peak["bytes"] / 1e9, figures=figures,
                error=error)


#: with several jobs, the notebooks that start first (the longest: 07 trains the 11-class analog 12 epochs, so the
#: other job runs the rest beside it) and last (12 and 13 read the runs of 03-07 back, so they start once those are
#: trained instead of waiting on them); the rest start in reading order. Measured: README, "make run".
START_FIRST = ("07_multiclass.ipynb",)
START_LAST = ("13_conv_lora_on_sam2.ipynb", "12_evidence.ipynb")


def start_order(paths: list[Path]) -> list[Path]:
    """``paths`` in the order a multi-job run starts them: :data:`START_FIRST`, the rest in reading order, then
    :data:`START_LAST` (names not among ``paths`` are skipped)."""
    first = [p for name in START_FIRST for p in paths if p.name == name]
    last = [p for name in START_LAST for p in paths if p.name == name]
    return first + [p for p in paths if p not in first and p not in last] + last


def run_notebooks(output_dir: Path, preset: str = "cpu", only: list[str] | None = None,
                  timeout: int = 1800, folder: Path = REPO / "notebooks", log=print,
                  parameters: dict | None = None, jobs: int = 1) -> list[dict]:
    """Execute the notebooks into ``output_dir`` and write ``index.md``; returns one dict per notebook
    in reading order (see :func:`run_notebook`). ``parameters`` are passed to every notebook besides
    the preset and the data and output folders.

    ``jobs`` > 1 runs that many notebooks at a time, in :func:`start_order`, each kernel with
    ``cpu_count // jobs`` torch threads. Notebooks that need the same run or dataset take turns on it
    (``convlora_lite.locking``): the first trains or generates it, the next reads it back."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from convlora_lite.progress import HEADLESS_ENV

    os.environ[HEADLESS_ENV] = "1"  # the kernels inherit it: no progress bars in the stored outputs
    output_dir = output_dir.resolve()
    (output_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    parameters = dict(PRESET=preset, DATA_ROOT=str(output_dir / "data"), OUTPUT_DIR=str(output_dir / "runs"),
                      **(parameters or {}))
    paths = notebook_paths(folder, only)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    started = time.perf_counter()

    def report(result: dict) -> dict:
        log(f"{result['name']}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']:.0f} s, host peak "
            f"{result['peak_gb']:.1f} GB, {len(result['figures'])} figure(s)"
            + (f": {result['error']}" if result["error"] else ""))
        return result

    if jobs > 1:
        log(f"Running {len(paths)} notebooks (preset {preset}), {jobs} at a time, {threads} thread(s) each ...")
        with ProcessPoolExecutor(jobs) as pool:  # a process per notebook: its own kernel and memory peak
            futures = [pool.submit(run_notebook, path, output_dir, parameters, timeout, threads)
                       for path in start_order(paths)]
            finished = {result["name"]: result for result in map(report, (f.result() for f in as_completed(futures)))}
        results = [finished[path.name] for path in paths]
    else:
        results = []
        for path in paths:
            log(f"Running {path.name} (preset {preset}) ...")
            results.append(report(run_notebook(path, output_dir, parameters, timeout)))
    write_index(output_dir, results, preset, wall_seconds=time.perf_counter() - started, jobs=jobs)
    return results


def results_sections(output_dir: Path) -> list[str]:
    """Markdown lines: for every sweep folder under ``output_dir/runs``, per dataset the table of its finished runs
    (methods x test metrics, mean +- std over seeds, x100) without the runs that never left the all-background
    floor, then what the runs show (:func:`~convlora_lite.reports.readings.index_readings`: those runs named, and
    Conv-LoRA against LoRA seed by seed with what these seeds can detect)."""
    from convlora_lite.errors import DataError
    from convlora_lite.reports.readings import index_readings
    from convlora_lite.reports.results_tables import collect_runs, results_table, table_markdown

    lines = []
    for sweep in sorted((output_dir / "runs").glob("sweep_*")):
        try:
            runs = collect_runs([sweep])
        except DataError:  # no finished run in this sweep
            continue
        lines += [f"## Results: {sweep.relative_to(output_dir)}", ""]
        for dataset, rows in runs.groupby("dataset", sort=True):
            kept, readings = index_readings(rows)
            lines += [f"### {dataset}", ""] + ([table_markdown(results_table(kept))] if len(kept) else [])
            lines += [f"- {sentence}" for sentence in readings] + [""]
    return lines


def write_index(output_dir: Path, results: list[dict], preset: str, wall_seconds: float | None = None,
                jobs: int = 1) -> Path:
    """``index.md``: a table of the notebooks and a gallery of their figures and results tables
    (``wall_seconds``: the whole job's, which ``jobs`` > 1 makes less than the notebooks' sum)."""
    lines = [f"# convlora_lite main job (preset `{preset}`)", "",
             "Offline presets (smoke, cpu) show the bundled micro SAM on synthetic analogs of the paper's "
             "datasets, not the real data or SAM ViT-H.", "",
             "| notebook | status | wall time (s) | host peak (GB) | figures |", "|---|---|---|---|---|"]
    for r in results:
        status = "ok" if r["ok"] else f"FAILED: {r['error']}"
        lines.append(f"| [{r['name']}](notebooks/{r['name']}) | {status} | {r['seconds']:.0f} | {r['peak_gb']:.1f} "
                     f"| {len(r['figures'])} |")
    total = sum(r["seconds"] for r in results)
    if wall_seconds is None or jobs == 1:
        lines.append(f"\nTotal: {total:.0f} s.\n")
    else:
        lines.append(f"\nTotal: {wall_seconds:.0f} s of wall time, {jobs} notebooks at a time "
                     f"(the notebooks' own times add up to {total:.0f} s).\n")
    lines += results_sections(output_dir)
    for r in results:
        if r["figures"]:
            lines += [f"## Figures of {r['name']}", ""]
            lines += [f"![{f.stem}](figures/{f.name})" for f in r["figures"]]
            lines.append("")
    index = output_dir / "index.md"
    index.write_text("\n".join(lines))
    return index


def _literal(text: str):
    """``"1"`` -> 1, ``"None"`` -> None, anything that is not a Python literal -> the text itself."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute every notebook headless and index the results.")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--preset", default="cpu", help="smoke | cpu | colab | paper (default cpu: offline)")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes to run, e.g. 00 03")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="notebooks run at a time (default 1); each kernel gets cpu_count // jobs threads")
    parser.add_argument("--parameter", "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter for every notebook, e.g. -p EPOCHS 1 (values read as Python "
                             "literals when they are one, else as text)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give 1 or more notebooks at a time")
    results = run_notebooks(args.output_dir, args.preset, args.only, args.timeout,
                            parameters={name: _literal(value) for name, value in args.parameter}, jobs=args.jobs)
    if not results:
        print("No notebooks found in notebooks/.", file=sys.stderr)
        return 1
    print(f"Index written to {args.output_dir / 'index.md'}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
