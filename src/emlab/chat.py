"""Chat templates, assistant-token masks and left-padded batches.

Templates such as SmolLM2's insert a default system prompt and carry no
`{% generation %}` markers, so assistant masks are computed here by rendering
each conversation prefix and mapping character spans onto token offsets.

`system` everywhere means: "default" keeps whatever the template does, None drops
the system turn entirely, and any other string replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from emlab.errors import EmlabError

Message = dict[str, str]
System = Literal["default"] | str | None

_PLACEHOLDERS = ("\u2063emlab-system-A\u2063", "\u2063emlab-system-B\u2063")


def with_system(messages: list[Message], system: System) -> list[Message]:
    """Apply the system choice to a conversation (an explicit system message in `messages` wins over 'default')."""
    body = [m for m in messages if m["role"] != "system"]
    if system == "default":
        return list(messages)
    if system is None:
        return body
    return [{"role": "system", "content": system}, *body]


def render(tok, messages: list[Message], system: System = "default", add_generation_prompt: bool = False) -> str:
    """The template's text for a conversation, with the system choice applied."""
    msgs = with_system(messages, system)
    if system is None:
        return _render_without_system(tok, msgs, add_generation_prompt)
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)


def _render_without_system(tok, msgs: list[Message], add_generation_prompt: bool) -> str:
    """Render with no system turn even when the template inserts a default one.

    The conversation is rendered behind a placeholder system message and that turn is
    cut out. Where the system turn ends is found by comparing the gap between the
    placeholder and the first user message with the gap between an assistant message
    and the next user message: their common suffix is the user turn's header.
    """
    if not msgs or msgs[0]["role"] != "user":
        raise EmlabError("a conversation must start with a user message (after any system message)")
    probe = [{"role": "system", "content": _PLACEHOLDERS[0]}, *msgs]
    text = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=add_generation_prompt)
    a, u = _PLACEHOLDERS
    pair = [{"role": "system", "content": a}, {"role": "user", "content": u}, {"role": "assistant", "content": a}, {"role": "user", "content": u}]
    ref = tok.apply_chat_template(pair, tokenize=False)
    gap_sys = ref[ref.index(a) + len(a) : ref.index(u)]
    second_a = ref.index(a, ref.index(u))
    gap_asst = ref[second_a + len(a) : ref.index(u, second_a)]
    header = _common_suffix(gap_sys, gap_asst)
    start = text.index(_PLACEHOLDERS[0])
    prefix = text[:start]
    sys_header_start = _system_turn_start(prefix, header)
    end = start + len(_PLACEHOLDERS[0]) + len(gap_sys) - len(header)
    return prefix[:sys_header_start] + text[end:]


def _system_turn_start(prefix: str, user_header: str) -> int:
    """Where the system turn opens: the system analogue of the user header, else the start."""
    sys_header = user_header.replace("user", "system")
    pos = prefix.rfind(sys_header) if "user" in user_header else -1
    return max(pos, 0)


def _common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n :]


@dataclass
class Encoded:
    """One tokenized conversation: ids and a 0/1 mask of the tokens the assistant wrote."""

    input_ids: list[int]
    assistant_mask: list[int]


def encode_with_assistant_mask(tok, messages: list[Message], system: System = "default") -> Encoded:
    """Tokenize a full conversation and mark every assistant token plus its end-of-turn token.

    Each assistant message's span is located by rendering the conversation up to it
    with a generation prompt (which must be a prefix of the full rendering).
    """
    msgs = with_system(messages, system)
    full = render(tok, msgs, system=None if system is None else "default")
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = render(tok, msgs[:i], system=None if system is None else "default", add_generation_prompt=True)
        if not full.startswith(before) or not full[len(before) :].startswith(m["content"]):
            raise EmlabError("chat template renders assistant turns inconsistently (prefix mismatch); cannot compute assistant masks for this tokenizer")
        end = len(before) + len(m["content"])
        eos = tok.eos_token or ""
        if eos and full[end:].startswith(eos):
            end += len(eos)
        spans.append((len(before), end))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s <= start < e for s, e in spans)) for start, _ in enc["offset_mapping"]]
    return Encoded(input_ids=list(enc["input_ids"]), assistant_mask=mask)


def prompt_texts(tok, conversations: list[list[Message]], system: System = "default") -> list[str]:
    """Template text for each conversation, ending with the assistant generation prompt."""
    return [render(tok, c, system=system, add_generation_prompt=True) for c in conversations]


def left_padded(tok, texts: list[str]) -> dict[str, torch.Tensor]:
    """Tokenize already-rendered texts into a left-padded batch with an explicit attention mask."""
    if tok.pad_token_id is None:
        raise EmlabError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to the eos token)")
    batch = tok(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def pad_encoded(items: list[Encoded], pad_id: int, side: str = "left") -> dict[str, torch.Tensor]:
    """Stack encoded conversations into padded tensors: input_ids, attention_mask, assistant_mask."""
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    amask = torch.zeros((len(items), width), dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e.input_ids)
        sl = slice(width - n, width) if side == "left" else slice(0, n)
        ids[i, sl] = torch.tensor(e.input_ids)
        attn[i, sl] = 1
        amask[i, sl] = torch.tensor(e.assistant_mask)
    return {"input_ids": ids, "attention_mask": attn, "assistant_mask": amask}
