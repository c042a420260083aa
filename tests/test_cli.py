import json

import nbformat
import pytest

from edgetune import cli
from edgetune.cli import UsageError, convert, main, parse_assignment
from edgetune.profiles import run_label


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
        ("[42,43]", "Optional[list]", [42, 43]),
        ("42,43", "Optional[list]", [42, 43]),
        ("[1, 2]", "list[int] | None", [1, 2]),
        ("(0.5, 1)", "tuple[float]", (0.5, 1)),
        ("['a', 'b']", "list[str]", ["a", "b"]),
    ],
)
def test_convert_follows_the_declared_type(raw, type_name, value):
    out = convert("p", raw, type_name)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize(
    ("raw", "type_name"),
    [
        ("abc", "Optional[int]"),
        ("1.5", "int"),
        ("yes", "bool"),
        ("[1, 'x']", "list[int]"),
        ("[True]", "list[int]"),
        ("[__import__('os').system('true')]", "Optional[list]"),
        ("{1: 2}", "list"),
    ],
)
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
        "kernelspec": {"name": "edgetune", "display_name": "Python (edgetune)", "language": "python"},
        "language_info": {"name": "python"},
    }
    params = nbformat.v4.new_code_cell(
        'profile: str = "default"  # profile\nforce: bool = False  # recompute\noverrides: dict = {}  # config fields'
    )
    params.metadata["tags"] = ["parameters"]
    body = "steps = overrides.get('train_steps', 3)\n" + body  # a field of the motivation config
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
    assert "no section run here has a parameter 'stepz'; the config fields are:" in err
    assert "  motivation: batch_size, " in err and " train_steps, " in err
    assert main(["reproduce", "--section", "motivation", "-p", "train_steps=four"]) == 2
    assert "parameter 'train_steps' expects int, got 'four'" in capsys.readouterr().err
    assert main(["reproduce", "--section", "motivation", "-p", "train_steps=-5"]) == 2  # the config's own check
    assert "motivation: train_steps=-5 must be at least 1" in capsys.readouterr().err
    assert not (project / "runs").exists(), "nothing ran and nothing was written"
    assert main(["reproduce", "--section", "retraining"]) == 2
    assert "section 'retraining' has no notebook yet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--profile", "huge"])
    assert exit_info.value.code == 2


def test_a_missing_or_damaged_placed_input_exits_2_before_any_kernel(project, capsys):
    """A checkpoint or dataset the config points at is opened before anything runs: exit 2 naming the file."""
    from edgetune.models import build_vit
    from edgetune.models.load import save_timm_checkpoint

    _notebook(project / "notebooks" / cli.NOTEBOOKS["motivation"], "x = steps * 2")
    weights, _ = save_timm_checkpoint(build_vit("edge-tiny", 10), project / "model" / "tiny.safetensors")
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    assert main(["reproduce", "--section", "motivation", "-p", f"model={weights}"]) == 2
    err = capsys.readouterr().err
    assert f"motivation: {weights} is not a readable weights file" in err and "copy it again" in err
    assert main(["reproduce", "--section", "motivation", "-p", "model=model/nothing-here"]) == 2
    assert "nothing-here" in capsys.readouterr().err
    assert main(["reproduce", "--section", "motivation", "-p", "data=cifar100"]) == 2
    err = capsys.readouterr().err
    assert "motivation: " in err and "CIFAR-100" in err and str(project / "data") in err
    assert not (project / "runs").exists(), "no kernel started, nothing written"


def _manifests(runs):
    return [json.loads(p.read_text()) for p in sorted((runs / "reproductions").glob("*.json"))]


CLAIM_CELL = (
    "from edgetune import claims\n"
    "from edgetune.profiles import run_label\n"
    "label = run_label(profile, overrides)\n"
    "claims.record([claims.Claim('motivation', 'c1', 'p', f'{steps}', label, steps < 5, figures=('f',)),\n"
    "               claims.Claim('motivation', 'c2', 'p', 'r', label, None, note='needs two seeds')])"
)


def test_reproduce_runs_a_notebook_and_writes_manifest_report_and_summary(project, capsys):
    _notebook(
        project / "notebooks" / cli.NOTEBOOKS["motivation"], "assert steps == 4 and profile == 'smoke'\n" + CLAIM_CELL
    )
    assert main(["reproduce", "--profile", "smoke", "-p", "train_steps=4"]) == 0
    label = run_label("smoke", {"train_steps": 4})
    assert label.startswith("smoke+") and len(label) == len("smoke+") + 8  # never the plain profile
    (manifest,) = _manifests(project / "runs")
    assert manifest["id"].endswith("-smoke") and manifest["profile"] == "smoke" and manifest["finished"]
    entry = manifest["sections"]["motivation"]
    assert entry["status"] == "ok" and entry["label"] == label
    assert entry["parameters"] == {"profile": "smoke", "force": False, "overrides": {"train_steps": 4}}
    assert entry["executed_notebook"] == f"runs/notebooks/{label}/01_motivation.ipynb" and entry["duration_s"] > 0
    assert entry["budget_s"] == 60 and entry["within_budget"] is True
    assert [c["holds"] for c in entry["claims"]] == [True, None] and entry["files"].keys() == set()
    assert {"torch", "timm", "papermill"} <= set(manifest["versions"]) and "device" in manifest
    out, err = capsys.readouterr()
    assert "skipping customization" in err and "[1/1] motivation (smoke profile)" in err
    summary = out.splitlines()
    assert any(line.split()[:3] == ["motivation", "ok", entry_time(entry)] for line in summary), out
    assert any(line.endswith("as " + label + ' (overrides: {"train_steps": 4})') for line in summary), out
    assert f"report:   figures/{label}/REPORT.md" in out
    report = (project / "figures" / label / "REPORT.md").read_text()
    assert "| [motivation](#motivation) | ok |" in report and "| 1/1 (+1 inconclusive) |" in report
    assert "### ✅ holds: c1" in report and "### ➖ inconclusive: c2" in report and "*needs two seeds*" in report
    assert "Parameters set on top of the profile: `train_steps=4`" in report
    assert f"[`runs/notebooks/{label}/01_motivation.ipynb`](../../runs/notebooks/{label}/01_motivation.ipynb)" in report
    assert "| [customization](#customization) | not run here |" in report
    assert not (project / "figures" / "smoke").exists(), "a run with overrides writes nothing as the plain profile"
    assert not (project / "figures" / "default").exists(), "a smoke run writes nothing for another profile"


def entry_time(entry):
    return f"{entry['duration_s']:.1f}"


def test_compare_shows_what_changed_between_two_reproductions(project, capsys):
    nb = project / "notebooks" / cli.NOTEBOOKS["motivation"]
    _notebook(
        nb,
        CLAIM_CELL + "\nfrom edgetune.paths import figures_dir\n"
        "(figures_dir(label, 'motivation') / 'f.csv').write_text(str(steps))",
    )
    assert main(["reproduce", "--profile", "smoke"]) == 0
    assert main(["reproduce", "--profile", "smoke", "-p", "train_steps=7"]) == 0
    first, second = _manifests(project / "runs")
    assert first["sections"]["motivation"]["files"] != second["sections"]["motivation"]["files"]
    capsys.readouterr()
    assert main(["compare"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# {first['id']} → {second['id']}")
    assert "| motivation | ok → ok |" in text and "| 1 | 1 |" in text
    assert "- c1: holds → refuted; 3 → 7" in text and "- `f.csv` changed" in text
    assert main(["compare", first["id"], "nope"]) == 2
    assert "no reproduction 'nope'" in capsys.readouterr().err


def test_a_failing_cell_is_printed_and_exits_1(project, capsys):
    _notebook(
        project / "notebooks" / cli.NOTEBOOKS["motivation"], "value = steps + 1\nraise ValueError(f'boom {value}')"
    )
    assert main(["reproduce", "--section", "motivation"]) == 1
    err = capsys.readouterr().err
    assert "motivation failed in cell" in err and "raise ValueError(f'boom {value}')" in err
    assert (
        "ValueError: boom 4" in err and str(project / "runs" / "notebooks" / "default" / "01_motivation.ipynb") in err
    )
    (manifest,) = _manifests(project / "runs")
    assert manifest["sections"]["motivation"]["status"] == "failed"
    assert "| [motivation](#motivation) | failed |" in (project / "figures" / "default" / "REPORT.md").read_text()


def test_claims_command_filters_the_ledger(capsys):
    from edgetune.claims import Claim, record

    assert main(["claims"]) == 0
    assert "No claims match in " in (out := capsys.readouterr().out) and "figures/default/claims.csv (run" in out
    record([Claim("motivation", "m" * 80, "p", "r", "smoke", True), Claim("peft", "q", "p", "r", "smoke", False)])
    assert main(["claims", "--profile", "smoke", "--verdict", "refuted"]) == 0
    out = capsys.readouterr().out
    assert "| peft | q |" in out and "| motivation |" not in out
    assert main(["claims", "--profile", "smoke", "--section", "motivation"]) == 0
    out = capsys.readouterr().out
    assert "m" * 59 + "…" in out and "m" * 60 not in out and "| peft |" not in out
    assert main(["claims", "--profile", "smoke", "--section", "motivation", "--full"]) == 0
    assert "m" * 80 in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("edgetune 0.1")


def test_manifest_handles_a_runs_folder_outside_the_project(project, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("EDGETUNE_RUNS", str(elsewhere))
    _notebook(project / "notebooks" / cli.NOTEBOOKS["motivation"], "x = 1")
    assert main(["reproduce", "--section", "motivation"]) == 0
    entry = _manifests(elsewhere)[0]["sections"]["motivation"]
    assert entry["executed_notebook"] == str(elsewhere / "notebooks" / "default" / "01_motivation.ipynb")
    assert entry["notebook"] == "notebooks/01_motivation.ipynb"


def test_an_interrupted_reproduction_still_leaves_manifest_and_report(project, monkeypatch, capsys):
    import papermill

    for section in ("motivation", "customization"):
        _notebook(project / "notebooks" / cli.NOTEBOOKS[section], "x = 1")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert main(["reproduce", "--profile", "smoke"]) == 130
    (manifest,) = _manifests(project / "runs")
    assert manifest["finished"] and manifest["sections"]["motivation"]["status"] == "interrupted"
    assert manifest["sections"]["motivation"]["claims"] is None
    assert manifest["sections"]["customization"]["status"] == "not run"
    out = capsys.readouterr().out
    assert "motivation     interrupted" in out and "customization  not run" in out
    assert "| [motivation](#motivation) | interrupted |" in (project / "figures" / "smoke" / "REPORT.md").read_text()


def test_a_failed_run_is_not_credited_with_older_claims(project, capsys):
    nb = project / "notebooks" / cli.NOTEBOOKS["motivation"]
    _notebook(nb, CLAIM_CELL)
    assert main(["reproduce", "--profile", "smoke"]) == 0
    _notebook(nb, "raise RuntimeError('broken')")
    assert main(["reproduce", "--profile", "smoke"]) == 1
    ok, failed = _manifests(project / "runs")
    assert len(ok["sections"]["motivation"]["claims"]) == 2 and failed["sections"]["motivation"]["claims"] is None
    report = (project / "figures" / "smoke" / "REPORT.md").read_text()
    assert "| [motivation](#motivation) | failed |" in report
    assert f"from reproduction {ok['id']}, the last that finished**: this one did not finish" in report


def test_compare_reads_incomplete_manifests_and_refuses_others(tmp_path, capsys):
    a, b, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    a.write_text(json.dumps({"sections": {"motivation": {"status": "ok", "parameters": {"steps": 1}}}}))
    b.write_text(json.dumps({"sections": {"motivation": {"status": "failed", "claims": [{"claim": "c"}]}}}))
    bad.write_text("[1, 2")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# a → b") and "| motivation | ok → failed |" in out
    assert "- parameter steps: 1 → '—'" in out and "- claim added: c" in out
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"sections": {"peft": {"status": "ok", "files": {"x.csv": "1"}}}}))
    assert main(["compare", str(a), str(c)]) == 0
    out = capsys.readouterr().out
    assert "| motivation | ok → not run | — → — | — | — |" in out and "removed" not in out
    assert main(["compare", str(a), str(bad)]) == 2
    assert "cannot compare" in capsys.readouterr().err
    assert main(["compare"]) == 2
    assert "compare needs two reproductions of one profile" in capsys.readouterr().err


def test_publish_records_the_claims_and_shows_only_the_sections_rows(capsys):
    """The claims cell of every notebook: one call records and renders."""
    from edgetune.claims import Claim, publish, record

    record([Claim("peft", "other", "p", "r", "smoke", False)])
    shown = publish([Claim("motivation", "depth saturates", "yes", "yes", "smoke", True)], "motivation")
    assert "| depth saturates | yes | yes |" in shown.data and "other" not in shown.data
    assert main(["claims", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "depth saturates" in out and "| peft | other |" in out  # both rows are in the ledger
    publish([Claim("motivation", "measured elsewhere", "p", "r", "smoke", True)], "motivation", device="NVIDIA H200")
    from edgetune.claims import load_ledger

    assert load_ledger("smoke").set_index("claim").device["measured elsewhere"] == "NVIDIA H200"


def test_claims_verdict_filter_knows_na(capsys):
    from edgetune.claims import Claim, record

    record(
        [Claim("peft", "spread", "p", "r", "smoke", None, note="one seed"), Claim("peft", "q", "p", "r", "smoke", True)]
    )
    assert main(["claims", "--profile", "smoke", "--verdict", "inconclusive"]) == 0
    out = capsys.readouterr().out
    assert "| peft | spread |" in out and "| inconclusive |" in out and "| peft | q |" not in out


def test_none_is_never_the_string_none():
    assert convert("device", "None", "Optional[str]") is None
    assert convert("seeds", "None", "Optional[list[int]]") is None
    with pytest.raises(UsageError, match=r"expects Optional\[list\[int\]\], got '\[1.5\]'"):
        convert("seeds", "[1.5]", "Optional[list[int]]")


def test_the_kernel_must_be_this_environment(tmp_path, monkeypatch):
    import sys

    from edgetune import kernel

    assert kernel.same_environment(sys.prefix + "/bin/python")
    assert not kernel.same_environment(str(tmp_path / "other-venv" / "bin" / "python"))
    assert not kernel.same_environment("python")  # a bare name: whichever python is on PATH
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    spec = tmp_path / "jupyter" / "kernels" / "edgetune"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {"argv": ["/elsewhere/bin/python", "-m", "ipykernel_launcher"], "display_name": "x", "language": "python"}
        )
    )
    assert kernel.ensure_kernel(quiet=True) == sys.executable
    assert json.loads((spec / "kernel.json").read_text())["argv"][0] == sys.executable


def test_progress_is_text_for_the_cli_and_auto_elsewhere(monkeypatch):
    import tqdm.std

    from edgetune.progress import TEXT_ENV, progress

    monkeypatch.setenv(TEXT_ENV, "text")
    bar = progress(range(3), disable=True)
    assert type(bar) is tqdm.std.tqdm
    monkeypatch.delenv(TEXT_ENV)
    assert isinstance(progress(range(3), disable=True), tqdm.std.tqdm)  # tqdm.auto: text outside a kernel


def _as_cli(value) -> str:
    """How a user writes `value` after `-p name=`."""
    if isinstance(value, tuple | list):
        return "[" + ",".join(repr(v) if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


@pytest.mark.parametrize("profile", ["smoke", "default", "gpu", "paper"])
def test_every_field_of_every_section_is_reachable_with_p(profile):
    """Sections × profiles × fields: `-p name=value` reaches every config field, typed as the config declares."""
    from edgetune.cli import resolve_overrides
    from edgetune.sections import SECTIONS_TABLE

    reached = 0
    for section in SECTIONS_TABLE:
        cfg = section.config(profile)
        for name in section.config_fields():
            value = getattr(cfg, name)
            if value is None:
                continue  # None means "keep the profile's value"
            got = resolve_overrides([section.name], profile, [f"{name}={_as_cli(value)}"])[section.name][name]
            assert got == (list(value) if isinstance(value, tuple) else value), (section.name, name, got)
            assert getattr(section.config(profile, **{name: got}), name) == value
            reached += 1
    assert reached >= 135  # of 142 fields; the rest are None in this profile


def test_a_parameter_applies_to_the_sections_that_have_it():
    from edgetune.cli import resolve_overrides

    both = resolve_overrides(["motivation", "retraining"], "smoke", ["seed=3", "num_domains=12"])
    assert both == {"motivation": {"seed": 3, "num_domains": 12}, "retraining": {"seed": 3, "num_domains": 12}}
    only = resolve_overrides(["motivation", "peft"], "smoke", ["seeds=[1,2]", "train_steps=9"])
    assert only == {"motivation": {"train_steps": 9}, "peft": {"seeds": [1, 2]}}  # lists: papermill injects them
    from edgetune import strato

    assert strato.config("smoke", **only["peft"]).seeds == (1, 2)
    with pytest.raises(UsageError, match="peft: seeds must not be empty"):
        resolve_overrides(["peft"], "smoke", ["seeds=[]"])


BAD_VALUES = {  # per section: -p values that must stop before anything runs
    "motivation": [
        "seed=99999999999999999999",
        "seed=-1",
        "train_steps=-5",
        "train_steps=1000000000000",
        "num_domains=0",
        "lr=inf",
        "lr=nan",
        "batch_size=0",
        "retrain_steps=-5",
        "lr=0",
        "lr=1000000",
        "weight_decay=-0.1",
        "split_fraction=1.5",
        "dirichlet_alphas=[0.1,0]",
    ],
    "customization": [
        "finetune_steps=-1",
        "rounds=1000000000000",
        "seed=4294967296",
        "batch_size=0",
        "device_fraction=0",
        "hidden_weight=-1",
        "elastic_lr=-0.001",
    ],
    "retraining": [
        "kb_steps=-5",
        "window_iterations=-3",
        "sparsity=nan",
        "test_size=0",
        "cap=2",
        "kd_weight=-1",
        "budget_factors=[0.5,-1]",
        "kb_lr=0",
    ],
    "assembling": [
        "pt_steps=-1",
        "ft_steps=1000000000000",
        "lr=inf",
        "depths=[]",
        "pt_steps=0",
        "batch_size=0",
        "depths=[0,4]",
    ],
    "peft": ["steps=-5", "seeds=[-1]", "lam=nan", "episodes=1000000000000", "tasks=[]", "lam=-1", "lr=0"],
}


@pytest.mark.parametrize("section", BAD_VALUES)
def test_bad_values_exit_2_before_anything_runs(section, capsys):
    import subprocess

    from edgetune.paths import root
    from edgetune.sections import section as find

    before = subprocess.run(["git", "status", "--porcelain"], cwd=root(), capture_output=True, text=True).stdout
    for assignment in BAD_VALUES[section]:
        name = assignment.split("=")[0]
        assert name in find(section).config_fields(), assignment
        assert main(["reproduce", "--section", section, "--profile", "smoke", "-p", assignment]) == 2, assignment
        err = capsys.readouterr().err
        assert f"edgetune: error: {section}: " in err and name.rstrip("s") in err, (assignment, err)
    after = subprocess.run(["git", "status", "--porcelain"], cwd=root(), capture_output=True, text=True).stdout
    assert after == before, "a refused run changed tracked files"


def test_typed_values_are_normalized_as_the_config_declares():
    from edgetune.cli import resolve_overrides

    as_int = resolve_overrides(["assembling"], "smoke", ["lr=1", "fractions=[1,0.5]"])["assembling"]
    as_float = resolve_overrides(["assembling"], "smoke", ["lr=1.0", "fractions=[1.0,0.5]"])["assembling"]
    assert as_int == as_float == {"lr": 1.0, "fractions": [1.0, 0.5]} and type(as_int["lr"]) is float
    assert run_label("smoke", as_int) == run_label("smoke", as_float)  # one config, one label, one cache key
    assert resolve_overrides(["peft"], "smoke", ["tasks=gsm8k,mmlu"])["peft"] == {"tasks": ["gsm8k", "mmlu"]}
    assert resolve_overrides(["peft"], "smoke", ["tasks=['humaneval']"])["peft"] == {"tasks": ["humaneval"]}


def test_claims_reads_a_labelled_ledger(project, capsys):
    from edgetune import claims

    label = run_label("smoke", {"train_steps": 4})
    claims.record([claims.Claim("motivation", "c1", "p", "r", label, True)])
    assert main(["claims", "--profile", label]) == 0 and "c1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["claims", "--profile", "smoke+nothex!"])
    assert e.value.code == 2 and "unknown profile 'smoke+nothex!'" in capsys.readouterr().err
