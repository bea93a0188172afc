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
