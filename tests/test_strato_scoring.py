"""Honest scores on the real file formats: a model that answers with the reference answers scores 100 on every task,
through the real generation loop and the real graders, with the generation budget the data sets; GSM8K's official
strict match is kept apart from the lenient one; HumanEval can be scored on all 164 published problems."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch

from edgetune.strato import lm, tasks
from edgetune.strato.config import PeftComparisonConfig, RunConfig, TaskSection, packaged_humaneval
from edgetune.strato.lm import Score, generation_budget, grade, score
from edgetune.strato.spec import Example
from edgetune.strato.train import all_items, scored_items

CPU = torch.device("cpu")
CONTEXT = 4096  # room for the longest real HumanEval prompt plus its budget in this small tokenizer's tokens


@pytest.fixture(scope="module")
def tokenizer():
    return lm.train_tokenizer(tasks.pretraining_corpus(documents=300), vocab_size=512)


class Parrot(torch.nn.Module):
    """A stand-in LM that continues every known prompt with that example's reference answer, then eos, through the
    same calls the scorer makes: whole rows for the letter choice, a left-padded first step then one token per row
    with the KV cache for greedy generation."""

    def __init__(self, examples, tokenizer):
        super().__init__()
        self.vocab, self.eos = len(tokenizer), tokenizer.eos_token_id
        self.answers = {}
        for ex in examples:
            prompt = tuple(lm._prompt_ids(tokenizer, ex.prompt, CONTEXT))
            self.answers[prompt] = [*lm._tokens(tokenizer, ex.answer), self.eos]
        self.rows: list[list[int]] = []
        self.steps = 0

    def _next(self, row: list[int], k: int) -> int:
        answer = self.answers[tuple(row)]
        return answer[k] if k < len(answer) else self.eos

    def forward(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        batch, width = input_ids.shape
        logits = torch.zeros(batch, width, self.vocab)
        if not use_cache:  # letter choice: each row is prompt + a candidate letter; favour the reference letter
            for i in range(batch):
                ids = input_ids[i][attention_mask[i].bool()].tolist()
                prompt = next(p for p in self.answers if tuple(ids[: len(p)]) == p)
                for j in range(len(prompt), len(ids) + 1):
                    if j - 1 < width:
                        logits[i, j - 1, self._next(list(prompt), j - len(prompt))] = 30.0
            return SimpleNamespace(logits=logits)
        if kwargs.get(lm.CACHE) is None:  # the first step: the left-padded prompts
            self.rows = [input_ids[i][attention_mask[i].bool()].tolist() for i in range(batch)]
            self.steps = 0
        else:
            self.steps += 1
        for i, row in enumerate(self.rows):
            logits[i, -1, self._next(row, self.steps)] = 30.0
        return SimpleNamespace(logits=logits, **{lm.CACHE: ("cached", self.steps)})


def _parrot_score(task, tokenizer, examples, budget):
    return score(
        Parrot(examples, tokenizer), task.kind, examples, tokenizer, context=CONTEXT, device=CPU, max_new_tokens=budget
    )


def test_reference_answers_score_100_on_all_164_real_humaneval_problems(tokenizer):
    task = tasks.read_humaneval(packaged_humaneval())
    everything = all_items(task)
    assert [len(task.train), len(task.dev), len(task.test)] == [132, 16, 16] and len(everything) == 164
    budget = generation_budget(everything, tokenizer)
    longest = max(len(lm._tokens(tokenizer, ex.answer)) for ex in everything)
    assert budget == -(-3 * longest // 2) + 16  # 1.5 × the longest canonical solution, + 16
    assert _parrot_score(task, tokenizer, everything, budget) == Score(100.0, 164)
    capped = _parrot_score(task, tokenizer, everything, 32)  # the old fixed budget cut most solutions short
    assert capped.items == 164 and capped.points < 25


def _gsm8k_record(a: int, b: int) -> dict:
    return {
        "question": f"Natalia sold clips to {a} friends in April, and then she sold {b} more in May. How many?",
        "answer": f"In April she sold {a}.\nIn May she sold <<{a}+{b}={a + b}>>{a + b} more than... "
        f"so {a} + {b} = <<{a}+{b}={a + b}>>{a + b} in all, which is {a + b:,} clips.\n#### {a + b:,}",
    }


def test_reference_answers_score_100_on_real_format_gsm8k_strict_and_flexible(tmp_path, tokenizer):
    root = tmp_path / "gsm8k"
    root.mkdir()
    for name, pairs in (("train.jsonl", [(3, 4), (48, 24), (5, 900)]), ("test.jsonl", [(1200, 34), (7, 8)])):
        (root / name).write_text("".join(json.dumps(_gsm8k_record(a, b)) + "\n" for a, b in pairs))
    task = tasks.read_gsm8k(root, dev=1)
    assert [ex.reference for ex in task.test] == ["1234", "15"]
    budget = generation_budget(all_items(task), tokenizer)
    assert _parrot_score(task, tokenizer, task.test, budget) == Score(100.0, 2, flexible=100.0)


def test_gsm8k_strict_match_needs_the_marker_and_flexible_is_reported_apart():
    examples = [Example("Q", "", r) for r in ("18", "1200", "7", "5", "3")]
    outputs = [
        "3 + 15 = 18\n#### 18",  # strict and flexible
        "It costs 1,200 dollars.",  # flexible only: the official grader needs "#### "
        "#### 8 not 7",  # strict reads 8 (wrong); flexible the last number, 7
        "The answer is 5.",  # flexible only
        "####3",  # flexible only: the official pattern needs the space
    ]
    assert grade("number", examples, outputs) == Score(20.0, 5, flexible=100.0)
    assert [tasks.strict_number(t) for t in outputs] == ["18", None, "8", None, None]
    assert tasks.strict_number("#### 1,234.50") == "1234.5" and tasks.strict_number("#### -7.") == "-7"
    assert tasks.flexible_number("no digits") is None and tasks.flexible_number("costs $2.50") == "2.5"


def test_reference_letters_score_100_on_real_format_mmlu(tmp_path, tokenizer):
    for split, rows in (("dev", 2), ("val", 2), ("test", 5)):
        (tmp_path / "mmlu" / split).mkdir(parents=True)
        with (tmp_path / "mmlu" / split / f"anatomy_{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(
                [f"Which bone is number {i}?", "femur", "tibia", "ulna", "radius", "ABCD"[i % 4]] for i in range(rows)
            )
    task = tasks.read_mmlu(tmp_path / "mmlu")
    assert _parrot_score(task, tokenizer, task.test, 1) == Score(100.0, 5)


def test_score_on_all_scores_every_split_and_is_validated():
    task = tasks.embedded_task("humaneval", train=20, dev=5, test=7)
    assert len(scored_items(task, "test")) == 7 and len(scored_items(task, "all")) == 32
    with pytest.raises(ValueError, match=r"task.score_on='dev'; expected one of \('test', 'all'\)"):
        RunConfig(task=TaskSection(score_on="dev"))
    with pytest.raises(ValueError, match="training.max_new_tokens=0; expected None"):
        RunConfig.__new__(RunConfig).__init__(training=type(RunConfig().training)(max_new_tokens=0))
    run = PeftComparisonConfig(score_on="all", max_new_tokens=64).run_config("humaneval", 42, "lora")
    assert (run.task.score_on, run.training.max_new_tokens) == ("all", 64)


# what a finished PEFT run's result records besides its score (the tables read these)
RUN_METRICS = dict(
    params_adapter_final=100,
    params_trainable_peak=100,
    train_flops=1e9,
    flops_per_step=1e7,
    step_memory_bytes=2**20,
    train_s=1.0,
    schedule_s=0.0,
    resizes=0,
)


def test_tables_and_claims_carry_the_item_count_beside_every_score():
    import pandas as pd

    from edgetune.strato import core, ledger

    metrics = dict(RUN_METRICS)
    rows = []
    for task, items in (("gsm8k", 96), ("humaneval", 164)):
        for seed in (42, 43):
            for method, points in (("lora", 10.0), ("strato", 12.5), ("adalora", 5.0), ("dora", 11.0)):
                flexible = points + 3 if task == "gsm8k" else None
                m = {**metrics, "test_score": points, "test_items": items, "test_score_flexible": flexible}
                rows.append(core._row(task, seed, method, m, "/nowhere"))
    table = core.summary(pd.DataFrame(rows))
    assert table.set_index(["task", "method"]).loc[("humaneval", "STRATO"), "items"] == 164
    assert table.set_index(["task", "method"]).loc[("gsm8k", "LoRA"), "score_flexible"] == 13.0
    claims = ledger.claims_rows("smoke", table, core.criteria(table), 1000)
    gap = next(c for c in claims if c.claim.startswith("STRATO: score"))
    assert gap.reproduced_value == "gap gsm8k +2.50 (n=96), humaneval +2.50 (n=164)"


def test_comparisons_with_lora_are_decided_by_intervals_over_items_and_seeds(tmp_path):
    """Known answers: a clear win holds, a clear loss is refuted, a coin flip is inconclusive (n/a, saying why)."""
    import json

    import numpy as np
    import pandas as pd

    from edgetune.strato import core, ledger

    rng = np.random.default_rng(0)
    n, seeds = 200, (42, 43, 44)
    lora = {s: rng.random(n) < 0.5 for s in seeds}
    outcome = {
        "lora": lora,
        "strato": {s: lora[s] | (rng.random(n) < 0.6) for s in seeds},  # LoRA's hits and many more: a clear win
        "adalora": {s: lora[s] & (rng.random(n) < 0.3) for s in seeds},  # loses most of LoRA's hits
        "dora": {s: lora[s] ^ (rng.random(n) < 0.2) for s in seeds},  # LoRA with a fifth of its items flipped
    }
    metrics = dict(RUN_METRICS)
    rows = []
    for method, per_seed in outcome.items():
        for seed in seeds:
            folder = tmp_path / f"{method}-{seed}"
            folder.mkdir()
            correct = per_seed[seed].astype(int).tolist()
            m = {**metrics, "test_score": 100 * float(np.mean(correct)), "test_items": n, "test_score_flexible": None}
            (folder / "result.json").write_text(json.dumps({"metrics": {**m, "test_correct": correct}}))
            rows.append(core._row("mmlu", seed, method, m, str(folder)))
    runs = pd.DataFrame(rows)
    items = core.item_scores(runs)
    assert items["mmlu", "STRATO"].shape == (3, n) and set(np.unique(items["mmlu", "LoRA"])) == {0.0, 100.0}
    table = core.summary(runs)
    claims = {c.claim: c for c in ledger.claims_rows("smoke", table, core.criteria(table), 1000, items)}
    win, loss, tie = (
        claims["STRATO: score ≥ LoRA − 0.5 points (success criterion)"],
        claims["AdaLoRA scores higher than LoRA"],
        claims["DoRA scores higher than LoRA"],
    )
    assert (win.holds, loss.holds, tie.holds) == (True, False, None)
    assert win.reproduced_value.startswith("gap mmlu +") and "(n=200, 3 seeds)" in win.reproduced_value
    assert "verdict per task against -0.5: holds" in win.note and "P(STRATO > LoRA) per item: mmlu 0." in win.note
    assert "inconclusive: an interval straddles +0" in tie.note and "resolution here ±" in tie.note
    low, high = (float(x) for x in tie.reproduced_value.split("[")[1].split("]")[0].split(", "))
    assert low < 0 < high
    spread = claims["STRATO: standard deviation across seeds ≤ 0.4 points (success criterion)"]
    per_seed = [100 * outcome["strato"][s].mean() for s in seeds]
    assert spread.estimate.value == pytest.approx(np.std(per_seed, ddof=1))  # the same number the table reports
    assert spread.estimate.value == pytest.approx(table.set_index(["task", "method"]).score_std["mmlu", "STRATO"])
    assert spread.estimate.high > 6 * spread.estimate.value > 0  # three seeds: a wide chi-square interval
    assert spread.holds is False and spread.sample == "seeds" and "mmlu" in spread.note
    (tmp_path / "lora-42" / "result.json").write_text(json.dumps({"metrics": metrics}))  # a run from before
    with pytest.raises(ValueError, match="lora-42: a run from before per-item scores were recorded"):
        core.item_scores(runs)
