"""The small Llama-config causal LM of the PEFT section: its BPE tokenizer, its cached "cloud" pretraining on a
text corpus, the batch encoding of task examples, and task scoring (MMLU letters, GSM8K numbers, HumanEval pass@1).

The family mirrors a Llama decoder scaled down (RMSNorm, SwiGLU MLP, RoPE, grouped-query attention, tied
embeddings) so that `peft` adapts it exactly as it adapts a real Llama; `load_checkpoint` reads a real one instead.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from edgetune.progress import progress
from edgetune.runs import Meter, RunResult, cached, load_weights, save_weights
from edgetune.runs.stages import stage_key
from edgetune.strato import sandbox, tasks
from edgetune.strato.config import packaged_humaneval
from edgetune.strato.spec import Example
from edgetune.training import autocast, warmup_cosine

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
LETTERS = ("A", "B", "C", "D")
IGNORE = -100  # label of positions the loss skips
CODE_LIMITS = sandbox.Limits(wall_s=5, cpu_s=5)  # per HumanEval program


@dataclass(frozen=True)
class LMSpec:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    context: int = 64

    def __post_init__(self):
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"{self}: hidden must divide into heads, and heads into kv_heads (grouped-query attention)"
            )


LM_FAMILY: dict[str, LMSpec] = {
    "lm-tiny": LMSpec(64, 176, 4, 4, 2, 64),
    "lm-small": LMSpec(96, 256, 6, 4, 2, 96),
    "lm-base": LMSpec(256, 688, 8, 8, 4, 128),
}


# --- tokenizer and model -------------------------------------------------------------------------------------------


TOKENIZER_VERSION = 2  # bump when train_tokenizer changes (it keys the pretraining cache)
SCORING_VERSION = 2  # bump when what a run records of its scoring changes (2: which items were right)


def train_tokenizer(corpus: list[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `corpus`; digits are split one by one (so numbers are spelled digit by digit), and
    every byte is in the alphabet, so any text — code with newlines and indents included — round-trips exactly."""
    bpe = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    # The answer letters " A".." D" as whole tokens: BPE merges " A" (frequent in prose) but not " B", which would
    # give letters different token counts and bias likelihood scoring toward the shorter one.
    bpe.add_tokens([AddedToken(f" {c}", single_word=True, normalized=False) for c in LETTERS])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL)


def build_lm(spec: LMSpec, tokenizer, *, seed: int) -> LlamaForCausalLM:
    """A freshly initialized Llama of shape `spec` over `tokenizer`'s vocabulary (the same weights for the same seed,
    without touching the global RNG)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.context,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def check_checkpoint(path: str | Path) -> Path:
    """`path` as a local Hugging Face Llama folder (config.json with model_type 'llama', weights, tokenizer), or an
    error naming it and what was expected."""
    path = Path(path)
    expected = "a Hugging Face folder with config.json (model_type 'llama'), weights and tokenizer files"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected {expected}")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "llama":
        raise ValueError(f"checkpoint {path} has model_type {model_type!r}; expected {expected}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise FileNotFoundError(
            f"checkpoint {path} has no weights (*.safetensors or pytorch_model*.bin); expected {expected}"
        )
    return path


def load_checkpoint(path: str | Path, *, dtype: torch.dtype = torch.float32):
    """A real pretrained Llama and its tokenizer from a local Hugging Face folder (nothing is downloaded)."""
    path = check_checkpoint(path)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:  # Llama tokenizers ship without one; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# --- cloud pretraining ---------------------------------------------------------------------------------------------


def pretrain_lm(
    name: str,
    corpus: list[str],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device,
    vocab_size: int = 512,
    force: bool = False,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast, RunResult]:
    """The "cloud" model `name` of `LM_FAMILY`: a tokenizer trained on `corpus`, then full-parameter next-token
    pretraining on its documents. Cached: the folder holds `tokenizer/` and `model.safetensors`."""
    if name not in LM_FAMILY:
        raise ValueError(f"unknown LM {name!r}; expected one of {sorted(LM_FAMILY)}")
    spec = LM_FAMILY[name]
    fingerprint = hashlib.sha256("\x00".join(corpus).encode()).hexdigest()
    config = dict(name=name, **asdict(spec), steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    config = stage_key({**config, "corpus": fingerprint, "vocab_size": vocab_size}, versions=("tokenizer",))

    def compute(folder: Path) -> RunResult:
        tokenizer = train_tokenizer(corpus, vocab_size)
        model = build_lm(spec, tokenizer, seed=seed).to(device)
        docs = _documents(corpus, tokenizer, spec.context)
        with Meter(device) as meter:
            history = _pretrain_loop(model, docs, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device)
        tokenizer.save_pretrained(folder / "tokenizer")
        save_weights(model, folder / "model.safetensors")
        metrics = {"final_loss": history[-1]["loss"] if history else math.nan}
        metrics["step_time_s"] = meter.wall_time_s / max(steps, 1)
        artifacts = {"weights": "model.safetensors", "tokenizer": "tokenizer"}
        return RunResult.measured(
            "strato-pretrain", config, seed, model, device, meter, metrics=metrics, history=history, artifacts=artifacts
        )

    result, folder = cached("strato-pretrain", config, compute, force=force)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer", local_files_only=True)
    model = load_weights(build_lm(spec, tokenizer, seed=seed), folder / "model.safetensors")
    return model.to(device), tokenizer, result


def _documents(corpus: list[str], tokenizer, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each document as bos + text + eos, truncated to `context` and right-padded: (ids, labels), both (N, context),
    labels IGNORE on padding."""
    ids = torch.full((len(corpus), context), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(corpus), context), IGNORE, dtype=torch.long)
    for i, text in enumerate(corpus):
        row = [tokenizer.bos_token_id, *_tokens(tokenizer, text), tokenizer.eos_token_id][:context]
        ids[i, : len(row)] = labels[i, : len(row)] = torch.tensor(row)
    return ids, labels


def _pretrain_loop(model, docs, *, steps: int, batch_size: int, lr: float, seed: int, device) -> list[dict]:
    """AdamW over random batches of documents, linear warmup then cosine decay to lr/10; returns the mean loss of
    every 10 steps."""
    ids, labels = (t.to(device) for t in docs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 10)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, steps, floor=0.1))
    g = torch.Generator().manual_seed(seed)
    model.train()
    history, window = [], []
    for step in progress(range(steps), desc="pretrain LM", leave=False, mininterval=2):
        pick = torch.randint(len(ids), (batch_size,), generator=g).to(device)
        mask = labels[pick] != IGNORE  # (B, T)
        with autocast(device):
            loss = model(input_ids=ids[pick], attention_mask=mask.long(), labels=labels[pick]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        window.append(loss.item())
        if len(window) == 10 or step == steps - 1:
            history.append({"step": step + 1, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0]})
            window = []
    return history


# --- encoding ------------------------------------------------------------------------------------------------------


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt_ids(tokenizer, prompt: str, room: int) -> list[int]:
    """bos + the last `room` tokens of the prompt (prompts are cut on the left, where they matter least)."""
    ids = _tokens(tokenizer, prompt)
    return [tokenizer.bos_token_id, *(ids[-room:] if room > 0 else [])]


def encode(examples: Sequence[Example], tokenizer, context: int) -> dict[str, torch.Tensor]:
    """Teacher-forcing batch: bos + prompt + answer + eos, right-padded to the longest row (at most `context`);
    labels are the answer and eos tokens, IGNORE on bos, prompt and padding. Prompt and answer are tokenized
    separately, so the boundary is exact."""
    rows, answers = [], []
    for ex in examples:
        answer = [*_tokens(tokenizer, ex.answer), tokenizer.eos_token_id]
        if len(answer) + 1 > context:
            raise ValueError(
                f"answer of example {ex.prompt[:40]!r}... is {len(answer)} tokens with eos; it must fit in context "
                f"{context} after bos: raise the context or shorten the answer"
            )
        rows.append(_prompt_ids(tokenizer, ex.prompt, context - 1 - len(answer)) + answer)
        answers.append(len(answer))
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (row, n) in enumerate(zip(rows, answers, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        labels[i, len(row) - n : len(row)] = torch.tensor(row[-n:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --- scoring -------------------------------------------------------------------------------------------------------


@contextmanager
def _evaluating(model):
    """Eval mode and no autograd for the block; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def answer_token_accuracy(model, examples, tokenizer, *, context: int, device, batch_size: int = 64) -> float:
    """Teacher-forced share (%) of answer tokens, eos included, that the model predicts right: the cheap proxy."""
    right = total = 0
    with _evaluating(model):
        for chunk in _batches(examples, batch_size):
            batch = {k: v.to(device) for k, v in encode(chunk, tokenizer, context).items()}
            with autocast(device):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            target = batch["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
            scored = target != IGNORE
            right += (logits[:, :-1].argmax(-1) == target)[scored].sum().item()
            total += scored.sum().item()
    return 100.0 * right / max(total, 1)


@dataclass(frozen=True)
class Score:
    """A test score in points (0–100) and the number of items behind it. `flexible` is GSM8K's lenient match (the
    last number anywhere in the output), reported beside the official strict one (`points`); None elsewhere.
    `correct` says which items were right (the official metric), in order: what confidence intervals resample."""

    points: float
    items: int
    flexible: float | None = None
    correct: tuple[bool, ...] = field(default=(), compare=False)


def generation_budget(examples: Sequence[Example], tokenizer, *, headroom: float = 1.5, slack: int = 16) -> int:
    """New tokens to allow when generating answers to a task: `headroom` × the longest reference answer among
    `examples` (in `tokenizer`'s tokens) + `slack`, so a model that writes the reference answer is never cut short,
    and one that writes a little more than the reference (another worked solution, a helper line) has room too."""
    longest = max((len(_tokens(tokenizer, ex.answer)) for ex in examples), default=0)
    return math.ceil(headroom * longest) + slack


def score(
    model,
    task_kind: str,
    examples,
    tokenizer,
    *,
    context: int,
    device,
    max_new_tokens: int,
    batch_size: int = 64,
    limits: sandbox.Limits = CODE_LIMITS,
) -> Score:
    """The task metric over `examples`: letter accuracy for "choice" (MMLU), the official strict number match for
    "number" (GSM8K; the flexible match beside it), pass@1 in the sandbox for "code" (HumanEval). Generation is
    greedy, at most `max_new_tokens` new tokens (`generation_budget`), and never past the `context`."""
    if task_kind == "choice":
        with _evaluating(model):
            chunks = _batches(examples, batch_size)
            right = [r for chunk in chunks for r in _choices(model, chunk, tokenizer, context, device)]
        return Score(100.0 * sum(right) / max(len(examples), 1), len(examples), correct=tuple(right))
    if task_kind not in ("number", "code"):
        raise ValueError(f"unknown task kind {task_kind!r}; expected 'choice', 'number' or 'code'")
    stop = _number_done if task_kind == "number" else lambda text: _code_body(text)[1]
    texts = []
    with _evaluating(model):
        for chunk in _batches(examples, batch_size):
            prompts = [_prompt_ids(tokenizer, ex.prompt, context - 2) for ex in chunk]  # room for >= 1 new token
            texts += _greedy(
                model, prompts, tokenizer, max_new_tokens=max_new_tokens, context=context, stop=stop, device=device
            )
    return grade(task_kind, examples, texts, limits=limits)


def grade(task_kind: str, examples, texts: Sequence[str], *, limits: sandbox.Limits = CODE_LIMITS) -> Score:
    """Score generated `texts` (one per example, the text after its prompt) for a "number" or "code" task."""
    n = max(len(examples), 1)
    if task_kind == "number":
        pairs = list(zip(texts, [ex.reference for ex in examples], strict=True))
        strict = tuple(bool(_same_number(tasks.strict_number(t), reference)) for t, reference in pairs)
        flexible = sum(_same_number(tasks.flexible_number(t), reference) for t, reference in pairs)
        return Score(100.0 * sum(strict) / n, len(examples), flexible=100.0 * flexible / n, correct=strict)
    if task_kind != "code":
        raise ValueError(f"unknown task kind {task_kind!r} to grade; expected 'number' or 'code'")
    programs = [ex.prompt + _code_body(t)[0] for t, ex in zip(texts, examples, strict=True)]
    tests, entry_points = [ex.reference for ex in examples], [ex.entry_point for ex in examples]
    with ThreadPoolExecutor(max_workers=2) as pool:
        passed = tuple(o.passed for o in pool.map(sandbox.passes, programs, tests, entry_points, repeat(limits)))
    return Score(100.0 * sum(passed) / n, len(examples), correct=passed)


def _choices(model, examples, tokenizer, context: int, device) -> list[bool]:
    """Whether each example's most likely letter continuation (" A".." D", scored by the summed log-probability of its
    tokens after the prompt, as lm-evaluation-harness does) is the reference letter. With a small vocabulary a
    letter may be one token or two, so whole continuations are compared, never single logits."""
    letters = [_tokens(tokenizer, " " + c) for c in LETTERS]
    longest = max(map(len, letters))
    rows, spans = [], []
    for ex in examples:
        prompt = _prompt_ids(tokenizer, ex.prompt, context - longest)
        for letter in letters:
            rows.append(prompt + letter)
            spans.append((len(prompt), len(letter)))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    with autocast(device):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (4B, T, V)
    logp = torch.log_softmax(logits.float(), -1).cpu()
    totals = torch.tensor(
        [sum(logp[i, start - 1 + j, ids[i, start + j]].item() for j in range(n)) for i, (start, n) in enumerate(spans)]
    ).view(len(examples), len(LETTERS))
    picked = totals.argmax(-1).tolist()
    return [LETTERS[p] == ex.reference.strip() for p, ex in zip(picked, examples, strict=True)]


# transformers 5.x renamed the KV cache argument (and output) `past_key_values` → `cache`; use whichever this has
CACHE = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def _greedy(
    model,
    prompts: list[list[int]],
    tokenizer,
    *,
    max_new_tokens: int,
    context: int,
    stop: Callable[[str], bool],
    device,
) -> list[str]:
    """Greedy decoding of a batch of prompts (token ids; left-padded here) with the KV cache. A row ends at eos,
    when `stop(generated text)` holds, after `max_new_tokens`, or when it fills the `context`. Returns each row's
    generated text (without eos)."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(prompts):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
    ids, mask = ids.to(device), mask.to(device)
    budget = [min(max_new_tokens, context - len(row)) for row in prompts]
    out, done = [[] for _ in prompts], [b <= 0 for b in budget]
    past, step_ids = None, ids
    while not all(done):
        positions = (mask.cumsum(1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]  # left padding shifts positions
        with autocast(device):
            o = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True, **{CACHE: past})
        past, step_ids = getattr(o, CACHE), o.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        for i, token in enumerate(step_ids[:, 0].tolist()):
            if done[i]:
                continue
            if token == tokenizer.eos_token_id:
                done[i] = True
                continue
            out[i].append(token)
            done[i] = len(out[i]) >= budget[i] or stop(tokenizer.decode(out[i]))
        mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
    return [tokenizer.decode(row) for row in out]


def _number_done(text: str) -> bool:
    """A GSM8K answer is complete once its "#### <number>" line has ended."""
    return re.search(r"####[ \t]*-?\d[^\n]*\n", text) is not None


def _same_number(predicted: str | None, reference: str) -> bool:
    if predicted is None:
        return False
    try:
        return float(predicted) == float(reference.replace(",", "").strip())
    except ValueError:
        return False


def _code_body(text: str) -> tuple[str, bool]:
    """The generated function body, and whether it is complete: it ends before the first line that starts without
    indentation once at least one body line has been written (a partial last line counts from its first character)."""
    lines = text.split("\n")
    seen_body = False
    for i, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and seen_body:
            return "\n".join(lines[:i]) + "\n", True
        seen_body = seen_body or (bool(line.strip()) and line[0].isspace())
    return text, False


LLAMA_2_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
LLAMA_TINY = {  # the same layout at toy width, for CPU rehearsals and checks of scripts
    **LLAMA_2_7B,
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def write_random_llama(folder: Path, shape: dict) -> dict:
    """A random-weight Llama checkpoint of `shape` (LlamaConfig fields; bf16 safetensors) with a BPE tokenizer of its
    vocabulary size trained on the embedded corpus and the HumanEval prompts, both saved with `save_pretrained` (no
    Llama tokenizer can be downloaded here). Returns its parameter count, bytes on disk and vocabulary size."""
    he = tasks.read_humaneval(packaged_humaneval())
    texts = tasks.pretraining_corpus(documents=4000) + [e.prompt + e.answer for e in (*he.train, *he.dev, *he.test)]
    tokenizer = train_tokenizer(texts, vocab_size=shape["vocab_size"] - 8)
    config = LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    size = sum(f.stat().st_size for f in Path(folder).iterdir())
    return {"parameters": params, "bytes_on_disk": size, "tokenizer_vocab": len(tokenizer)}
