"""Every import points down: the package's import graph (top-level and function-level imports alike)
has no cycle but the deliberate fast/official Conv-LoRA pair, and no layer imports one above it
(``docs/architecture.md``, "Layers")."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convlora_lite"
#: the one cycle kept on purpose: the fast layer selects the official one lazily, which subclasses it.
ALLOWED_CYCLE = {"convlora_lite.peft.conv_lora", "convlora_lite.peft.conv_lora_official"}
#: subpackage -> the subpackages it must never import.
ABOVE = ("training", "models", "peft", "analysis", "reports", "plots", "bench", "inference", "pretrain", "cli",
         "notebook")
NEVER = {
    "peft": ABOVE,
    "data": ABOVE,
    "models": tuple(p for p in ABOVE if p != "peft"),
    "training": ("analysis", "reports", "plots", "bench", "inference", "pretrain", "cli", "notebook"),
    "inference": ("analysis", "reports", "plots", "bench", "pretrain", "cli", "notebook"),
    "analysis": ("reports", "bench", "inference", "pretrain", "cli", "notebook"),
    "reports": ("plots", "bench", "inference", "pretrain", "cli", "notebook"),
    "plots": ("bench", "pretrain", "cli", "notebook"),
    "bench": ("reports", "plots", "inference", "pretrain", "cli", "notebook"),
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pkg import submodule`` counts as the submodule)."""
    modules = _modules()

    def known(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t for t in subs if t in modules] + ([node.module] if any(t not in modules for t in subs)
                                                                else [])
            graph[name] |= {known(t) for t in targets if t.startswith("convlora_lite") and known(t) not in (None, name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert import_graph()["convlora_lite.training.trainer"] >= {"convlora_lite.training.devices"}


def test_no_import_cycle_but_the_conv_lora_pair():
    assert cycles(import_graph()) == [ALLOWED_CYCLE]


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_no_layer_imports_one_above_it(layer):
    prefix = f"convlora_lite.{layer}"
    wrong = sorted((module, target) for module, targets in import_graph().items()
                   if module == prefix or module.startswith(prefix + ".")
                   for target in targets if target.split(".")[1] in set(NEVER[layer]) - {layer})
    assert wrong == []


def test_nothing_outside_pretrain_imports_the_pretraining_scripts():
    wrong = sorted(module for module, targets in import_graph().items()
                   if not module.startswith("convlora_lite.pretrain") and module != "convlora_lite.cli.__init__"
                   and any(t.startswith("convlora_lite.pretrain") for t in targets))
    assert wrong == []
