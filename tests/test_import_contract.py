"""The import contract of DESIGN.md: packages point one way, lazy imports inside functions included.

``mpgym`` (core) imports none of the domains; ``mpgym.cli`` may import all of them (lazily);
``envs`` may use ``bodies`` and ``neural3d``; ``agents`` only ``envs``; ``neural3d`` and
``bodies`` only ``generative``; ``generative`` none. Checked two ways: every ``import`` statement
in the source (so a lazy import inside a function cannot sneak a cycle in), and importing each
package in a fresh interpreter in which the packages it may not use cannot be imported at all.
``make lint`` runs this file too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("envs", "agents", "neural3d", "bodies", "generative")
ALLOWED = {
    "mpgym": set(),
    "envs": {"bodies", "neural3d"},
    "agents": {"envs"},
    "neural3d": {"generative"},
    "bodies": {"generative"},
    "generative": set(),
}


def _layer(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "mpgym" and len(rel.parts) > 1 and rel.parts[1] == "cli":
        return None  # the command line: may import everything
    return rel.parts[0]


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def test_no_module_imports_against_the_contract():
    bad = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            layer = _layer(path)
            if layer is None:
                continue
            for name, line in _imported_packages(path):
                if name in DOMAINS and name != layer and name not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports against DESIGN.md's contract:\n" + "\n".join(bad)


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is blocked: the contract forbids it here')
        return None
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("package", list(ALLOWED))
def test_each_package_imports_with_the_forbidden_ones_blocked(package):
    blocked = sorted(set(DOMAINS) - ALLOWED[package] - {package})
    code = f"BLOCKED = {blocked!r}\n{BLOCKER}\nimport {package}\n"
    if package == "envs":
        code += "import gymnasium as gym\nenvs.TabularModel.from_env('mpgym/GridWorld-v0')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
