"""Embedded MMLU/GSM8K/HumanEval-shaped tasks, the pretraining corpus, and the readers on tiny fixtures written in
the real published formats."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from edgetune.strato.sandbox import Limits, passes
from edgetune.strato.spec import TASKS
from edgetune.strato.tasks import (
    CHOICES,
    embedded_task,
    flexible_number,
    load_task,
    pretraining_corpus,
    read_gsm8k,
    read_humaneval,
    read_mmlu,
    strict_number,
)

FAST = Limits(wall_s=5.0, cpu_s=5)


def _all(task):
    return task.train + task.dev + task.test


def _options(prompt: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-D])\. (.*)$", prompt, re.M))


@pytest.mark.parametrize("name,kind", [("mmlu", "choice"), ("gsm8k", "number"), ("humaneval", "code")])
def test_split_sizes_kind_and_length(name, kind):
    task = embedded_task(name, train=40, dev=7, test=13)
    assert (task.name, task.kind) == (name, kind)
    assert (len(task.train), len(task.dev), len(task.test)) == (40, 7, 13)
    default = embedded_task(name)
    assert (len(default.train), len(default.dev), len(default.test)) == (512, 64, 128)
    assert max(len(e.prompt + e.answer) for e in _all(default)) <= 150  # fits a 64-token context


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_by_seed_and_splits_disjoint(name):
    a, b, other = embedded_task(name, seed=3), embedded_task(name, seed=3), embedded_task(name, seed=4)
    assert a == b
    assert a.train != other.train and a.test != other.test
    prompts = [{e.prompt for e in split} for split in (a.train, a.dev, a.test)]
    assert sum(map(len, prompts)) == len(_all(a))  # no prompt repeated, within or across splits
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])


def test_mmlu_format_letters_and_answers():
    task = embedded_task("mmlu", train=400, dev=8, test=8)
    counts = Counter(e.reference for e in task.train)
    assert set(counts) == set(CHOICES) and all(0.15 <= counts[x] / 400 <= 0.35 for x in CHOICES)
    assert {e.subject for e in task.train} == {"arithmetic", "comparison", "parity", "alphabet", "creatures"}
    for e in _all(task):
        options = _options(e.prompt)
        assert e.prompt.startswith("Question: ") and e.prompt.endswith("\nAnswer:") and list(options) == list(CHOICES)
        assert e.answer == " " + e.reference and len(set(options.values())) == 4
        right, question = options[e.reference], e.prompt.splitlines()[0]
        if m := re.search(r"What is (\d+) ([+-]) (\d+)\?", question):
            a, op, b = int(m[1]), m[2], int(m[3])
            assert int(right) == (a + b if op == "+" else a - b)
        elif m := re.search(r"Which number is (\w+)\?", question):
            numbers = [int(v) for v in options.values()]
            if m[1] in ("even", "odd"):  # exactly one option has the asked parity
                assert [n for n in numbers if n % 2 == (m[1] == "odd")] == [int(right)]
            else:
                assert int(right) == {"largest": max(numbers), "smallest": min(numbers)}[m[1]]
        elif m := re.search(r"Which letter comes (after|before) (\w)\?", question):
            assert ord(right) - ord(m[2]) == (1 if m[1] == "after" else -1)


def test_mmlu_questions_never_repeat_across_splits():
    task = embedded_task("mmlu")
    first = [
        {e.prompt.splitlines()[0] for e in s if e.subject != "comparison" and e.subject != "parity"}
        for s in (task.train, task.dev, task.test)
    ]
    assert not (first[0] & first[1] or first[0] & first[2] or first[1] & first[2])  # not even with other options


def test_fact_questions_are_stated_in_the_corpus_and_corpus_has_no_task_format():
    corpus = pretraining_corpus(seed=0, documents=500)
    assert len(corpus) == 500 and max(map(len, corpus)) <= 200
    assert corpus == pretraining_corpus(seed=0, documents=500) and corpus != pretraining_corpus(seed=1, documents=500)
    sentences = {s.strip() + "." for doc in corpus for s in doc.split(".") if s.strip()}
    task = embedded_task("mmlu")
    facts = [e for e in task.dev + task.test if e.subject == "creatures"]
    assert len(facts) >= 10
    for e in facts:
        right, question = _options(e.prompt)[e.reference], e.prompt.splitlines()[0]
        noun = question.rstrip("?").split(" a ")[1].split()[0]
        statement = {
            "colour": f"A {noun} is {right}.",
            "live": f"A {noun} lives in the {right}.",
            "eat": f"A {noun} eats {right}.",
        }[next(w for w in ("colour", "live", "eat") if w in question)]
        assert statement in sentences
    text = "\n".join(corpus)
    assert "Question:" not in text and "Answer:" not in text and '"""' not in text and "####" not in text
    assert re.search(r"^# Return .*\ndef \w+\(\w+\):\n    return ", text, re.M)  # code as comment + def
    assert re.search(r"\b\d+ \+ \d+ = \d+\.", text) and re.search(r"\b\d+ is (even|odd)\.", text)
    assert re.search(r"(Tom|Ann|Sam|Mia|Ben|Eva) has \d+ \w+\. .* Now (he|she) has \d+", text)
    with pytest.raises(ValueError, match="documents=3; expected an integer >= 40"):
        pretraining_corpus(documents=3)


def test_gsm8k_worked_steps_are_right():
    task = embedded_task("gsm8k")
    assert len({e.subject for e in task.train}) == 5
    for e in _all(task):
        assert e.prompt.startswith("Question: ") and e.prompt.endswith("\nAnswer:")
        steps, result = e.answer.split(" #### ")
        for a, op, b, c in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", steps):
            assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert result == e.reference == strict_number(e.answer) and 0 <= int(result) <= 99
        assert steps.rstrip(".").split(" = ")[-1] == result


def test_humaneval_solutions_pass_their_tests():
    task = embedded_task("humaneval")
    assert len({e.subject for e in task.train}) >= 10
    for e in _all(task):  # in process: this is our own generated code
        scope: dict = {}
        exec(e.prompt + e.answer + "\n" + e.reference, scope)
        scope["check"](scope[e.entry_point])
        assert e.prompt.startswith(f"def {e.entry_point}(") and 3 <= e.reference.count("assert") <= 4
    picked = list({e.subject: e for e in task.test}.values())[:8]
    for e in picked:  # and in the sandbox that scores the fine-tuned model
        assert passes(e.prompt + e.answer, e.reference, e.entry_point, FAST).passed
    wrong = passes(picked[0].prompt + "    return None\n", picked[0].reference, picked[0].entry_point, FAST)
    assert not wrong.passed and wrong.reason == "failed"


@pytest.mark.parametrize(
    "text,strict,flexible",
    [
        (" 3 + 4 = 7 #### 7", "7", "7"),
        ("so 12 #### 1,234", "1234", "1234"),
        ("#### -3", "-3", "-3"),
        ("first 5 #### 8 then 9", "8", "9"),
        ("The answer is 7.0.", None, "7"),
        ("costs $2.50 or 3", None, "3"),
        ("costs $2.50", None, "2.5"),
        ("#### nothing after", None, None),
        ("####12", None, "12"),
        ("no digits", None, None),
        ("", None, None),
    ],
)
def test_strict_and_flexible_numbers(text, strict, flexible):
    assert (strict_number(text), flexible_number(text)) == (strict, flexible)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="name 'arc'; expected one of"):
        embedded_task("arc")
    with pytest.raises(ValueError, match="train=-1; expected a non-negative integer"):
        embedded_task("mmlu", train=-1)
    with pytest.raises(ValueError, match="dev=1.5"):
        embedded_task("gsm8k", dev=1.5)
    with pytest.raises(ValueError, match="holds .* distinct items at most"):
        embedded_task("humaneval", train=100_000)
    with pytest.raises(ValueError, match="name 'arc'"):
        load_task("arc")


# ------------------------------------------------------------------------------------------------ readers
def _csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def _mmlu(root: Path) -> Path:
    for subject in ("anatomy", "astronomy"):
        row = [f"In {subject}, which is true, and why?", "one", "two, or three", 'a "quoted" four', "five", "C"]
        _csv(root / "dev" / f"{subject}_dev.csv", [row, [*row[:5], "A"]])
        _csv(root / "val" / f"{subject}_val.csv", [[*row[:5], "B"]])
        _csv(root / "test" / f"{subject}_test.csv", [row, [*row[:5], "D"], [f"Multi\nline {subject}", *row[1:]]])
    return root


def test_read_mmlu(tmp_path):
    task = read_mmlu(_mmlu(tmp_path / "mmlu"))
    assert (task.name, task.kind, len(task.train), len(task.dev), len(task.test)) == ("mmlu", "choice", 4, 2, 6)
    assert [e.subject for e in task.test] == ["anatomy"] * 3 + ["astronomy"] * 3
    first = task.train[0]
    assert first.prompt == (
        'Question: In anatomy, which is true, and why?\nA. one\nB. two, or three\nC. a "quoted" four\nD. five\nAnswer:'
    )
    assert (first.answer, first.reference) == (" C", "C") and [e.reference for e in task.dev] == ["B", "B"]
    assert task.test[2].prompt.startswith("Question: Multi\nline anatomy\nA. one")
    _csv(tmp_path / "mmlu" / "auxiliary_train" / "race.csv", [["q", "a", "b", "c", "d", "A"]] * 5)
    with_aux = read_mmlu(tmp_path / "mmlu")
    assert len(with_aux.train) == 5 and with_aux.train[0].subject == "race" and with_aux.test == task.test
    assert load_task("mmlu", str(tmp_path / "mmlu")) == with_aux


def test_read_mmlu_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere")) + "(.|\n)*test/<subject>"):
        read_mmlu(tmp_path / "nowhere")
    root = _mmlu(tmp_path / "mmlu")
    _csv(root / "test" / "anatomy_test.csv", [["q", "a", "b", "c", "d", "A"], ["q", "a", "b", "c", "A"]])
    with pytest.raises(ValueError, match=re.escape(str(root / "test" / "anatomy_test.csv")) + ":2: 5 columns"):
        read_mmlu(root)
    _csv(root / "test" / "anatomy_test.csv", [["q", "a", "b", "c", "d", "E"]])
    with pytest.raises(ValueError, match=r"anatomy_test\.csv:1: answer 'E'; expected one of A, B, C, D"):
        read_mmlu(root)
    for path in (root / "test").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no .csv files in " + re.escape(str(root / "test"))):
        read_mmlu(root)
    (root / "test").rmdir()
    with pytest.raises(FileNotFoundError, match="MMLU split folder not found: " + re.escape(str(root / "test"))):
        read_mmlu(root)


def _jsonl(path: Path, records: list, *, zipped: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    if zipped:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _gsm8k(root: Path) -> Path:
    train = [
        {"question": f"Q{i}?", "answer": f"She has {i}+1=<<{i}+1={i + 1}>>{i + 1}.\n#### {i + 1}"} for i in range(5)
    ]
    _jsonl(root / "train.jsonl", train)
    _jsonl(root / "test.jsonl", [{"question": "Big?", "answer": "1000+234=<<1000+234=1234>>1234\n#### 1,234"}])
    return root


def test_read_gsm8k(tmp_path):
    task = read_gsm8k(_gsm8k(tmp_path / "gsm8k"), dev=2)
    assert (task.name, task.kind, len(task.train), len(task.dev), len(task.test)) == ("gsm8k", "number", 3, 2, 1)
    assert [e.prompt for e in task.dev] == ["Question: Q3?\nAnswer:", "Question: Q4?\nAnswer:"]  # the last of train
    assert task.train[0].answer == " She has 0+1=1.\n#### 1" and task.train[0].reference == "1"
    assert task.test[0].reference == "1234" and "<<" not in task.test[0].answer
    assert strict_number(task.test[0].answer) == task.test[0].reference
    assert load_task("gsm8k", tmp_path / "gsm8k", dev=1) == read_gsm8k(tmp_path / "gsm8k", dev=1)
    with pytest.raises(ValueError, match="dev=5; expected fewer than the 5 items"):
        read_gsm8k(tmp_path / "gsm8k", dev=5)


def test_read_gsm8k_errors(tmp_path):
    root = tmp_path / "gsm8k"
    with pytest.raises(FileNotFoundError, match="GSM8K folder not found: " + re.escape(str(root))):
        read_gsm8k(root)
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "train.jsonl")) + "(.|\n)*test.jsonl"):
        read_gsm8k(root)
    good = {"question": "Q?", "answer": "#### 3"}
    cases = [
        ([good, "{not json"], r":2: invalid JSON"),
        ([good, good, {"question": "Q?"}], r":3: field\(s\) \['answer'\] missing"),
        ([{"question": "Q?", "answer": "just 3"}], r":1: answer without a number after '####'"),
        (["[1, 2]"], r":1: a JSON list; expected an object"),
    ]
    _jsonl(root / "test.jsonl", [good])
    for records, message in cases:
        _jsonl(root / "train.jsonl", records)
        with pytest.raises(ValueError, match=re.escape(str(root / "train.jsonl")) + message):
            read_gsm8k(root, dev=0)


def _problems(n: int) -> list[dict]:
    return [
        {
            "task_id": f"HumanEval/{i}",
            "prompt": f'def f{i}(x):\n    """Return x plus {i}."""\n',
            "canonical_solution": f"    return x + {i}\n",
            "test": f"def check(candidate):\n    assert candidate(1) == {1 + i}\n",
            "entry_point": f"f{i}",
        }
        for i in range(n)
    ]


def test_read_humaneval_plain_and_gzipped(tmp_path):
    problems = _problems(40)
    plain = read_humaneval(_jsonl(tmp_path / "HumanEval.jsonl", problems), dev_fraction=0.2, test_fraction=0.3)
    zipped = read_humaneval(
        _jsonl(tmp_path / "he.jsonl.gz", problems[::-1], zipped=True), dev_fraction=0.2, test_fraction=0.3
    )
    assert (plain.name, plain.kind) == ("humaneval", "code")
    assert len(plain.train) + len(plain.dev) + len(plain.test) == 40
    assert all(len(s) >= 3 for s in (plain.train, plain.dev, plain.test))  # ~20 / 8 / 12 expected
    for a, b in zip((plain.train, plain.dev, plain.test), (zipped.train, zipped.dev, zipped.test), strict=True):
        assert {e.entry_point for e in a} == {e.entry_point for e in b}  # split by task_id, not line order
    e = plain.test[0]
    i = int(e.entry_point[1:])
    assert (e.prompt, e.answer, e.reference) == (problems[i]["prompt"], f"    return x + {i}\n", problems[i]["test"])
    assert passes(e.prompt + e.answer, e.reference, e.entry_point, FAST).passed
    assert load_task("humaneval", tmp_path / "HumanEval.jsonl") == read_humaneval(tmp_path / "HumanEval.jsonl")
    assert load_task("humaneval", seed=1) == embedded_task("humaneval", seed=1)


def test_read_humaneval_errors(tmp_path):
    missing = tmp_path / "HumanEval.jsonl.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + "(.|\n)*task_id, prompt"):
        read_humaneval(missing)
    broken = {k: v for k, v in _problems(1)[0].items() if k != "entry_point"}
    path = _jsonl(tmp_path / "he.jsonl", [*_problems(2), broken])
    with pytest.raises(ValueError, match=re.escape(str(path)) + r":3: field\(s\) \['entry_point'\] missing"):
        read_humaneval(path)
    path = _jsonl(tmp_path / "bad.jsonl.gz", ["", "{oops"], zipped=True)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ":2: invalid JSON"):
        read_humaneval(path)
    with pytest.raises(ValueError, match="dev_fraction=0.6, test_fraction=0.5; expected"):
        read_humaneval(path, dev_fraction=0.6, test_fraction=0.5)
