import stat

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from edgetune import claims
from edgetune.claims import Claim
from edgetune.figures import SectionOutputs, config_table, markdown_table, save_figure, set_theme, write_table
from edgetune.paths import figures_dir, runs_dir


def _figure(data):
    set_theme()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(data.x, data.y, "o-")
    ax.set_title("t")
    return fig


def test_saved_figures_are_byte_stable_with_their_data(tmp_path):
    data = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 0.125]})
    first = save_figure(_figure(data), "motivation", "demo", data, formats=("png", "svg", "pdf"), profile="smoke")
    blobs = {ext: (first.parent / f"demo.{ext}").read_bytes() for ext in ("png", "svg", "pdf")}
    plt.close("all")
    save_figure(_figure(data), "motivation", "demo", data, formats=("png", "svg", "pdf"), profile="smoke")
    for ext, blob in blobs.items():
        assert (first.parent / f"demo.{ext}").read_bytes() == blob, ext
    assert first == tmp_path / "figures" / "smoke" / "motivation" / "demo.png"
    assert blobs["png"].startswith(b"\x89PNG") and b"Matplotlib version" not in blobs["png"]
    assert (first.parent / "demo.csv").read_text() == "x,y\n1,0.5\n2,0.25\n3,0.125\n"


def test_save_figure_rejects_bad_input():
    fig = _figure(pd.DataFrame({"x": [1], "y": [1]}))
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        save_figure(fig, "motivation", "x", pd.DataFrame(), profile="smoke")
    with pytest.raises(ValueError, match=r"formats \['jpg'\] not supported"):
        save_figure(fig, "motivation", "x", pd.DataFrame({"a": [1]}), formats=("jpg",), profile="smoke")
    with pytest.raises(ValueError, match="unknown section 'nope'"):
        save_figure(fig, "nope", "x", pd.DataFrame({"a": [1]}), profile="smoke")
    with pytest.raises(ValueError, match="unknown profile 'huge'; expected one of smoke, default, gpu, paper"):
        SectionOutputs("motivation", "huge")


def test_tables_as_csv_and_markdown():
    df = pd.DataFrame({"model": ["a|b", "c"], "acc": [0.912345, 1.0]})
    md = write_table(df, "motivation", "t", profile="smoke")
    assert md.read_text() == "| model | acc |\n|---|---|\n| a\\|b | 0.9123 |\n| c | 1 |\n"
    assert (md.parent / "t.csv").read_text() == "model,acc\na|b,0.912345\nc,1\n"
    assert markdown_table(df, ".2f").splitlines()[2] == "| a\\|b | 0.91 |"


def _claim(claim="c1", value="0.5", holds=True, profile="smoke", section="motivation", note="", figures=()):
    return Claim(section, claim, "paper", value, profile, holds, note, figures)


def test_each_profile_keeps_its_own_ledger_and_a_rerun_replaces_its_section():
    claims.record([_claim("c0"), _claim("old", section="peft")])
    claims.record([_claim("c1", "0.2"), _claim("c2", holds=False), _claim("c3", holds=None, note="one seed")])
    claims.record([_claim("c1", "0.9", profile="default")])
    claims.record(
        [_claim("c1", "0.7", figures=("a", "b")), _claim("c2", holds=False), _claim("c3", holds=None, note="one seed")]
    )
    assert claims.load_ledger("smoke").section.tolist() == ["motivation"] * 3 + ["peft"], "c0 is gone, peft kept"
    ledger = claims.load_ledger("smoke")
    ledger = ledger[ledger.section == "motivation"]
    assert ledger.claim.tolist() == ["c1", "c2", "c3"] and ledger.holds.tolist() == [True, False, None]
    assert ledger.reproduced_value.tolist()[0] == "0.7" and ledger.figures.tolist() == ["a;b", "", ""]
    assert claims.load_ledger("default").reproduced_value.tolist() == ["0.9"]
    md = (figures_dir("smoke") / "claims.md").read_text()
    assert md.startswith("# Claims ledger (smoke profile)")
    assert (md.count("| holds |"), md.count("| refuted |"), md.count("| inconclusive |")) == (2, 1, 1)
    csv = (figures_dir("smoke") / "claims.csv").read_text().splitlines()
    assert csv[0] == ",".join(claims.COLUMNS + claims.EVIDENCE)
    assert csv[3].startswith("motivation,c3,paper,0.5,smoke,,one seed," + "," * 7)  # no estimate: 7 empty cells
    commit, device, versions = next(csv_rows(figures_dir("smoke") / "claims.csv"))[-3:]
    assert commit and device and "torch=" in versions  # every row says where it was made
    assert claims.tally([True, False, None]) == "1/2 (+1 inconclusive)" and claims.tally([None]) == "1 inconclusive"
    assert claims.tally([]) == "—" and claims.tally([True, True]) == "2/2"
    with pytest.raises(ValueError, match="one profile at a time, got \\['default', 'smoke'\\]"):
        claims.record([_claim("c1"), _claim("c1", profile="default")])


def test_claim_validation():
    with pytest.raises(ValueError, match="Claim.section='bogus'"):
        _claim(section="bogus")
    with pytest.raises(ValueError, match="Claim.profile='tiny'"):
        _claim(profile="tiny")
    with pytest.raises(TypeError, match="Claim.holds must be a bool or None, got str"):
        Claim("motivation", "c", "p", "r", "smoke", "yes")
    with pytest.raises(ValueError, match="is inconclusive: its note must say why"):
        _claim(holds=None)
    assert claims.format_ledger(claims.load_ledger("smoke")).startswith("The claims ledger is empty")


def csv_rows(path):
    import csv

    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        yield from rows


def test_a_row_with_an_estimate_carries_its_interval_sample_and_provenance(monkeypatch):
    from edgetune import evidence
    from edgetune.runs import schema

    monkeypatch.setattr(schema, "source_commit", lambda: "0123456789abcdef0123+dirty")
    estimate = evidence.Estimate(1.0, -1.4, 3.3, items=20, seeds=3)
    claims.record(
        [
            Claim("motivation", "c1", "p", "r", "smoke", None, note="straddles", estimate=estimate, unit="points"),
            Claim("motivation", "c2", "p", "r", "smoke", True, estimate=evidence.exact(42), unit="bytes"),
        ]
    )
    row = claims.load_ledger("smoke").iloc[0]
    assert [row[k] for k in ("estimate", "ci_low", "ci_high", "items", "seeds")] == ["1", "-1.4", "3.3", "20", "3"]
    assert row.detectable == "2.35" and row.unit == "points" and row.commit == "0123456789ab+dirty"
    md = (figures_dir("smoke") / "claims.md").read_text()
    assert "| +1 [-1.4, +3.3] points (20 test items, 3 seeds) | ±2.35 |" in md
    assert "| +42 bytes (exact) | ±0 |" in md and "0123456789ab+dirty" in md


def test_a_corrupt_ledger_verdict_is_refused():
    path = figures_dir("smoke") / "claims.csv"
    path.write_text(
        "section,claim,paper_value,reproduced_value,profile,holds,note,figures\nmotivation,c,p,r,smoke,maybe,,\n"
    )
    with pytest.raises(ValueError, match="column 'holds' has \\['maybe'\\]; expected True, False or empty"):
        claims.load_ledger("smoke")


@pytest.mark.parametrize(
    "garbage",
    [b'section,claim\n"unterminated,x\n', b"\xff\xfe\x00garbage", b"", b"a,b\n1,2,3,4,5\n"],
    ids=["open quote", "not UTF-8", "empty", "ragged"],
)
def test_a_garbled_ledger_is_named_with_what_to_do(garbage):
    path = figures_dir("smoke") / "claims.csv"
    path.write_bytes(garbage)
    with pytest.raises(ValueError, match=f"{path}.*(not a readable claims ledger|lacks columns).*git checkout"):
        claims.load_ledger("smoke")


def test_outputs_are_written_with_ordinary_permissions():
    out = SectionOutputs("motivation", "smoke")
    data = pd.DataFrame({"x": [1, 2], "y": [3, 4]})
    paths = [out.figure(_figure(data), "f", data), out.table(data, "t"), out.host_table(data, "timing")]
    claims.record([_claim()])
    for path in [*paths, paths[0].with_suffix(".csv"), figures_dir("smoke") / "claims.csv"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert paths[2] == runs_dir() / "host" / "smoke" / "motivation" / "timing.md"
    assert not (out.folder / "timing.csv").exists(), "host timings stay out of figures/"


def test_host_timings_never_reach_tracked_files():
    out = SectionOutputs("assembling", "smoke")
    df = pd.DataFrame({"data": [1.0, 0.5], "accuracy": [0.7, 0.6], "e2e_seconds": [12.5, 13.1]})
    out.table(df, "efficiency")
    out.figure(_figure(pd.DataFrame({"x": [1], "y": [2]})), "curve", df)
    out.figure(_figure(pd.DataFrame({"x": [1], "y": [2]})), "overhead", df, host=True)
    assert (out.folder / "efficiency.csv").read_text() == "data,accuracy\n1,0.7\n0.5,0.6\n"
    assert "e2e_seconds" not in (out.folder / "curve.csv").read_text()
    host = runs_dir() / "host" / "smoke" / "assembling"
    assert "e2e_seconds" in (host / "efficiency.csv").read_text() and (host / "overhead.png").exists()
    assert not (out.folder / "overhead.png").exists() and not (out.folder / "overhead.csv").exists()


def test_config_table_is_compact():
    from edgetune import motivation

    cfg = motivation.config("smoke")
    text = config_table(cfg).data
    lines = text.splitlines()
    assert lines[0] == "**MotivationConfig**" and lines[2].startswith("| parameter | value |")
    rows = len(lines) - 4
    assert rows == -(-len(cfg.__dataclass_fields__) // 3) and max(map(len, lines)) < 400
    assert f"| train_steps | {cfg.train_steps} |" in text


def _record_many(figures: str, section: str, rounds: int) -> None:
    import os

    os.environ["EDGETUNE_FIGURES"] = figures
    for r in range(rounds):
        claims.record([Claim(section, f"{section} claim {i}", "p", f"round {r}", "smoke", True) for i in range(8)])


def test_concurrent_writers_never_lose_a_ledger_row(tmp_path):
    """Five processes record their own section's eight claims twenty times each, all at once: every row survives
    (without the lock, the read-modify-write of one process overwrote another's rows)."""
    import multiprocessing

    sections = ("motivation", "customization", "retraining", "assembling", "peft")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_many, args=(str(tmp_path), s, 20)) for s in sections]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert [w.exitcode for w in workers] == [0] * len(sections)
    ledger = pd.read_csv(tmp_path / "smoke" / "claims.csv")
    assert len(ledger) == 40 and sorted(ledger.section.unique()) == sorted(sections)
    assert set(ledger.reproduced_value) == {"round 19"}
    assert "claims.csv" in {p.name for p in (tmp_path / "smoke").iterdir()}


def test_a_run_with_overrides_is_labelled_and_keeps_them_beside_its_figures(tmp_path, monkeypatch):
    from edgetune.profiles import check_label, run_label

    monkeypatch.setenv("EDGETUNE_FIGURES", str(tmp_path))
    assert run_label("default") == run_label("default", {}) == run_label("default", {"seed": None}) == "default"
    label = run_label("default", {"train_steps": 1000, "num_domains": 20})
    assert label == run_label("default", {"num_domains": 20, "train_steps": 1000})  # order does not matter
    assert label != run_label("default", {"train_steps": 999}) and check_label(label) == label
    out = SectionOutputs("motivation", "default", {"train_steps": 1000, "num_domains": 20})
    assert out.profile == label and out.folder == tmp_path / label / "motivation"
    assert (tmp_path / label / "overrides.json").read_text() == '{\n  "num_domains": 20,\n  "train_steps": 1000\n}\n'
    assert not (tmp_path / "default").exists()
    SectionOutputs("motivation", "default", {"seed": None})  # nothing set: the plain profile, no overrides.json
    assert not (tmp_path / "default" / "overrides.json").exists()
    for bad in ("defaults", "default+xyz", "default+0123456", "smoke+0123456g"):
        with pytest.raises(ValueError, match="unknown profile"):
            check_label(bad)
    with pytest.raises(ValueError, match="is a run label"):
        run_label(label, {"seed": 1})
    claims.Claim("motivation", "c", "p", "r", label, True)  # a ledger row may carry the label


def test_readme_headline_is_the_committed_ledgers(monkeypatch):
    """README's verdict table is regenerated from figures/default and figures/gpu, never edited by hand."""
    from edgetune.paths import root
    from edgetune.report import HEADLINE_END, HEADLINE_START, headline

    monkeypatch.setenv("EDGETUNE_FIGURES", str(root() / "figures"))
    text = (root() / "README.md").read_text()
    block = text[text.index(HEADLINE_START) + len(HEADLINE_START) : text.index(HEADLINE_END)]
    assert block.strip() == headline().strip(), "run `edgetune claims --headline --readme` and commit README.md"
    assert "| section | claim | default | gpu |" in block


def test_headline_puts_profiles_side_by_side():
    from edgetune import evidence
    from edgetune.report import headline, write_headline

    claims.record([Claim("peft", "q", "p", "0.3 vs 0.2", "default", True)])
    estimate = evidence.Estimate(2.0, 1.0, 3.0, items=50, seeds=3)
    claims.record([Claim("peft", "q", "p", "r", "gpu", False, estimate=estimate, unit="points")])
    claims.record([Claim("motivation", "m", "p", "0.9", "default", None, note="one seed")])
    table = headline()
    assert table.splitlines()[2] == "| motivation | m | **inconclusive** 0.9 | not run |"
    assert (
        table.splitlines()[3]
        == "| peft | q | **holds** 0.3 vs 0.2 | **refuted** +2 [+1, +3] points (50 test items, 3 seeds) |"
    )
    readme = figures_dir("default").parent / "README.md"
    readme.write_text(
        "intro\n<!-- headline: start (edgetune claims --headline --readme) -->\nold\n<!-- headline: end -->\nrest\n"
    )
    assert write_headline(readme) is True and write_headline(readme) is False
    start, end = "<!-- headline: start (edgetune claims --headline --readme) -->", "<!-- headline: end -->"
    assert readme.read_text() == f"intro\n{start}\n{table}\n{end}\nrest\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="has no headline block"):
        write_headline(readme)
