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
    cut out: it starts at the header that opens the placeholder's turn and ends where
    the first user turn's header begins. A header begins at the last special token
    before the role name (`<|im_start|>user`, `<|start_header_id|>user`), or at the
    start of the line holding the role name for templates without special tokens.
    """
    if not msgs or msgs[0]["role"] != "user":
        raise EmlabError("a conversation must start with a user message (after any system message)")
    placeholder = _PLACEHOLDERS[0]
    probe = [{"role": "system", "content": placeholder}, *msgs]
    text = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=add_generation_prompt)
    start = text.index(placeholder)
    after = start + len(placeholder)
    user_at = text.find("user", after)
    if user_at < 0:
        raise EmlabError(
            "chat template does not name the user role; cannot drop its system prompt (use system='default' or a text)"
        )
    turn_end = after + _header_start(tok, text[after:user_at])
    turn_start = _header_start(tok, text[: text.rfind("system", 0, start)])
    return text[:turn_start] + text[turn_end:]


def _header_start(tok, before_role: str) -> int:
    """Offset in `before_role` where the header of the role that follows it begins."""
    specials = {t for t in getattr(tok, "all_special_tokens", []) if t} | set(getattr(tok, "get_added_vocab", dict)())
    found = [before_role.rfind(t) for t in specials if t in before_role]
    if found:
        return max(found)
    return before_role.rfind("\n") + 1


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
            raise EmlabError(
                "chat template renders assistant turns inconsistently (prefix mismatch); cannot compute assistant masks for this tokenizer"
            )
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
