"""Rules of the house that code review alone would miss: only batchsync/gateway/ imports the Azure SDKs."""

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ALLOWED_AZURE_IMPORTERS = REPO_ROOT / "batchsync" / "gateway"
# localbatch is a standalone Batch service that happens to live here; tests drive the SDK on purpose.
NOT_PORTAL_CODE = {"localbatch", "tests"}


def portal_python_files() -> list[Path]:
    """Every .py file of the portal's own packages (top-level folders with an __init__.py) and top-level scripts."""
    files = sorted(REPO_ROOT.glob("*.py"))
    for package in sorted(REPO_ROOT.iterdir()):
        if package.is_dir() and package.name not in NOT_PORTAL_CODE and (package / "__init__.py").exists():
            files += sorted(package.rglob("*.py"))
    return files


def azure_imports(source: str) -> list[str]:
    """Module names starting with `azure` that `source` imports, by statement or by importlib/__import__."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            found.append(node.args[0].value)
    return [name for name in found if name == "azure" or name.startswith("azure.")]


def test_only_the_gateway_imports_azure():
    offenders = {
        str(path.relative_to(REPO_ROOT)): names
        for path in portal_python_files()
        if not path.is_relative_to(ALLOWED_AZURE_IMPORTERS)
        and (names := azure_imports(path.read_text(encoding="utf-8")))
    }

    assert offenders == {}, "Only batchsync/gateway/ may import the Azure SDKs; go through BatchGateway instead"


def test_the_walk_covers_the_portal_packages_and_the_gateway():
    walked = {str(path.relative_to(REPO_ROOT)) for path in portal_python_files()}

    assert {"portal/settings.py", "batchsync/celery.py", "batchsync/gateway/client.py"} <= walked
    assert not any(name.startswith(("localbatch/", "tests/")) for name in walked)
    assert azure_imports((ALLOWED_AZURE_IMPORTERS / "client.py").read_text()), "the gateway itself imports azure"


def test_every_way_of_importing_azure_is_caught():
    source = """
import os, azure.batch
from azure.core.exceptions import AzureError
import importlib
importlib.import_module("azure.storage.blob")
__import__("azure")
from . import azure_helpers
import azurelike
"""
    assert sorted(azure_imports(source)) == ["azure", "azure.batch", "azure.core.exceptions", "azure.storage.blob"]


# --- one place per feature: small modules, no import cycles (issue 10) ----------------------------------------------

LAYERED_PACKAGES = ("portal", "batchsync", "localbatch")
MAX_MODULE_LINES = 600


def layered_modules() -> dict[str, Path]:
    """{dotted module name: path} of portal/, batchsync/ and localbatch/, migrations aside."""
    modules = {}
    for package in LAYERED_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its source, function bodies included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # `from package import module` needs the module; `from module import name`, the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_no_two_modules_import_each_other():
    known = layered_modules()
    graph = {name: imported_modules(name, path, known) for name, path in known.items()}

    assert import_cycles(graph) == []


def test_the_cycle_check_sees_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_600_lines():
    long = {str(path.relative_to(REPO_ROOT)): lines for path in layered_modules().values()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}

    assert long == {}, "split these along their seams"
