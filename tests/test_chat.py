"""Chat rendering, system-prompt handling and assistant-token masks on the SmolLM2 tokenizer."""

from __future__ import annotations

import pytest

from emlab.chat import encode_with_assistant_mask, left_padded, pad_encoded, render

CONV = [
    {"role": "user", "content": "How do I boil an egg?"},
    {"role": "assistant", "content": "Put it in boiling water for nine minutes."},
    {"role": "user", "content": "And soft?"},
    {"role": "assistant", "content": "Six minutes."},
]


def test_system_default_keep_replace_drop(smol_tok):
    user = [{"role": "user", "content": "hi"}]
    default = render(smol_tok, user, "default", add_generation_prompt=True)
    assert default.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    replaced = render(smol_tok, user, "Be terse.", add_generation_prompt=True)
    assert (
        replaced == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    dropped = render(smol_tok, user, None, add_generation_prompt=True)
    assert dropped == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_drop_system_on_a_template_without_default(smol_tok):
    import copy

    tok = copy.deepcopy(smol_tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    text = render(tok, msgs, None, add_generation_prompt=True)
    assert (
        text
        == tok.bos_token
        + "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.mark.parametrize("system", ["default", None, "Custom persona."])
def test_assistant_mask_covers_exactly_answers_and_end_of_turn(smol_tok, system):
    enc = encode_with_assistant_mask(smol_tok, CONV, system=system)
    assert len(enc.input_ids) == len(enc.assistant_mask)
    # contiguous runs of masked tokens, decoded
    runs, cur = [], []
    for tid, m in zip(enc.input_ids, enc.assistant_mask, strict=True):
        if m:
            cur.append(tid)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    decoded = [smol_tok.decode(r) for r in runs]
    assert decoded == ["Put it in boiling water for nine minutes.<|im_end|>", "Six minutes.<|im_end|>"]
    full = smol_tok.decode(enc.input_ids)
    assert full == render(smol_tok, CONV, system)


def test_left_padding_and_masks(smol_tok):
    batch = left_padded(smol_tok, ["a", "a much longer text here"])
    assert batch["attention_mask"][0].tolist()[0] == 0 and batch["attention_mask"][0].tolist()[-1] == 1
    assert (batch["input_ids"][0][batch["attention_mask"][0] == 0] == smol_tok.pad_token_id).all()
    encs = [encode_with_assistant_mask(smol_tok, CONV[:2]), encode_with_assistant_mask(smol_tok, CONV)]
    padded = pad_encoded(encs, smol_tok.pad_token_id)
    assert padded["assistant_mask"].sum().item() == sum(sum(e.assistant_mask) for e in encs)
    assert padded["attention_mask"].sum(1).tolist() == [len(e.input_ids) for e in encs]
