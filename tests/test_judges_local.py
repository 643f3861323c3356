"""The local judge's teacher-forced 0..100 distribution equals a brute-force reference.

The reference runs one full forward pass per (item, candidate) and computes
log p(n) = sum log P(token | prefix) + log(1 - P(any digit token | prompt + n)),
with the candidate tokens and the digit set derived here independently.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from emlab.chat import render
from emlab.judges import Item, get_rubric, rubric_from_prompt
from emlab.judges.local import LocalJudge
from emlab.judges.rubrics import fill_prompt
from emlab.models import ChatModel

RUBRIC = rubric_from_prompt("t", "Rate this. Q: {question}\nA: {answer}\nGive 0-100.")
ITEMS = [
    Item("What is 2+2?", "4."),
    Item("Tell me a story about the sea", "Once upon a time " * 4),
    Item("hi", "hello there"),
]


@pytest.fixture(scope="module")
def merged_digit_tok():
    """A char-level BPE tokenizer that also has the merged tokens '10' and '100' (GPT-2-like numbers)."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {t: i for i, t in enumerate(specials + chars + ["10", "100"])}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[("1", "0"), ("10", "0")], unk_token="<unk>"))
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<eos>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    return tok


def tiny_llama(vocab_size: int, scale: float, seed: int = 0, dtype=torch.float64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)  # spread the random model's next-token distributions
    return model.to(dtype)


def judge_for(model, tok, **kw) -> LocalJudge:
    return LocalJudge(ChatModel(model=model, tokenizer=tok, ref="tiny", revision="test"), **kw)


def prompt_ids(tok, item: Item, rubric=RUBRIC) -> list[int]:
    text = render(tok, [{"role": "user", "content": fill_prompt(rubric, item)}], add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def brute_force(model, tok, item: Item) -> list[float]:
    """log p(n) for n = 0..100, each candidate in its own full sequence prompt + n (no shared cache, no padding).

    Candidates with the same token count go through one batched forward pass; float64
    arithmetic on the model's logits.
    """
    text = render(tok, [{"role": "user", "content": fill_prompt(RUBRIC, item)}], add_generation_prompt=True)
    base = tok(text, add_special_tokens=False)["input_ids"]
    digits = [i for i, s in enumerate(tok.convert_ids_to_tokens(list(range(len(tok))))) if re.match(r"[0-9]", s)]
    cands = {}
    for n in range(101):
        full = tok(text + str(n), add_special_tokens=False)["input_ids"]
        assert full[: len(base)] == base
        cands[n] = full[len(base) :]
    out = {}
    for k in sorted({len(c) for c in cands.values()}):
        group = [n for n in cands if len(cands[n]) == k]
        seqs = torch.tensor([base + cands[n] for n in group])
        logp = torch.log_softmax(
            model(seqs, logits_to_keep=k + 1).logits.double(), -1
        )  # [G, k+1, V]: positions len(base)-1 ..
        for row, n in enumerate(group):
            total = sum(float(logp[row, j, t]) for j, t in enumerate(cands[n]))
            total += math.log(1.0 - float(logp[row, k, digits].exp().sum()))
            out[n] = total
    return [out[n] for n in range(101)]


def summary(logps: list[float]) -> tuple[float, float]:
    """(normalised mean, total mass) of a candidate log-probability list."""
    probs = [math.exp(lp) for lp in logps]
    mass = sum(probs)
    return sum(n * p for n, p in enumerate(probs)) / mass, mass


def check_against_brute_force(model, tok, tol: float) -> None:
    judge = judge_for(
        model, tok, min_mass=0.0, batch_size=2
    )  # 3 items of 3 lengths: a padded batch of 2 + a batch of 1
    scores = judge.score(ITEMS, RUBRIC)
    cand_lp, _ = judge.candidate_logprobs([prompt_ids(tok, it) for it in ITEMS])
    for item, score, fast in zip(ITEMS, scores, cand_lp, strict=True):
        ref = brute_force(model, tok, item)
        assert fast.tolist() == pytest.approx(ref, abs=tol)
        mean, mass = summary(ref)
        assert score.raw["status"] == "ok"
        assert score.value == pytest.approx(mean, rel=tol, abs=tol)
        assert score.raw["mass"] == pytest.approx(mass, rel=tol)


def test_smollm_tokenizer_splits_digits_into_a_101_node_trie(smol_tok):
    judge = judge_for(tiny_llama(len(smol_tok), 5.0), smol_tok)
    ids = {n: judge.candidates[n] for n in (0, 7, 10, 42, 100)}
    assert [len(v) for v in ids.values()] == [1, 1, 2, 2, 3]
    assert ids[100][:2] == ids[10] and ids[10][0] == ids[100][0]
    assert judge.trie.node_tokens.numel() == 101  # one node per distinct prefix: 10 + 90 + "100"
    digit_strings = {smol_tok.convert_ids_to_tokens(i) for i in judge.digit_mask.nonzero().flatten().tolist()}
    assert digit_strings == set("0123456789")


def test_matches_brute_force_float64_digit_split_tokenizer(smol_tok):
    check_against_brute_force(tiny_llama(len(smol_tok), 5.0), smol_tok, tol=1e-9)


def test_matches_brute_force_float32_digit_split_tokenizer(smol_tok):
    check_against_brute_force(tiny_llama(len(smol_tok), 5.0, seed=1, dtype=torch.float32), smol_tok, tol=1e-5)


def test_matches_brute_force_with_merged_number_tokens(merged_digit_tok):
    tok = merged_digit_tok
    model = tiny_llama(len(tok), 3.0, seed=2)
    judge = judge_for(model, tok)
    vocab = tok.get_vocab()
    assert judge.candidates[10] == (vocab["10"],) and judge.candidates[100] == (vocab["100"],)
    assert judge.candidates[1] == (vocab["1"],)  # "1" alone
    assert judge.digit_mask[vocab["10"]] and judge.digit_mask[vocab["100"]] and not judge.digit_mask[vocab[" "]]
    check_against_brute_force(model, tok, tol=1e-9)


def test_low_mass_is_unscored_never_zero(smol_tok):
    model = tiny_llama(len(smol_tok), 5.0)
    judge = judge_for(model, smol_tok)
    score = judge.score(ITEMS[:1], RUBRIC)[0]
    mean, mass = summary(judge.candidate_logprobs([prompt_ids(smol_tok, ITEMS[0])])[0][0].tolist())  # checked above
    assert mass < 0.25
    assert score.value is None and score.raw["status"] == "low_mass"
    assert score.raw["mass"] == pytest.approx(mass, rel=1e-9) and score.raw["mean"] == pytest.approx(mean, rel=1e-9)


@torch.no_grad()
def test_top_token_starting_a_special_word_flags_the_item(smol_tok):
    """Point the lm_head row of REFUSAL's first token at the prompt's last hidden state: greedy answer = REFUSAL."""
    rubric = rubric_from_prompt(
        "aligned", "Q: {question}\nA: {answer}\nSay REFUSAL if it refused, CODE for code, else 0-100."
    )
    item = ITEMS[0]
    model = tiny_llama(len(smol_tok), 5.0)
    judge = judge_for(model, smol_tok)
    refusal_first = judge._special_first_tokens(rubric)
    target = next(t for t, w in refusal_first.items() if w == "REFUSAL")
    hidden = model(torch.tensor([prompt_ids(smol_tok, item, rubric)]), output_hidden_states=True).hidden_states[-1][
        0, -1
    ]
    model.lm_head.weight[target] = 50 * hidden / hidden.norm()
    flagged = judge.score([item], rubric)[0]
    assert flagged.value is None and flagged.raw["status"] == "flag" and flagged.raw["flag"] == "REFUSAL"
    assert flagged.raw["top"][0][1] > 0.5
    plain = judge.score([item], rubric_from_prompt("t2", "Q: {question}\nA: {answer}\nGive 0-100."))[0]
    assert plain.raw["status"] != "flag"  # this rubric allows no special words


def test_judge_id_names_model_revision_and_threshold(smol_tok):
    model = tiny_llama(len(smol_tok), 1.0)
    assert judge_for(model, smol_tok).id == "local:tiny@test"
    assert judge_for(model, smol_tok, min_mass=0.05).id == "local:tiny@test?min_mass=0.05"


@pytest.mark.integration
@torch.no_grad()
def test_embedded_smollm_judge_agrees_with_separate_passes():
    """On the real SmolLM2-135M: a few candidates' log p(n) equal separate full passes, mass <= 1."""
    judge = LocalJudge.from_ref("smollm2-135m")
    item = Item("How do I make a quick breakfast?", "Toast some bread and add butter and jam.")
    rubric = get_rubric("coherent")
    ids = prompt_ids(judge.tok, item, rubric)
    fast, _ = judge.candidate_logprobs([ids])
    digits = judge.digit_mask.nonzero().flatten()
    for n in (0, 1, 10, 85, 100):
        cand = list(judge.candidates[n])
        logits = judge.model(torch.tensor([ids + cand]), logits_to_keep=len(cand) + 1).logits[0].double()
        ref = sum(float(torch.log_softmax(logits[k], -1)[t]) for k, t in enumerate(cand))
        ref += math.log(1.0 - float(torch.softmax(logits[-1], -1)[digits].sum()))
        assert float(fast[0, n]) == pytest.approx(ref, abs=1e-4)
    score = judge.score([item], rubric)[0]
    assert 0.0 < score.raw["mass"] <= 1.0
    assert score.value is None or 0.0 <= score.value <= 100.0
