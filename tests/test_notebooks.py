"""The notebooks as committed: outputs cleared, a papermill ``parameters`` cell, and (for the
quickstart) parameters that papermill can really override. Executing every cell at its defaults
is nbval's job (``make notebooks``, part of ``make test``)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks():
    assert ALL, f"no notebooks in {NOTEBOOKS}"
    listed = (NOTEBOOKS / "README.md").read_text()
    for path in ALL:
        assert path.name in listed, f"{path.name} is not listed in notebooks/README.md"


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {i} of {path.name} has outputs: clear them before committing"
        assert cell.execution_count is None, f"code cell {i} of {path.name} has an execution count"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one code cell tagged 'parameters' (papermill)"


@pytest.mark.slow
def test_quickstart_takes_papermill_parameters(tmp_path: Path):
    """A small task with malicious shares injected by papermill: the injected values reach the
    config, a lazy evaluator is slashed, and the token flows still balance."""
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "quickstart.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "00_quickstart.ipynb"), str(out), cwd=str(tmp_path), progress_bar=False, kernel_name="python3",
        parameters={"participants": 10, "evaluators": 5, "rounds": 1,
                    "malicious_participants": ["0.2:scaled"], "malicious_evaluators": ["0.2:lazy"]})
    nb = nbformat.read(out, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert "injected-parameters" in tags[1] and "parameters" in tags[0]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "[0.2:scaled]" in text and "[0.2:lazy]" in text  # the config table shows the injected shares
    assert "next phase: ('score', None)" in text  # one round, then scoring
    assert "slashed" in text
    assert "conserved: True" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quickstart.ipynb"]  # the notebook wrote nothing


@pytest.mark.slow
@pytest.mark.parametrize("name, parameters, message", [
    ("00_quickstart.ipynb", {"participants": "many"}, "participants: must be a positive integer"),
    ("01_contracts_and_one_round.ipynb", {"participants": 2.5}, "parameter participants: expected int"),
    ("02_secure_aggregation.ipynb", {"dropout": 2.0}, "parameter dropout: 2.0 is outside"),
    ("04_threat_model.ipynb", {"evaluator_attack": 7}, "parameter evaluator_attack: expected str"),
])
def test_a_bad_papermill_parameter_fails_at_the_parameters_naming_it(tmp_path: Path, name, parameters, message):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / name
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(NOTEBOOKS / name), str(out), cwd=str(tmp_path), progress_bar=False,
                                   kernel_name="python3", parameters=parameters)
    assert message in str(info.value) and "ConfigError" in str(info.value)
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs))
    assert "injected-parameters" in code[failed - 1].metadata.get("tags", [])  # the cell right after them


APPS = sorted((NOTEBOOKS.parent / "widgets").glob("*.ipynb"))
PRIVATE = re.compile(r"\.(_(?!_)\w+)|\b(?:from|import)\s+din_lab[\w.]*\._\w+")


@pytest.mark.parametrize("path", ALL + APPS, ids=[p.name for p in ALL + APPS])
def test_teaches_with_the_public_api_only(path: Path):
    """No notebook or dashboard app reaches into a private attribute or module (``lab._x``,
    ``din_lab.x._y``): what it teaches a learner can use, and a refactor cannot break silently."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        found = [m.group(0) for m in PRIVATE.finditer(cell.source)]
        assert not found, f"code cell {i} of {path.name} uses private API: {found}"
