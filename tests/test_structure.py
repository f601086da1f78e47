"""The package's structure: no import cycle between its modules (function-level imports included); the size
limits are in tests/test_size_limits.py."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Repository folder -> import name (tal_pipeline/ links to the top-level folders).
PACKAGES = {"pipeline": "pipeline", "stages": "tal_pipeline.stages", "models": "tal_pipeline.models",
            "storage": "tal_pipeline.storage", "synthetic": "tal_pipeline.synthetic"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for file in sorted((REPO / folder).rglob("*.py")):
            parts = file.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            out[name.removesuffix(".__init__")] = file
    return out


def _imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """This package's modules that `name` imports anywhere in its body (not only at the top)."""
    is_package = file.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its package
                parent = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module -> the module
                target = target.rpartition(".")[0]
            # A package's __init__ is imported with its submodules: only count what is named.
            if target and target != name and target != "pipeline":
                found.add(target)
    return found


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, file, modules) for name, file in modules.items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_task_modules_import_only_the_ones_before_them():
    order = ["pipeline.data_tasks", "pipeline.bapg_tasks", "pipeline.detector_tasks", "pipeline.classification_tasks",
             "pipeline.report_tasks"]
    modules = _modules()
    for i, name in enumerate(order):
        later = set(order[i + 1:])
        assert not _imports(name, modules[name], modules) & later, name


def test_importing_the_pure_code_has_no_luigi_config_or_logging_side_effects(tmp_path):
    # Every module of tal_pipeline (stages, models, storage, synthetic), imported in a fresh interpreter from a
    # folder outside the checkout: neither luigi (so its configuration cannot change) nor the task package is
    # imported, and no handler is added to the root logger or to ours.
    names = sorted(n for n in _modules() if n.startswith("tal_pipeline."))
    probe = f"""
import importlib, logging, sys
ours = ("pipeline", "tal_pipeline", "luigi")
def handlers():
    found = {{"": list(logging.getLogger().handlers)}}
    for name, lg in logging.Logger.manager.loggerDict.items():
        if name.split(".")[0] in ours:
            found[name] = list(getattr(lg, "handlers", []))
    return found
before = handlers()
for name in {names!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "luigi"))
assert not leaked, leaked
after = handlers()
assert all(after[k] == before.get(k, []) for k in after), (before, after)
print(len({names!r}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.strip()) == len(names) > 40


PRELOAD_PROBE = """
import json, sys
from pathlib import Path
import luigi
import pipeline
from pipeline.base import StageTask

OUT = Path(sys.argv[1])


class Upstream(StageTask):
    artifact = "probe_upstream"
    suffix = ""

    def output(self):
        return luigi.LocalTarget(str(OUT / "upstream.json"))

    def run(self):  # in a process luigi forked (workers=2): did torch come with it?
        Path(self.output().path).write_text(json.dumps({"torch_at_start": "torch" in sys.modules}))


class Downstream(Upstream):
    artifact = "probe_downstream"

    def requires(self):
        return Upstream()

    def output(self):
        return luigi.LocalTarget(str(OUT / "downstream.json"))


print(json.dumps({"after_import_pipeline": "torch" in sys.modules}))
ok = luigi.build([Downstream()], workers=2, local_scheduler=True, log_level="WARNING")
print(json.dumps({"ok": ok, "torch_in_scheduler": "torch" in sys.modules}))
"""


def test_the_scheduler_imports_torch_once_for_the_forked_task_processes(tmp_path):
    # `import pipeline` stays light (the CLI's config, synth, evaluate need no torch); a run that will execute stages
    # imports torch in the scheduling process (pipeline.base.preload_task_imports), so luigi's forked task
    # processes (--workers > 1) inherit it instead of importing it once each.
    probe = tmp_path / "probe.py"
    probe.write_text(PRELOAD_PROBE)
    result = subprocess.run([sys.executable, str(probe), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[0] == {"after_import_pipeline": False}
    assert lines[1] == {"ok": True, "torch_in_scheduler": True}
    for task in ("upstream", "downstream"):  # each task process started with torch imported
        assert json.loads((tmp_path / f"{task}.json").read_text()) == {"torch_at_start": True}
