"""The architecture, checked: which package may import which, no import cycles, no private names
borrowed across modules. Read from the source (every import, also those inside functions and under
``TYPE_CHECKING``), so a violation fails here before it confuses a reader.

| package        | may import (of ours)                                        |
|----------------|-------------------------------------------------------------|
| `common`       | nothing                                                     |
| `prompts`      | `common`                                                    |
| `providers`    | `common`                                                    |
| `task_builder` | `common`, `prompts`                                         |
| `platforms`    | `common`, `task_builder`                                    |
| `simulator`    | nothing (a stand-in for the providers' servers)             |
| `flows`        | all of the above                                            |
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "prompts": {"common"},
    "providers": {"common"},
    "task_builder": {"common", "prompts"},
    "platforms": {"common", "task_builder"},
    "simulator": set(),
    "flows": {"common", "prompts", "providers", "task_builder", "platforms", "simulator"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, imported module, names taken from it)`` for every import in the file."""
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module, [alias.name for alias in node.names]


def _our_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in ALLOWED for path in sorted((ROOT / package).rglob("*.py"))}


def test_every_package_imports_only_the_layers_below_it() -> None:
    violations = []
    for name, path in _our_modules().items():
        own = name.split(".")[0]
        for line, module, _ in _imports(path):
            top = module.split(".")[0]
            if top in ALLOWED and top != own and top not in ALLOWED[own]:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {module}")
    assert violations == []


def test_no_import_cycles_between_modules() -> None:
    modules = _our_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module, names in _imports(path):
            for target in [module, *(f"{module}.{n}" for n in names)]:
                if target in modules and target != name and modules[target].name != "__init__.py":
                    graph[name].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_private_name_is_borrowed_from_another_module() -> None:
    modules = _our_modules()
    borrowed = [
        f"{path.relative_to(ROOT)}:{line}: {module}.{name}"
        for own, path in modules.items()
        for line, module, names in _imports(path)
        for name in names
        if module in modules and module != own and name.startswith("_") and not name.startswith("__")
    ]
    assert borrowed == []


@pytest.mark.parametrize(
    "module",
    [
        "task_builder.template",
        "task_builder.assemble",
        "platforms.label_studio.tasks",
        "prompts.reader",
        "providers.store",
    ],
)
def test_a_lower_layer_imports_without_flows_or_prefect(module: str) -> None:
    code = (
        f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flows', 'prefect')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
