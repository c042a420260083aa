import matplotlib.pyplot as plt
import pandas as pd
import pytest

from edgetune import claims
from edgetune.claims import Claim
from edgetune.figures import markdown_table, save_figure, set_theme, write_table
from edgetune.paths import figures_dir


def _figure(data):
    set_theme()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(data.x, data.y, "o-")
    ax.set_title("t")
    return fig


def test_saved_figures_are_byte_stable_with_their_data(tmp_path):
    data = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 0.125]})
    first = save_figure(_figure(data), "motivation", "demo", data, formats=("png", "svg", "pdf"))
    blobs = {ext: (first.parent / f"demo.{ext}").read_bytes() for ext in ("png", "svg", "pdf")}
    plt.close("all")
    save_figure(_figure(data), "motivation", "demo", data, formats=("png", "svg", "pdf"))
    for ext, blob in blobs.items():
        assert (first.parent / f"demo.{ext}").read_bytes() == blob, ext
    assert first == figures_dir("motivation") / "demo.png" and str(tmp_path) in str(first)
    assert blobs["png"].startswith(b"\x89PNG") and b"Matplotlib version" not in blobs["png"]
    assert (first.parent / "demo.csv").read_text() == "x,y\n1,0.5\n2,0.25\n3,0.125\n"


def test_save_figure_rejects_bad_input():
    fig = _figure(pd.DataFrame({"x": [1], "y": [1]}))
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        save_figure(fig, "motivation", "x", pd.DataFrame())
    with pytest.raises(ValueError, match=r"formats \['jpg'\] not supported"):
        save_figure(fig, "motivation", "x", pd.DataFrame({"a": [1]}), formats=("jpg",))
    with pytest.raises(ValueError, match="unknown section 'nope'"):
        save_figure(fig, "nope", "x", pd.DataFrame({"a": [1]}))


def test_tables_as_csv_and_markdown():
    df = pd.DataFrame({"model": ["a|b", "c"], "acc": [0.912345, 1.0]})
    md = write_table(df, "motivation", "t")
    assert md.read_text() == "| model | acc |\n|---|---|\n| a\\|b | 0.9123 |\n| c | 1 |\n"
    assert (md.parent / "t.csv").read_text() == "model,acc\na|b,0.912345\nc,1\n"
    assert markdown_table(df, ".2f").splitlines()[2] == "| a\\|b | 0.91 |"


def _claim(claim="c1", value="0.5", holds=True, profile="smoke", section="motivation"):
    return Claim(section, claim, "paper", value, profile, holds)


def test_claims_ledger_upserts_by_section_claim_profile():
    claims.record([_claim("c1"), _claim("c2", holds=False)])
    claims.record([_claim("c1", "0.7"), _claim("c1", profile="default")])
    ledger = claims.load_ledger()
    assert len(ledger) == 3
    row = ledger[(ledger.claim == "c1") & (ledger.profile == "smoke")].iloc[0]
    assert row.reproduced_value == "0.7" and bool(row.holds)
    assert ledger.holds.tolist().count(False) == 1
    md = (figures_dir() / "claims.md").read_text()
    assert md.startswith("# Claims ledger") and md.count("| NO |") == 1 and md.count("| yes |") == 2
    assert "section,claim,paper_value,reproduced_value,profile,holds,note" in (figures_dir() / "claims.csv").read_text()


def test_claim_validation():
    with pytest.raises(ValueError, match="Claim.section='bogus'"):
        _claim(section="bogus")
    with pytest.raises(TypeError, match="Claim.holds must be a bool, got str"):
        Claim("motivation", "c", "p", "r", "smoke", "yes")
    assert claims.format_ledger().startswith("The claims ledger is empty")
