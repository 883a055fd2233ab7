"""Imports point down only: protocol <- agent <- node <- simnet, and inside node the
command line and benchmarks sit on top of the API, which sits on top of the subsystems.

Every import counts, including the ones deferred into function bodies.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("protocol", "agent", "node", "simnet")

#: What each package may import of ours (itself included).
ALLOWED = {
    "protocol": {"protocol"},
    "agent": {"protocol", "agent"},
    "node": {"protocol", "agent", "node"},
    "simnet": {"protocol", "agent", "node", "simnet"},
}

#: Inside node/: the upper layers, and who may import them.
NODE_UPPER = {
    "bitterbot.node.cli": ("bitterbot.node.cli", "bitterbot.node.bench", "bitterbot.simnet"),
    "bitterbot.node.bench": ("bitterbot.node.cli", "bitterbot.node.bench"),
    # the service runs the API server; nothing else below the API reaches up into it
    "bitterbot.node.api": (
        "bitterbot.node.api",
        "bitterbot.node.cli",
        "bitterbot.node.bench",
        "bitterbot.node.service",
        "bitterbot.simnet",
    ),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return "bitterbot." + ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name.startswith("bitterbot.")]


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_packages_import_only_the_layers_below_them() -> None:
    bad = []
    for path in _sources():
        pkg = path.relative_to(ROOT).parts[0]
        for line, name in _imports(path):
            target = name.split(".")[1]
            if target in PACKAGES and target not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_node_subsystems_do_not_import_the_api_or_the_command_line() -> None:
    bad = []
    for path in _sources():
        me = _module_name(path)
        for line, name in _imports(path):
            for upper, allowed in NODE_UPPER.items():
                if (name == upper or name.startswith(upper + ".")) and not any(
                    me == a or me.startswith(a + ".") for a in allowed
                ):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "node modules that reach up into the API or CLI:\n" + "\n".join(bad)


def test_the_layering_check_sees_deferred_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from bitterbot.node.cli.main import cli\n")
    assert (2, "bitterbot.node.cli.main") in _imports(sample)
