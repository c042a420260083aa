"""The PEFT section's small Llama: tokenizer, model shape, cached pretraining, encoding and task scoring."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from edgetune.strato import lm
from edgetune.strato.lm import LMSpec, answer_token_accuracy, build_lm, encode, load_checkpoint, score
from edgetune.strato.spec import Example

TINY = LMSpec(32, 64, 2, 2, 1, 48)
CPU = torch.device("cpu")
CORPUS = (
    [f"def scale_{i}(a, b):\n    return a + b * {i}\n" for i in range(17)]
    + [f"Tom has {i} apples and buys {i + 3} more.\nNow he has {2 * i + 3}.\n#### {2 * i + 3}" for i in range(17)]
    + [f"Question: what is {i} + 1?\nA. {i}\nB. {i + 1}\nC. {i + 2}\nD. {i + 3}\nAnswer: B" for i in range(16)]
)
CODE = (
    "def mean(xs):\n    if not xs:\n        return 0.0\n\n    total = 0\n\tfor x in xs:  # tab\n    return total / 12\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return lm.train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_lm(TINY, tokenizer, seed=0).eval()


class FixedLogits(torch.nn.Module):
    """A stand-in LM whose next-token logits favour one token everywhere (or, as an oracle, the true next one)."""

    def __init__(self, vocab: int, favoured: int | None = None):
        super().__init__()
        self.vocab, self.favoured = vocab, favoured

    def forward(self, input_ids, attention_mask=None, **_):
        target = input_ids.roll(-1, dims=1) if self.favoured is None else torch.full_like(input_ids, self.favoured)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(target, self.vocab).float())


def test_tokenizer_round_trips_code_and_spells_digits(tokenizer):
    assert len(tokenizer) == 300 + 4  # BPE vocabulary + the answer letters " A".." D" as whole tokens
    assert [len(tokenizer(f" {c}", add_special_tokens=False)["input_ids"]) for c in "ABCD"] == [1, 1, 1, 1]
    assert tokenizer.decode(tokenizer(CODE, add_special_tokens=False)["input_ids"]) == CODE
    assert len(tokenizer("123", add_special_tokens=False)["input_ids"]) == 3
    ids = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
    assert ids == [0, 1, 2, 3]


def test_encode_labels_exactly_the_answer_and_eos(tokenizer):
    examples = [Example("Question: what is 2 + 1?\nAnswer:", " B", "B"), Example("Tom has 4.", " 11\n#### 11", "11")]
    batch = encode(examples, tokenizer, context=48)
    for i, ex in enumerate(examples):
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        n = 1 + len(prompt) + len(answer)
        assert batch["input_ids"][i, :n].tolist() == [tokenizer.bos_token_id, *prompt, *answer]
        assert batch["attention_mask"][i].sum() == n
        labelled = batch["labels"][i][batch["labels"][i] != -100]
        assert labelled.tolist() == answer
        assert (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()
    assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(1).max()


def test_encode_truncates_long_prompts_on_the_left(tokenizer):
    ex = Example("word " * 100 + "Answer:", " 42", "42")
    batch = encode([ex], tokenizer, context=16)
    answer = tokenizer(" 42", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 16 and ids[0] == tokenizer.bos_token_id and ids[-len(answer) :] == answer
    assert tokenizer.decode(ids[1 : -len(answer)]).endswith("Answer:")
    with pytest.raises(ValueError, match="Tom has"):
        encode([Example("Tom has", " 1" * 20, "1")], tokenizer, context=16)


def test_build_lm_matches_the_closed_form_and_is_deterministic(tokenizer):
    v, h, inter, head = len(tokenizer), TINY.hidden, TINY.intermediate, TINY.hidden // TINY.heads
    q_out, kv_out = TINY.heads * head, TINY.kv_heads * head
    per_layer = h * (q_out + 2 * kv_out) + q_out * h + 3 * h * inter + 2 * h
    state = torch.get_rng_state()
    a, b, c = (build_lm(TINY, tokenizer, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    assert sum(p.numel() for p in a.parameters()) == v * h + TINY.layers * per_layer + h
    assert a.lm_head.weight is a.model.embed_tokens.weight
    assert a.config._attn_implementation == "sdpa"
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight, c.model.layers[0].mlp.up_proj.weight)


def test_pretraining_lowers_the_loss_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    monkeypatch.setitem(lm.LM_FAMILY, "lm-test", TINY)
    kwargs = dict(steps=30, batch_size=8, lr=3e-3, seed=0, device=CPU, vocab_size=300)
    model, tokenizer, result = lm.pretrain_lm("lm-test", CORPUS, **kwargs)
    losses = [h["loss"] for h in result.history]
    assert [h["step"] for h in result.history] == [10, 20, 30]
    assert losses[-1] < losses[0] - 0.5  # means of steps 21–30 vs 1–10
    assert (tmp_path / "cache" / result.key / "tokenizer").is_dir()

    monkeypatch.setattr(lm, "_pretrain_loop", lambda *a, **k: pytest.fail("the cached call trained again"))
    again, tokenizer2, result2 = lm.pretrain_lm("lm-test", CORPUS, **kwargs)
    assert result2.key == result.key and result2.history == result.history
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert tokenizer2.decode(tokenizer2(CODE, add_special_tokens=False)["input_ids"]) == CODE
    with pytest.raises(ValueError, match="lm-tiny"):
        lm.pretrain_lm("lm-huge", CORPUS, **kwargs)


def test_load_checkpoint_reads_a_local_llama(tmp_path, tokenizer, model):
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "ckpt")
    ids = torch.tensor([tokenizer("def f(x):", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded_tokenizer.decode(loaded_tokenizer(CODE, add_special_tokens=False)["input_ids"]) == CODE


def test_load_checkpoint_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*config\.json"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"gpt.*'gpt2'.*'llama'"):
        load_checkpoint(tmp_path / "gpt")
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_checkpoint(tmp_path / "gpt")


def test_answer_token_accuracy_counts_answer_tokens_and_eos(tokenizer):
    examples = [Example("Tom has 4.", " 11", "11"), Example("Question: 2 + 1?\nAnswer:", " B", "B")]
    oracle = FixedLogits(len(tokenizer))  # sees the next token: every answer token right
    assert answer_token_accuracy(oracle, examples, tokenizer, context=48, device=CPU, batch_size=1) == 100.0
    answers = [len(tokenizer(ex.answer, add_special_tokens=False)["input_ids"]) + 1 for ex in examples]
    always_eos = FixedLogits(len(tokenizer), tokenizer.eos_token_id)  # right on eos only
    accuracy = answer_token_accuracy(always_eos, examples, tokenizer, context=48, device=CPU)
    assert accuracy == pytest.approx(100.0 * len(examples) / sum(answers))


def test_score_choice_picks_the_likeliest_letter_continuation(tokenizer):
    examples = [Example(f"Question {i}\nAnswer:", f" {r}", r) for i, r in enumerate("BBAC")]
    b_token = tokenizer(" B", add_special_tokens=False)["input_ids"][-1]  # where " B" is two tokens, the second decides
    stub = FixedLogits(len(tokenizer), b_token)
    assert score(stub, "choice", examples, tokenizer, context=48, device=CPU, max_new_tokens=1) == lm.Score(50.0, 4)


def test_score_works_through_a_peft_lora_wrapper(tokenizer, model):
    wrapped = get_peft_model(build_lm(TINY, tokenizer, seed=0), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    examples = [Example(f"Question: what is {i} + 1?\nAnswer:", f" {r}", r) for i, r in enumerate("ABCDAB")]
    base = score(model, "choice", examples, tokenizer, context=48, device=CPU, max_new_tokens=1)
    assert score(wrapped, "choice", examples, tokenizer, context=48, device=CPU, max_new_tokens=1) == base
    prompts = [lm._prompt_ids(tokenizer, ex.prompt, 46) for ex in examples[:2]]
    greedy = dict(max_new_tokens=5, context=48, stop=lambda _: False, device=CPU)
    assert lm._greedy(wrapped, prompts, tokenizer, **greedy) == lm._greedy(model, prompts, tokenizer, **greedy)
    assert wrapped.training  # its mode is restored


def test_greedy_batched_with_left_padding_matches_generate(tokenizer, model):
    prompts = [lm._prompt_ids(tokenizer, p, 46) for p in ("Tom has 3 apples", "def f(x):\n    return", "A")]
    texts = lm._greedy(model, prompts, tokenizer, max_new_tokens=6, context=48, stop=lambda _: False, device=CPU)
    for row, text in zip(prompts, texts, strict=True):
        ids = torch.tensor([row])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
        assert text == tokenizer.decode(out[0, len(row) :], skip_special_tokens=True)


def test_score_number_extracts_the_answer(tokenizer, monkeypatch):
    examples = [Example("Q1", "", "18"), Example("Q2", "", "1200"), Example("Q3", "", "7"), Example("Q4", "", "5")]
    outputs = ["3 + 15 = 18\n#### 18", "It costs 1,200 dollars.", "#### 8 not 7", "no idea"]
    monkeypatch.setattr(lm, "_greedy", lambda *a, **k: outputs)
    scored = score(
        FixedLogits(len(tokenizer), 0), "number", examples, tokenizer, context=48, device=CPU, max_new_tokens=8
    )
    assert scored == lm.Score(25.0, 4, flexible=75.0)  # strict needs "#### "; "1,200" and "7" only match leniently
    assert lm._number_done("so 18\n#### 18\n") and not lm._number_done("so 18\n#### 18")


def test_score_code_runs_the_completion_in_the_sandbox(tokenizer, monkeypatch):
    prompt = 'def add(a, b):\n    """Sum of a and b."""\n'
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    examples = [Example(prompt, "", tests, entry_point="add")]
    monkeypatch.setattr(lm, "_greedy", lambda *a, **k: ["    return a + b\n\nprint(undefined_name)\n"])
    assert (
        score(
            FixedLogits(len(tokenizer), 0), "code", examples, tokenizer, context=48, device=CPU, max_new_tokens=8
        ).points
        == 100.0
    )
    monkeypatch.setattr(lm, "_greedy", lambda *a, **k: ["    return a - b\n"])
    assert (
        score(
            FixedLogits(len(tokenizer), 0), "code", examples, tokenizer, context=48, device=CPU, max_new_tokens=8
        ).points
        == 0.0
    )


@pytest.mark.parametrize(
    ("text", "body", "done"),
    [
        ("    x = 1\n\n    return x\ndef g", "    x = 1\n\n    return x\n", True),
        ("\n    return 1\n", "\n    return 1\n", False),
        ("    return 1\n  ", "    return 1\n  ", False),
    ],
)
def test_code_body_ends_at_the_first_unindented_line(text, body, done):
    assert lm._code_body(text) == (body, done)
