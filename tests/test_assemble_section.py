import math

import pandas as pd
import pytest

from edgetune.assemble import config, core, ledger


def test_speedup_and_claims_follow_the_measurements():
    curve = pd.DataFrame(
        {
            "method": ["E2E"] * 3 + ["assembling (FT)"] * 2,
            "tflops": [1.0, 2.0, 4.0, 0.5, 1.0],
            "accuracy": [0.3, 0.5, 0.6, 0.55, 0.62],
        }
    )
    assert core.speedup(curve, 0.6) == pytest.approx(4.0)  # E2E spends 4 TFLOPs, assembling reaches 0.6 at 1
    assert math.isnan(core.speedup(curve, 0.7))
    summary = pd.DataFrame(
        {
            "data": [1.0, 0.5, 0.25],
            "gain_pp": [0.5, 2.0, 6.0],
            "assembling_accuracy": [0.8] * 3,
            "e2e_accuracy": [0.795] * 3,
            "assembling_tflops": [1.0] * 3,
            "e2e_tflops": [1.0] * 3,
        }
    )
    rows = ledger.claims_rows("smoke", summary, 4.0)
    assert [r.holds for r in rows] == [True, True, True]
    assert rows[1].reproduced_value == "+0.5 / +2.0 / +6.0 pp at 100% / 50% / 25%"
    worse = ledger.claims_rows("smoke", summary.assign(gain_pp=[-1.0, -2.0, -3.0]), float("nan"))
    assert [r.holds for r in worse] == [False, False, False] and worse[2].reproduced_value == "never reached"


def test_config_validation():
    assert config("smoke").depths == (2, 2) and config("gpu").model == "edge-deep"
    with pytest.raises(ValueError, match=r"depths \(2, 2\) sum to 4, but edge-small has 8 blocks"):
        config("default", depths=(2, 2))
    with pytest.raises(ValueError, match="must start with 1.0"):
        config("smoke", fractions=(0.5,))
