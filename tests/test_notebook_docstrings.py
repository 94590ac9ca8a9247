"""The docstring of every library function or class a notebook calls says which notebooks call it, and is
right (as d2l's ``Defined in`` lines point back to the lessons)."""
import ast
import importlib
import inspect
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _code(path: Path) -> str:
    """A notebook's code cells as one module (shell lines ``!pip ...`` kept as comments)."""
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(line.replace("!", "pass  # !", 1) if line.lstrip().startswith("!") else line
                     for line in code.splitlines())


def notebook_uses(root: Path = ROOT) -> dict:
    """Library object (function, class or method) -> the numbers of the notebooks that call it: through
    ``nb.NAME``, ``session.METHOD``, a task's ``TASK.METHOD`` (``TASK = session.task(...)``) or a name
    imported from ``convlora_lite``."""
    from convlora_lite import notebook
    from convlora_lite.notebook import Session, Task

    found: dict = {}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        tree = ast.parse(_code(path))
        imported, tasks = {}, {"task"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("convlora_lite"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    imported[alias.asname or alias.name] = (getattr(module, alias.name, None) or  # or a submodule
                                                            importlib.import_module(f"{node.module}.{alias.name}"))
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "task"):
                tasks |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func, used = node.func, None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner = {"nb": notebook, "session": Session, **{t: Task for t in tasks}}.get(func.value.id)
                used = getattr(owner, func.attr, None) if owner is not None else None
            elif isinstance(func, ast.Name):
                used = imported.get(func.id)
            if (inspect.isfunction(used) or inspect.isclass(used)) and used.__module__.startswith("convlora_lite"):
                found.setdefault(used, set()).add(path.name[:2])
    return {used: sorted(numbers) for used, numbers in found.items()}


def used_in(numbers) -> str:
    """The sentence a docstring carries: ``Used in notebook 08.`` / ``Used in notebooks 00, 02 and 09.``"""
    if len(numbers) == 1:
        return f"Used in notebook {numbers[0]}."
    return f"Used in notebooks {', '.join(numbers[:-1])} and {numbers[-1]}."


USED_IN = re.compile(r"Used in (?:notebook|notebooks|every notebook)[^.]*\.")


def test_every_function_a_notebook_calls_says_which_notebooks_call_it():
    uses = notebook_uses()
    assert len(uses) > 50
    wrong = {}
    for used, numbers in uses.items():
        said = USED_IN.findall(" ".join((inspect.getdoc(used) or "").split()))
        if said != [used_in(numbers)]:
            wrong[f"{used.__module__}.{used.__qualname__}"] = (said, used_in(numbers))
    assert wrong == {}
