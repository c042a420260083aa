import json

import nbformat
import pytest

from edgetune import cli
from edgetune.cli import UsageError, convert, main, parse_assignment


@pytest.mark.parametrize(
    ("raw", "type_name", "value"),
    [
        ("7", "Optional[int]", 7),
        ("None", "Optional[int]", None),
        ("2", "float", 2),
        ("0.5", "float", 0.5),
        ("True", "bool", True),
        ("false", "bool", False),
        ("cpu", "Optional[str]", "cpu"),
        ("3", "str", "3"),
    ],
)
def test_convert_follows_the_declared_type(raw, type_name, value):
    out = convert("p", raw, type_name)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize(("raw", "type_name"), [("abc", "Optional[int]"), ("1.5", "int"), ("yes", "bool")])
def test_convert_rejects_the_wrong_type(raw, type_name):
    with pytest.raises(UsageError, match=f"parameter 'p' expects {type_name.replace('[', '.').replace(']', '.')}"):
        convert("p", raw, type_name)


def test_parse_assignment():
    assert parse_assignment(" train_steps = 5 ") == ("train_steps", "5")
    with pytest.raises(UsageError, match="-p expects NAME=VALUE, got 'steps'"):
        parse_assignment("steps")


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    params = nbformat.v4.new_code_cell(
        'profile: str = "default"  # profile\nforce: bool = False  # recompute\nsteps: int = 3  # steps'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    return tmp_path


def test_unknown_or_ill_typed_parameter_exits_2(project, capsys):
    _notebook(project / "notebooks" / cli.NOTEBOOKS["motivation"], "x = steps * 2")
    assert main(["reproduce", "--section", "motivation", "-p", "stepz=4"]) == 2
    err = capsys.readouterr().err
    assert "01_motivation.ipynb has no parameter 'stepz'; it accepts:" in err and "steps: int = 3  steps" in err
    assert main(["reproduce", "--section", "motivation", "-p", "steps=four"]) == 2
    assert "parameter 'steps' expects int, got 'four'" in capsys.readouterr().err
    assert main(["reproduce", "--section", "retraining"]) == 2
    assert "section 'retraining' has no notebook yet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--profile", "huge"])
    assert exit_info.value.code == 2


def test_reproduce_runs_a_notebook_and_writes_the_manifest(project, capsys):
    _notebook(project / "notebooks" / cli.NOTEBOOKS["motivation"], "assert steps == 4 and profile == 'smoke'")
    assert main(["reproduce", "--profile", "smoke", "-p", "steps=4"]) == 0
    manifest = json.loads((project / "runs" / "manifest.json").read_text())
    entry = manifest["sections"]["motivation"]
    assert entry["status"] == "ok" and entry["parameters"] == {"profile": "smoke", "force": False, "steps": 4}
    assert entry["executed_notebook"] == "runs/notebooks/01_motivation.ipynb" and entry["duration_s"] > 0
    assert entry["budget_s"] == 60 and entry["within_budget"] is True
    assert {"torch", "timm", "papermill"} <= set(manifest["versions"]) and "device" in manifest
    assert (project / "runs" / "notebooks" / "01_motivation.ipynb").exists()
    assert "skipping customization" in capsys.readouterr().err


def test_a_failing_cell_is_printed_and_exits_1(project, capsys):
    _notebook(
        project / "notebooks" / cli.NOTEBOOKS["motivation"], "value = steps + 1\nraise ValueError(f'boom {value}')"
    )
    assert main(["reproduce", "--section", "motivation"]) == 1
    err = capsys.readouterr().err
    assert "motivation failed in cell" in err and "raise ValueError(f'boom {value}')" in err
    assert "ValueError: boom 4" in err and str(project / "runs" / "notebooks" / "01_motivation.ipynb") in err
    manifest = json.loads((project / "runs" / "manifest.json").read_text())
    assert manifest["sections"]["motivation"]["status"] == "failed"


def test_claims_command_prints_the_ledger(capsys):
    assert main(["claims"]) == 0
    assert "ledger is empty" in capsys.readouterr().out


def test_manifest_handles_a_runs_folder_outside_the_project(project, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("EDGETUNE_RUNS", str(elsewhere))
    _notebook(project / "notebooks" / cli.NOTEBOOKS["motivation"], "x = 1")
    assert main(["reproduce", "--section", "motivation"]) == 0
    entry = json.loads((elsewhere / "manifest.json").read_text())["sections"]["motivation"]
    assert entry["executed_notebook"] == str(elsewhere / "notebooks" / "01_motivation.ipynb")
    assert entry["notebook"] == "notebooks/01_motivation.ipynb"
