"""MMLU-, GSM8K- and HumanEval-shaped tasks for fine-tuning a tiny causal LM, the pretraining corpus that holds
their knowledge, and readers for the real published files (nothing is ever downloaded).

The embedded tasks are deterministic, rule-based and small enough for a ≈0.25M-parameter LM with a 64-token
context: every prompt plus answer is at most ~150 characters, numbers are small and the vocabulary is closed.
`pretraining_corpus()` states the same facts, rules and functions in plain prose or commented code (the "cloud"
knowledge) and never in the tasks' Question/Answer or docstring format, so fine-tuning on a train split teaches
the format and the test split measures whether the model puts its pretrained knowledge to use.

Each task draws its items without replacement from per-subject pools of distinct *cores* (the question without
its surface form: which numbers, which creature, which constant), so train, dev and test never share a question;
subjects are spread evenly over the splits, and MMLU's correct letters are balanced over A-D in every split.

Real layouts read by `read_mmlu`, `read_gsm8k` and `read_humaneval` are in `MMLU_LAYOUT`, `GSM8K_LAYOUT` and
`HUMANEVAL_LAYOUT`; a missing path raises `FileNotFoundError` naming it and the layout, a malformed record
`ValueError` naming `file:line` and what was expected.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import itertools
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from edgetune.strato.spec import TASKS, Example, TaskData

VERSION = 2  # bump whenever the generated items or the corpus change: it keys cached runs
CHOICES = "ABCD"
KINDS = {"mmlu": "choice", "gsm8k": "number", "humaneval": "code"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()


def _check_name(name: str) -> None:
    if name not in TASKS:
        raise ValueError(f"name {name!r}; expected one of {TASKS}")


def _check_sizes(**sizes: int) -> None:
    for arg, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{arg}={n!r}; expected a non-negative integer")


def _quotas(capacities: dict[str, int], total: int) -> dict[str, int]:
    """`total` items shared as evenly as the subjects' pool sizes allow (small pools are used up first)."""
    quotas, remaining = {}, total
    order = sorted(capacities, key=capacities.__getitem__)
    for i, subject in enumerate(order):
        quotas[subject] = min(capacities[subject], -(-remaining // (len(order) - i)))
        remaining -= quotas[subject]
    return quotas


def _draw(name: str, pools: dict[str, tuple], sizes: tuple[int, int, int], rng: random.Random) -> list[list]:
    """Distinct (subject, core) pairs for train, dev and test; each subject spread proportionally over the splits."""
    capacity = sum(len(pool) for pool in pools.values())
    if sum(sizes) > capacity:
        raise ValueError(
            f"train + dev + test = {sum(sizes)}; the embedded {name} task holds {capacity} distinct items at most"
        )
    ranked = []
    for subject, quota in _quotas({s: len(p) for s, p in pools.items()}, sum(sizes)).items():
        chosen = rng.sample(pools[subject], quota)
        ranked += [((j + rng.random()) / quota, subject, core) for j, core in enumerate(chosen)]
    ranked.sort(key=lambda item: item[0])  # subjects interleaved: every contiguous slice holds each in proportion
    splits, start = [], 0
    for size in sizes:
        split = [(subject, core) for _, subject, core in ranked[start : start + size]]
        rng.shuffle(split)
        splits.append(split)
        start += size
    return splits


# ---------------------------------------------------------------------------------------------- MMLU-shaped
# The synthetic fact table: nonsense creatures with a colour, a home and a food, fixed whatever the task seed.
FACT_SEED = 20240601
COLOURS = ("red", "blue", "green", "yellow", "black", "white")
HOMES = ("sea", "forest", "desert", "cave", "river", "hills")
FOODS = ("seeds", "fish", "grass", "bugs", "fruit", "moss")
ATTRIBUTES = {"colour": COLOURS, "home": HOMES, "food": FOODS}
FACT_QUESTIONS = {"colour": "What colour is a {}?", "home": "Where does a {} live?", "food": "What does a {} eat?"}


@dataclass(frozen=True)
class Creature:
    noun: str
    colour: str
    home: str
    food: str


def _creatures(count: int = 40) -> tuple[Creature, ...]:
    rng = random.Random(FACT_SEED)
    nouns: set[str] = set()
    while len(nouns) < count:  # consonant-vowel-consonant-vowel: "zibo", "moka"
        nouns.add("".join(rng.choice(s) for s in ("bdgklmnprstvz", "aiou", "bdgklmnprstvz", "aiou")))
    return tuple(Creature(n, rng.choice(COLOURS), rng.choice(HOMES), rng.choice(FOODS)) for n in sorted(nouns))


CREATURES = _creatures()


def fact_sentences(creature: Creature) -> tuple[str, str, str]:
    """How the corpus states a creature's facts (the fact questions ask about exactly these)."""
    c = creature
    return f"A {c.noun} is {c.colour}.", f"A {c.noun} lives in the {c.home}.", f"A {c.noun} eats {c.food}."


def _arithmetic(core, rng):
    op, a, b = core
    value = a + b if op == "+" else a - b
    near = [v for v in range(value - 4, value + 5) if v >= 0 and v != value]
    return f"What is {a} {op} {b}?", str(value), [str(v) for v in rng.sample(near, 3)]


def _comparison(core, rng):
    word, numbers = core
    best = max(numbers) if word == "largest" else min(numbers)
    return f"Which number is {word}?", str(best), [str(n) for n in numbers if n != best]


def _parity(core, rng):
    word, number, others = core
    return f"Which number is {word}?", str(number), [str(n) for n in others]


def _alphabet(core, rng):
    word, letter = core
    i = LETTERS.index(letter)
    target = LETTERS[i + 1 if word == "after" else i - 1]
    near = [x for x in LETTERS[max(0, i - 3) : i + 4] if x != target]
    return f"Which letter comes {word} {letter}?", target, rng.sample(near, 3)


def _creature_fact(core, rng):
    attribute, creature = core
    value = getattr(creature, attribute)
    wrong = rng.sample([v for v in ATTRIBUTES[attribute] if v != value], 3)
    return FACT_QUESTIONS[attribute].format(creature.noun), value, wrong


MMLU_SUBJECTS = {
    "arithmetic": _arithmetic,
    "comparison": _comparison,
    "parity": _parity,
    "alphabet": _alphabet,
    "creatures": _creature_fact,
}


@functools.cache
def _mmlu_pools() -> dict[str, tuple]:
    numbers = range(1, 21)
    sums = [("+", a, b) for a in range(1, 13) for b in range(1, 13)]
    differences = [("-", a, b) for a in range(2, 16) for b in range(1, a)]
    parity = [
        (word, n, others)
        for word in ("even", "odd")
        for n in numbers
        if n % 2 == (word == "odd")
        for others in itertools.combinations([m for m in numbers if m % 2 != n % 2], 3)
    ]
    return {
        "arithmetic": tuple(sums + differences),
        "comparison": tuple((w, ns) for w in ("largest", "smallest") for ns in itertools.combinations(numbers, 4)),
        "parity": tuple(parity),
        "alphabet": tuple(("after", x) for x in LETTERS[:-1]) + tuple(("before", x) for x in LETTERS[1:]),
        "creatures": tuple((attribute, c) for c in CREATURES for attribute in ATTRIBUTES),
    }


def _choice_prompt(question: str, options: list[str]) -> str:
    lines = [f"{x}. {o}" for x, o in zip(CHOICES, options, strict=True)]
    return "\n".join([f"Question: {question}", *lines, "Answer:"])


def _mmlu_examples(items: list, rng: random.Random) -> tuple[Example, ...]:
    letters = [CHOICES[i % len(CHOICES)] for i in range(len(items))]  # balanced over A-D
    rng.shuffle(letters)
    examples = []
    for (subject, core), letter in zip(items, letters, strict=True):
        question, correct, wrong = MMLU_SUBJECTS[subject](core, rng)
        rng.shuffle(wrong)
        options = wrong[:]
        options.insert(CHOICES.index(letter), correct)
        examples.append(Example(_choice_prompt(question, options), f" {letter}", letter, subject=subject))
    return tuple(examples)


# --------------------------------------------------------------------------------------------- GSM8K-shaped
NAMES = (("Tom", "he"), ("Ann", "she"), ("Sam", "he"), ("Mia", "she"), ("Ben", "he"), ("Eva", "she"))
THINGS = ("pens", "cards", "eggs", "coins", "books", "apples")
# template: (question, corpus story, operators applied left to right to the numbers a, b[, c])
GSM8K_TEMPLATES = {
    "add": (
        "{who} has {a} {t}. {P} gets {b} more. How many {t} does {p} have?",
        "{who} has {a} {t}. {P} gets {b} more. Now {p} has {r} {t}.",
        "+",
    ),
    "subtract": (
        "{who} has {a} {t}. {P} gives {b} away. How many {t} are left?",
        "{who} has {a} {t}. {P} gives {b} away. Now {p} has {r} {t}.",
        "-",
    ),
    "multiply": (
        "{who} has {a} bags with {b} {t} each. How many {t} is that?",
        "{who} has {a} bags with {b} {t} each. That is {r} {t}.",
        "*",
    ),
    "add_subtract": (
        "{who} has {a} {t}, gets {b} more, then gives {c} away. How many {t} now?",
        "{who} has {a} {t}, gets {b} more, then gives {c} away. Now {p} has {r} {t}.",
        "+-",
    ),
    "multiply_add": (
        "{who} has {a} bags of {b} {t} and {c} more {t}. How many {t} in all?",
        "{who} has {a} bags of {b} {t} and {c} more {t}. That is {r} {t} in all.",
        "*+",
    ),
}


@functools.cache
def _gsm8k_pools() -> dict[str, tuple]:
    """Number tuples per template; every result lies in 1..90."""
    return {
        "add": tuple(itertools.product(range(1, 21), repeat=2)),
        "subtract": tuple((a, b) for a in range(2, 21) for b in range(1, a)),
        "multiply": tuple(itertools.product(range(2, 10), repeat=2)),
        "add_subtract": tuple((a, b, c) for a in range(1, 16) for b in range(1, 10) for c in range(1, 10) if c < a + b),
        "multiply_add": tuple(itertools.product(range(2, 10), range(2, 10), range(1, 10))),
    }


def _worked(numbers: tuple[int, ...], ops: str) -> tuple[list[str], int]:
    """The steps "a + b = s", "s - c = r" and the result r."""
    value, steps = numbers[0], []
    for op, n in zip(ops, numbers[1:], strict=True):
        new = value + n if op == "+" else value - n if op == "-" else value * n
        steps.append(f"{value} {op} {n} = {new}")
        value = new
    return steps, value


def _story(template: str, numbers: tuple[int, ...], rng: random.Random, *, question: bool) -> str:
    """The template's question (or, for the corpus, its story with the result) about a random person and thing."""
    text, story, ops = GSM8K_TEMPLATES[template]
    who, pronoun = rng.choice(NAMES)
    result = _worked(numbers, ops)[1]
    fields = dict(zip("abc", numbers, strict=False), who=who, P=pronoun.capitalize(), p=pronoun, t=rng.choice(THINGS))
    return (text if question else story).format(**fields, r=result)


def _gsm8k_examples(items: list, rng: random.Random) -> tuple[Example, ...]:
    examples = []
    for template, numbers in items:
        steps, result = _worked(numbers, GSM8K_TEMPLATES[template][2])
        prompt = f"Question: {_story(template, numbers, rng, question=True)}\nAnswer:"
        examples.append(Example(prompt, " " + ". ".join(steps) + f" #### {result}", str(result), subject=template))
    return tuple(examples)


# ----------------------------------------------------------------------------------------- HumanEval-shaped
INT_ARGS = ("x", "n", "num", "value")
LIST_ARGS = ("xs", "items", "nums", "values")
STR_ARGS = ("s", "text", "word", "name")
WORDS = ("cat", "tree", "moon", "lamp", "road", "fish", "star", "bird", "rain", "stone")


def _ints(rng, k):
    return rng.sample(range(0, 30), 4)


def _around(rng, k):
    return [k - 1, k, k + 1, rng.choice([n for n in range(31) if abs(n - k) > 1])]


def _multiples(rng, k):
    return [k * rng.randint(1, 5), k * rng.randint(0, 5) + rng.randint(1, k - 1), 0, k * rng.randint(6, 9) + 1]


def _lists(rng, k):
    return [rng.choices(range(10), k=rng.randint(2, 5)) for _ in range(4)]


def _counting(rng, k):
    lists = []
    for times in (0, 1, 2, rng.randint(0, 3)):
        xs = rng.choices([n for n in range(10) if n != k], k=3)
        for _ in range(times):
            xs.insert(rng.randint(0, len(xs)), k)
        lists.append(xs)
    return lists


def _words(rng, k):
    return rng.sample(WORDS, 4)


@dataclass(frozen=True)
class Family:
    """A function family: names and the docstring take the constant k ("add_{k}" → add_three); `solve` is the
    reference the test asserts are computed with, `inputs(rng, k)` the four test arguments."""

    names: tuple[str, ...]
    doc: str
    body: str
    solve: Callable
    inputs: Callable
    args: tuple[str, ...] = INT_ARGS
    constants: tuple[int, ...] = (0,)


# fmt: off
FAMILIES = {
    "add": Family(("add_{k}", "plus_{k}", "increase_by_{k}"), "Return {a} plus {k}.", "{a} + {k}",
                  lambda x, k: x + k, _ints, constants=tuple(range(1, 21))),
    "subtract": Family(("subtract_{k}", "minus_{k}", "decrease_by_{k}"), "Return {a} minus {k}.", "{a} - {k}",
                       lambda x, k: x - k, _ints, constants=tuple(range(1, 21))),
    "multiply": Family(("multiply_by_{k}", "times_{k}", "scale_by_{k}"), "Return {a} times {k}.", "{a} * {k}",
                       lambda x, k: x * k, _ints, constants=tuple(range(2, 13))),
    "multiple": Family(("is_multiple_of_{k}", "divisible_by_{k}"), "Return True if {a} is a multiple of {k}.",
                       "{a} % {k} == 0", lambda x, k: x % k == 0, _multiples, constants=tuple(range(2, 10))),
    "greater": Family(("is_greater_than_{k}", "above_{k}"), "Return True if {a} is greater than {k}.", "{a} > {k}",
                      lambda x, k: x > k, _around, constants=tuple(range(1, 21))),
    "count": Family(("count_{k}", "count_of_{k}"), "Return how many times {k} appears in {a}.", "{a}.count({k})",
                    lambda xs, k: xs.count(k), _counting, LIST_ARGS, tuple(range(1, 10))),
    "square": Family(("square", "squared", "square_of"), "Return {a} squared.", "{a} * {a}", lambda x, k: x * x, _ints),
    "largest": Family(("largest", "biggest", "max_item"), "Return the largest item of {a}.", "max({a})",
                      lambda xs, k: max(xs), _lists, LIST_ARGS),
    "smallest": Family(("smallest", "lowest", "min_item"), "Return the smallest item of {a}.", "min({a})",
                       lambda xs, k: min(xs), _lists, LIST_ARGS),
    "total": Family(("total", "sum_all", "add_up"), "Return the sum of {a}.", "sum({a})",
                    lambda xs, k: sum(xs), _lists, LIST_ARGS),
    "length": Family(("length", "size", "count_items"), "Return the number of items in {a}.", "len({a})",
                     lambda xs, k: len(xs), _lists, LIST_ARGS),
    "first": Family(("first", "head", "first_item"), "Return the first item of {a}.", "{a}[0]",
                    lambda xs, k: xs[0], _lists, LIST_ARGS),
    "last": Family(("last", "final", "last_item"), "Return the last item of {a}.", "{a}[-1]",
                   lambda xs, k: xs[-1], _lists, LIST_ARGS),
    "reverse": Family(("reverse", "backwards", "reversed_text"), "Return {a} reversed.", "{a}[::-1]",
                      lambda s, k: s[::-1], _words, STR_ARGS),
    "upper": Family(("upper", "shout", "to_upper"), "Return {a} in upper case.", "{a}.upper()",
                    lambda s, k: s.upper(), _words, STR_ARGS),
}
# fmt: on


@functools.cache
def _code_pools() -> dict[str, tuple]:
    return {name: tuple(itertools.product(f.names, f.args, f.constants)) for name, f in FAMILIES.items()}


def _function(family: Family, core: tuple[str, str, int]) -> tuple[str, str, str, str]:
    """(function name, argument, docstring text, return expression) of one pool core."""
    template, arg, k = core
    return template.format(k=NUMBER_WORDS[k]), arg, family.doc.format(a=arg, k=k), family.body.format(a=arg, k=k)


def _check_code(family: Family, k: int, rng: random.Random) -> str:
    asserts = [f"    assert candidate({x!r}) == {family.solve(x, k)!r}" for x in family.inputs(rng, k)]
    return "def check(candidate):\n" + "\n".join(asserts) + "\n"


def _code_examples(items: list, rng: random.Random) -> tuple[Example, ...]:
    examples = []
    for subject, core in items:
        family = FAMILIES[subject]
        name, arg, doc, body = _function(family, core)
        prompt = f'def {name}({arg}):\n    """{doc}"""\n'
        reference = _check_code(family, core[2], rng)
        examples.append(Example(prompt, f"    return {body}\n", reference, entry_point=name, subject=subject))
    return tuple(examples)


# ------------------------------------------------------------------------------------------ the embedded tasks
_EMBEDDED = {
    "mmlu": (_mmlu_pools, _mmlu_examples),
    "gsm8k": (_gsm8k_pools, _gsm8k_examples),
    "humaneval": (_code_pools, _code_examples),
}


def embedded_task(name: str, *, seed: int = 0, train: int = 512, dev: int = 64, test: int = 128) -> TaskData:
    """The embedded `name` task with disjoint train/dev/test splits of the given sizes; identical for one seed."""
    _check_name(name)
    _check_sizes(train=train, dev=dev, test=test)
    pools, render = _EMBEDDED[name]
    rng = random.Random(f"{name}:{seed}")  # str seeds are hashed with sha512: stable across processes
    splits = [render(items, rng) for items in _draw(name, pools(), (train, dev, test), rng)]
    return TaskData(name, KINDS[name], *splits)


def _doc_creatures(rng):
    if rng.random() < 0.5:
        return " ".join(fact_sentences(rng.choice(CREATURES)))
    return " ".join(rng.choice(fact_sentences(c)) for c in rng.sample(CREATURES, 3))


def _doc_sums(rng):
    statements = []
    for op in rng.choices("+-*", k=3):
        a, b = (rng.randint(1, 10), rng.randint(1, 10)) if op == "*" else sorted(rng.sample(range(21), 2))[::-1]
        a, b = (b, a) if op == "+" and rng.random() < 0.5 else (a, b)
        statements.append(f"{a} {op} {b} = {_worked((a, b), op)[1]}.")
    return " ".join(statements)


def _doc_compare(rng):
    ns = rng.sample(range(1, 21), 4)
    x, y = sorted(ns[:2], reverse=True)
    listed = f"{ns[0]}, {ns[1]}, {ns[2]} and {ns[3]}"
    return f"Of {listed}, the largest is {max(ns)} and the smallest is {min(ns)}. {x} is larger than {y}."


def _doc_parity(rng):
    return " ".join(f"{n} is {'odd' if n % 2 else 'even'}." for n in rng.sample(range(1, 21), 4))


def _doc_alphabet(rng):
    i = rng.randrange(len(LETTERS) - 1)
    run = ", ".join(LETTERS[max(0, i - 2) : i + 4])
    a, b = LETTERS[i], LETTERS[i + 1]
    return f"After {a} comes {b}. Before {b} comes {a}. The letters go {run}."


def _doc_story(rng):
    template = rng.choice(list(GSM8K_TEMPLATES))
    return _story(template, rng.choice(_gsm8k_pools()[template]), rng, question=False)


def _doc_code(rng):
    subject = rng.choice(list(FAMILIES))
    name, arg, doc, body = _function(FAMILIES[subject], rng.choice(_code_pools()[subject]))
    return f"# {doc}\ndef {name}({arg}):\n    return {body}\n"


def _doc_options(rng):
    """Labelled options in prose ("Of A 7, B 12, C 3 and D 9, the largest is B."): the letters as words that point at
    options, so the answer letters are trained tokens before any fine-tuning."""
    ns = rng.sample(range(1, 21), 4)
    labelled = ", ".join(f"{c} {n}" for c, n in zip("ABC", ns[:3], strict=True)) + f" and D {ns[3]}"
    pick = max if rng.random() < 0.5 else min
    word = "largest" if pick is max else "smallest"
    return f"Of {labelled}, the {word} is {'ABCD'[ns.index(pick(ns))]}."


CORPUS_KINDS = (
    (_doc_options, 1),
    (_doc_creatures, 2),
    (_doc_sums, 2),
    (_doc_compare, 1),
    (_doc_parity, 1),
    (_doc_alphabet, 1),
    (_doc_story, 2),
    (_doc_code, 3),
)


def pretraining_corpus(*, seed: int = 0, documents: int = 4000) -> list[str]:
    """Short documents (≤ 200 characters) stating what all three tasks ask about, in plain prose or commented code.

    Every creature's fact sheet is included once whatever the seed (so every fact question is answerable); the rest
    are drawn from `CORPUS_KINDS` by weight.
    """
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < len(CREATURES):
        raise ValueError(f"documents={documents!r}; expected an integer >= {len(CREATURES)} (one per creature)")
    rng = random.Random(f"corpus:{seed}")
    kinds, weights = zip(*CORPUS_KINDS, strict=True)
    docs = [" ".join(fact_sentences(c)) for c in CREATURES]
    docs += [kind(rng) for kind in rng.choices(kinds, weights, k=documents - len(docs))]
    rng.shuffle(docs)
    return docs


# ------------------------------------------------------------------------------------------------- scoring
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
STRICT = re.compile(r"#### (-?[0-9.,]+)")  # the published GSM8K grader's pattern: a number right after "#### "


def _canonical(number: str) -> str | None:
    """Commas stripped and integral values without decimals: "1,234.0" → "1234", "7.50" → "7.5"; None if `number`
    is not a number once its commas and a trailing period are gone."""
    try:
        value = Decimal(number.replace(",", "").rstrip("."))
    except ArithmeticError:
        return None
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def strict_number(text: str) -> str | None:
    """GSM8K's official answer: the number right after the first "#### " (as the published grader reads it), in
    canonical form; None when the text has no "#### <number>"."""
    found = STRICT.search(text)
    return _canonical(found.group(1)) if found else None


def flexible_number(text: str) -> str | None:
    """A lenient answer: the last number anywhere in the text (lm-evaluation-harness's "flexible-extract"), in
    canonical form; None if the text has no number. Reported beside the strict score, never instead of it."""
    found = NUMBER.findall(text)
    return _canonical(found[-1]) if found else None


# ------------------------------------------------------------------------------------- real published files
MMLU_LAYOUT = """<folder>/
    dev/<subject>_dev.csv         (the train split, unless auxiliary_train/ exists)
    val/<subject>_val.csv         (the dev split)
    test/<subject>_test.csv       (the test split)
    auxiliary_train/*.csv         (optional: the train split)
  every CSV without a header, 6 columns: question, A, B, C, D, answer letter"""
GSM8K_LAYOUT = """<folder>/
    train.jsonl    (its last `dev` lines are the dev split)
    test.jsonl
  one JSON object per line: {"question": ..., "answer": "... #### <number>"}"""
HUMANEVAL_LAYOUT = """<file>.jsonl or <file>.jsonl.gz
  one JSON object per line: task_id, prompt, canonical_solution, test, entry_point"""


def _require(path: Path, what: str, layout: str, *, folder: bool) -> Path:
    if not (path.is_dir() if folder else path.is_file()):
        raise FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{layout}")
    return path


def read_mmlu(folder: str | os.PathLike) -> TaskData:
    """MMLU's published CSVs (`MMLU_LAYOUT`): train ← auxiliary_train/ if present else dev/, dev ← val/,
    test ← test/; the subject is the file name without its split suffix."""
    root = _require(Path(folder), "MMLU folder", MMLU_LAYOUT, folder=True)
    train = ("auxiliary_train", "_train") if (root / "auxiliary_train").is_dir() else ("dev", "_dev")
    splits = [_mmlu_split(root / sub, suffix) for sub, suffix in (train, ("val", "_val"), ("test", "_test"))]
    return TaskData("mmlu", "choice", *splits)


def _mmlu_split(folder: Path, suffix: str) -> tuple[Example, ...]:
    files = sorted(_require(folder, "MMLU split folder", MMLU_LAYOUT, folder=True).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no .csv files in {folder}\nExpected layout:\n{MMLU_LAYOUT}")
    return tuple(example for path in files for example in _mmlu_file(path, path.stem.removesuffix(suffix)))


def _mmlu_file(path: Path, subject: str) -> Iterator[Example]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != 6:
                raise ValueError(
                    f"{path}:{reader.line_num}: {len(row)} columns; expected 6 (question, A, B, C, D, answer letter)"
                )
            letter = row[5].strip()
            if letter not in tuple(CHOICES):
                raise ValueError(f"{path}:{reader.line_num}: answer {row[5]!r}; expected one of {', '.join(CHOICES)}")
            yield Example(_choice_prompt(row[0], row[1:5]), f" {letter}", letter, subject=subject)


def _jsonl(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line number, record) of every non-blank line; each record an object whose `fields` are strings."""
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line}: invalid JSON ({err.msg}); expected an object with {fields}") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line}: a JSON {type(record).__name__}; expected an object with {fields}")
            missing = [k for k in fields if not isinstance(record.get(k), str)]
            if missing:
                raise ValueError(f"{path}:{line}: field(s) {missing} missing or not a string; expected {fields}")
            yield line, record


def _gsm8k_file(path: Path) -> list[Example]:
    examples = []
    for line, record in _jsonl(_require(path, "GSM8K file", GSM8K_LAYOUT, folder=False), ("question", "answer")):
        answer = re.sub(r"<<[^>]*>>", "", record["answer"])  # calculator annotations: "<<3+4=7>>"
        reference = strict_number(answer)
        if reference is None:
            raise ValueError(f"{path}:{line}: answer without a number after '####'; expected '... #### <number>'")
        examples.append(Example(f"Question: {record['question']}\nAnswer:", " " + answer, reference))
    return examples


def read_gsm8k(folder: str | os.PathLike, *, dev: int = 200) -> TaskData:
    """GSM8K's published JSONL (`GSM8K_LAYOUT`); dev is the last `dev` items of train.jsonl."""
    root = _require(Path(folder), "GSM8K folder", GSM8K_LAYOUT, folder=True)
    _check_sizes(dev=dev)
    train, test = _gsm8k_file(root / "train.jsonl"), _gsm8k_file(root / "test.jsonl")
    if dev >= len(train):
        raise ValueError(f"dev={dev}; expected fewer than the {len(train)} items of {root / 'train.jsonl'}")
    cut = len(train) - dev
    return TaskData("gsm8k", "number", tuple(train[:cut]), tuple(train[cut:]), tuple(test))


def _unit_hash(key: str) -> float:
    """A stable uniform number in [0, 1) for `key` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def read_humaneval(path: str | os.PathLike, *, dev_fraction: float = 0.1, test_fraction: float = 0.1) -> TaskData:
    """HumanEval's published JSONL (`HUMANEVAL_LAYOUT`), split by a stable hash of task_id, whatever the order of
    the lines: the round(`test_fraction` · n) problems of lowest hash go to test, the next round(`dev_fraction` · n)
    to dev, the rest to train (164 problems → 16 / 16 / 132). Each split keeps the file's order."""
    if not (0 <= dev_fraction and 0 <= test_fraction and dev_fraction + test_fraction < 1):
        raise ValueError(
            f"dev_fraction={dev_fraction}, test_fraction={test_fraction}; expected fractions >= 0 summing to < 1"
        )
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    records = [r for _, r in _jsonl(_require(Path(path), "HumanEval file", HUMANEVAL_LAYOUT, folder=False), fields)]
    ranked = sorted(range(len(records)), key=lambda i: _unit_hash(records[i]["task_id"]))
    n_test, n_dev = round(test_fraction * len(records)), round(dev_fraction * len(records))
    split_of = {i: "test" if k < n_test else "dev" if k < n_test + n_dev else "train" for k, i in enumerate(ranked)}
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for i, r in enumerate(records):
        splits[split_of[i]].append(
            Example(r["prompt"], r["canonical_solution"], r["test"], entry_point=r["entry_point"])
        )
    return TaskData("humaneval", "code", *(tuple(splits[s]) for s in ("train", "dev", "test")))


def load_task(
    name: str,
    source: str | os.PathLike = "embedded",
    *,
    seed: int = 0,
    train: int = 512,
    dev: int = 64,
    test: int = 128,
) -> TaskData:
    """The embedded task (`source="embedded"`), or the real files at `source`: an MMLU folder, a GSM8K folder (its
    dev split the last `dev` train items) or a HumanEval .jsonl[.gz] file. The real files keep their published
    sizes: `seed`, `train` and `test` apply to the embedded tasks only."""
    _check_name(name)
    if isinstance(source, str) and source == "embedded":
        return embedded_task(name, seed=seed, train=train, dev=dev, test=test)
    if name == "mmlu":
        return read_mmlu(source)
    if name == "gsm8k":
        return read_gsm8k(source, dev=dev)
    return read_humaneval(source)
