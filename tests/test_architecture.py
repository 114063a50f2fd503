"""The tree's rules: modules stay small, and Kedro stays at the edges of the domain code."""

from __future__ import annotations

import ast

import pytest

from .conftest import PROJECT_ROOT

SRC = PROJECT_ROOT / "src" / "reactive_al"
MAX_LINES = 450
#: Where Kedro may be imported: the pipelines, datasets, project wiring, and the drivers
#: (the comparison driver and the command line) that run Kedro campaigns.
KEDRO_ALLOWED = ("pipelines/", "datasets/", "hooks.py", "settings.py", "pipeline_registry.py",
                 "benchmark.py", "__main__.py")


def _modules():
    return sorted(SRC.rglob("*.py"))


def test_no_module_above_the_line_limit():
    long = {str(p.relative_to(SRC)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules above {MAX_LINES} lines: {long}"


def _imports_kedro(path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "kedro"
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kedro":
            return True
    return False


def test_domain_code_has_no_kedro_import():
    offenders = [str(p.relative_to(SRC)) for p in _modules()
                 if not str(p.relative_to(SRC)).startswith(KEDRO_ALLOWED) and _imports_kedro(p)]
    assert not offenders, f"Kedro imported in domain code: {offenders}"


def test_every_extension_point_has_its_registry():
    """Registered names match the YAML keys users write."""
    from reactive_al.exploration import SAMPLERS
    from reactive_al.selection import STRATEGIES
    from reactive_al.uncertainty import METHODS

    assert {"top_k", "threshold", "max_det", "max_dist", "kmeans", "random"} <= set(STRATEGIES)
    assert {"max_det", "max_dist", "kmeans"} <= {n for n, s in STRATEGIES.items()
                                                 if s.needs_features}
    assert {"neb", "normal_modes"} <= set(SAMPLERS)
    assert {"committee", "gradient_features", "distance"} <= set(METHODS)


def test_campaign_length_comes_from_the_session_parameters(monkeypatch):
    """``--params``/``--env`` reach the registry: it reads the session's parameters."""
    from reactive_al import hooks
    from reactive_al.pipeline_registry import register_pipelines

    def namespaces(pipe) -> set[str]:
        return {n.namespace.split(".")[0] for n in pipe.nodes if n.namespace}

    monkeypatch.setattr(hooks, "SESSION_PARAMETERS", {"active_learning": {"n_iterations": 3}})
    assert namespaces(register_pipelines()["active_learning"]) == {"iter_00", "iter_01",
                                                                    "iter_02"}
    monkeypatch.setattr(hooks, "SESSION_PARAMETERS", None)
    monkeypatch.chdir(PROJECT_ROOT)
    from reactive_al.settings import load_parameters

    n = load_parameters(PROJECT_ROOT)["active_learning"]["n_iterations"]
    found = namespaces(register_pipelines()["active_learning"])
    assert len({ns for ns in found if ns.startswith("iter_")}) == n


@pytest.mark.parametrize("settings", [{}, {"lookahead": True},
                                      {"lookahead": True, "early_first_batch": 0.5}])
def test_every_node_function_has_a_name(monkeypatch, settings):
    """Kedro warns on every run about a node made of a bare ``functools.partial``."""
    from reactive_al import hooks
    from reactive_al.pipeline_registry import register_pipelines

    monkeypatch.setattr(hooks, "SESSION_PARAMETERS",
                        {"active_learning": {"n_iterations": 4, **settings}})
    nameless = {n.name for p in register_pipelines().values() for n in p.nodes
                if not hasattr(n.func, "__name__")}
    assert not nameless
