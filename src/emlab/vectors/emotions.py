"""Emotion vectors: one direction per emotion from short stories, with valence/arousal norms attached.

Recipe (per site `blocks.{l}.resid_post` = HF hidden_states[l+1]):
1. Stories: `generate_stories` builds len(situations) x per_situation stories per emotion from
   `data/emotion_stories.yaml` (several topics, characters and openings; most reactions show the emotion
   without naming it).
2. Story activation: each story is a plain text (no chat template); the site's activation is averaged over
   the token positions >= `offset` (a warm-up: the first tokens do not yet carry the emotion).
3. raw[e] = mean over emotion e's stories of the story activations                     [E, d]
4. centred[e] = raw[e] - mean_e raw[e]          (what is common to all emotional stories is removed)
5. Neutral texts (`neutral` in the same file) are measured the same way; their principal components
   (of the neutral activations centred on their own mean) that together explain `neutral_variance` of the
   neutral variance, V [k, d] with orthonormal rows, are projected out:
       vector[e] = centred[e] - (centred[e] V^T) V
   so every emotion vector is orthogonal to each removed component (tested), and the mean over emotions
   stays exactly zero (the projection is linear).

`EmotionVectors` holds the vectors of every site ([E, d] each), the raw means, the removed components, the
ratings from `data/emotions.yaml` (Warriner et al. 2013) and provenance, and is saved as
`emotion_vectors.safetensors` + `emotion_vectors.json` (atomic writes). `.direction(name)` gives one
emotion as a `Direction`, so steering, ablation and projection tools take it unchanged.

`readout(cm, texts, ev, site)` gives per-token dot products of the residual stream with chosen emotion
vectors (unit vectors by default): exactly `hidden_states[l+1][t] @ v_e`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emlab.errors import EmlabError

DATA_DIR = Path(__file__).with_name("data")
EMOTIONS_PATH = DATA_DIR / "emotions.yaml"
STORIES_PATH = DATA_DIR / "emotion_stories.yaml"
FORMAT = "emlab.emotion_vectors/v1"
VECTORS_FILE = "emotion_vectors.safetensors"
META_FILE = "emotion_vectors.json"
PRONOUNS = {"she": {"sub": "she", "obj": "her", "pos": "her"}, "he": {"sub": "he", "obj": "him", "pos": "his"}}


def _yaml(path: Path):
    from emlab.strict_yaml import load_yaml_file

    if not path.exists():
        raise EmlabError(f"{path}: file not found; pass an existing YAML file")
    return load_yaml_file(path)


# ---------------------------------------------------------------- the emotion list and its norms


@dataclass(frozen=True)
class Emotion:
    name: str
    valence: float  # Warriner et al. 2013 V.Mean.Sum, 1 (unhappy) .. 9 (happy)
    arousal: float  # A.Mean.Sum, 1 (calm) .. 9 (excited)
    dominance: float | None = None


@dataclass(frozen=True)
class EmotionList:
    emotions: tuple[Emotion, ...]
    norms: dict[str, str]
    source: str

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.emotions]

    def get(self, name: str) -> Emotion:
        for e in self.emotions:
            if e.name == name:
                return e
        raise EmlabError(f"unknown emotion {name!r} ({self.source}); known: {', '.join(self.names[:10])}, ...")


def load_emotions(path: str | os.PathLike | None = None) -> EmotionList:
    """The emotion list with valence/arousal ratings (default: the shipped `data/emotions.yaml`)."""
    p = Path(path) if path else EMOTIONS_PATH
    doc = _yaml(p)
    data = doc.data
    if not isinstance(data, dict) or set(data) - {"version", "norms", "emotions"} or data.get("version") != 1:
        raise EmlabError(
            f"{p}: expected a mapping with version: 1, norms and emotions (keys found: {sorted(data) if isinstance(data, dict) else type(data).__name__})"
        )
    out, seen = [], set()
    for i, e in enumerate(data.get("emotions") or []):
        where = doc.where(f"emotions.{i}")
        if not isinstance(e, dict) or "name" not in e or "valence" not in e or "arousal" not in e:
            raise EmlabError(f"{where}: each emotion needs name, valence and arousal (numbers from the cited norms)")
        extra = set(e) - {"name", "valence", "arousal", "dominance", "n_valence", "n_arousal"}
        if extra:
            raise EmlabError(
                f"{where}: unknown keys {sorted(extra)}; allowed: name, valence, arousal, dominance, n_valence, n_arousal"
            )
        for key in ("valence", "arousal"):
            v = e[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 9:
                raise EmlabError(f"{where}: {key}={v!r} of {e['name']!r} must be a number on the norms' 1-9 scale")
        if e["name"] in seen:
            raise EmlabError(f"{where}: emotion {e['name']!r} is listed twice; keep one")
        seen.add(e["name"])
        out.append(
            Emotion(
                str(e["name"]),
                float(e["valence"]),
                float(e["arousal"]),
                None if e.get("dominance") is None else float(e["dominance"]),
            )
        )
    if len(out) < 3:
        raise EmlabError(f"{p}: {len(out)} emotions; list at least 3 (the geometry needs more, 40+ recommended)")
    return EmotionList(tuple(out), {str(k): str(v) for k, v in (data.get("norms") or {}).items()}, str(p))


# ---------------------------------------------------------------- stories


@dataclass(frozen=True)
class StoryBank:
    characters: tuple[tuple[str, str], ...]  # (name, pronoun)
    openings: tuple[str, ...]
    stories: dict[str, dict[str, list]]  # emotion -> {"situations": [(topic, text)], "reactions": [text]}
    neutral: tuple[str, ...]
    source: str
    sha256: str


@dataclass(frozen=True)
class Story:
    id: str
    emotion: str
    topic: str
    text: str


def load_stories(path: str | os.PathLike | None = None) -> StoryBank:
    """The story bank (default: the shipped `data/emotion_stories.yaml`); strict about its layout."""
    p = Path(path) if path else STORIES_PATH
    doc = _yaml(p)
    d = doc.data
    keys = {"version", "characters", "openings", "stories", "neutral"}
    if not isinstance(d, dict) or set(d) != keys or d["version"] != 1:
        raise EmlabError(f"{p}: expected exactly the keys {sorted(keys)} with version: 1")
    chars = []
    for i, c in enumerate(d["characters"]):
        if not isinstance(c, dict) or c.get("pronoun") not in PRONOUNS or not c.get("name"):
            raise EmlabError(f"{doc.where(f'characters.{i}')}: a character needs a name and pronoun she or he")
        chars.append((str(c["name"]), c["pronoun"]))
    stories: dict[str, dict[str, list]] = {}
    for emo, block in d["stories"].items():
        where = doc.where(f"stories.{emo}")
        if not isinstance(block, dict) or set(block) != {"situations", "reactions"}:
            raise EmlabError(f"{where}: emotion {emo!r} needs exactly situations and reactions")
        sits = []
        for j, s in enumerate(block["situations"]):
            if not isinstance(s, dict) or set(s) != {"topic", "text"}:
                raise EmlabError(f"{doc.where(f'stories.{emo}.situations.{j}')}: a situation is {{topic, text}}")
            sits.append((str(s["topic"]), str(s["text"])))
        reacts = [str(r) for r in block["reactions"]]
        if len(sits) < 1 or len(reacts) < 2:
            raise EmlabError(f"{where}: emotion {emo!r} needs at least 1 situation and 2 reactions")
        stories[str(emo)] = {"situations": sits, "reactions": reacts}
    neutral = tuple(str(t) for t in d["neutral"])
    if len(neutral) < 2:
        raise EmlabError(f"{p}: list at least 2 neutral texts")
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    return StoryBank(tuple(chars), tuple(str(o) for o in d["openings"]), stories, neutral, str(p), sha)


def _fill(template: str, name: str, pronoun: str, where: str) -> str:
    pr = PRONOUNS[pronoun]
    values = {"name": name, **pr, **{k.capitalize(): v.capitalize() for k, v in pr.items()}}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise EmlabError(
            f"{where}: bad placeholder {e} in {template[:60]!r}; use {{sub}} {{Sub}} {{obj}} {{pos}} {{Pos}} {{name}}"
        ) from None


def generate_stories(
    bank: StoryBank, emotions: Sequence[str], per_situation: int = 3, both_genders: bool = False
) -> list[Story]:
    """len(situations) x per_situation stories per emotion: '{opening} {name} {situation}. {reaction a} {reaction b}'.

    Characters, openings and reaction pairs rotate deterministically (story k of an emotion uses
    reactions k and k+1, in alternating order), so texts differ in who, when, what happens and how it shows.
    With an odd number of stories per emotion the rotation gives one gender one story more (5 / 4 for 9);
    `both_genders` writes every story twice, with the rotated character and with the next character of the
    other pronoun, so each emotion's mean holds as many she- as he-stories (ids end in /she and /he).
    """
    if per_situation < 1:
        raise EmlabError(f"per_situation={per_situation} must be >= 1")
    missing = [e for e in emotions if e not in bank.stories]
    if missing:
        raise EmlabError(
            f"{bank.source}: no stories for emotions {missing}; add a block for each under `stories:` or drop them from the emotion list"
        )
    out = []
    for ei, emo in enumerate(emotions):
        block = bank.stories[emo]
        reacts = block["reactions"]
        k = 0
        for si, (topic, situation) in enumerate(block["situations"]):
            for j in range(per_situation):
                name, pronoun = bank.characters[(ei * 7 + k * 3) % len(bank.characters)]
                opening = bank.openings[(ei + k) % len(bank.openings)]
                a, b = reacts[k % len(reacts)], reacts[(k + 1) % len(reacts)]
                if k % 2:
                    a, b = b, a
                where = f"{bank.source}: stories.{emo}"
                cast = [(name, pronoun)]
                if both_genders:
                    cast.append(_other_gender(bank, (ei * 7 + k * 3) % len(bank.characters)))
                for name, pronoun in cast:
                    text = f"{opening} {name} {_fill(situation, name, pronoun, where)}. {_fill(a, name, pronoun, where)} {_fill(b, name, pronoun, where)}"
                    tail = f"/{pronoun}" if both_genders else ""
                    out.append(Story(f"{emo}/{si}/{j}{tail}", emo, topic, text))
                k += 1
    return out


def _other_gender(bank: StoryBank, i: int) -> tuple[str, str]:
    """The first character after index i (cyclically) whose pronoun differs from character i's."""
    n = len(bank.characters)
    for step in range(1, n):
        c = bank.characters[(i + step) % n]
        if c[1] != bank.characters[i][1]:
            return c
    raise EmlabError(f"{bank.source}: both_genders needs characters with both pronouns (she and he)")


# ---------------------------------------------------------------- activations of plain texts


def text_batches(tok, texts: Sequence[str], offset: int, batch_size: int = 16):
    """Yield (row indices, batch) with right-padded input_ids, attention_mask and a mask of positions >= offset.

    The mask travels as `assistant_mask`, the key `directions.forward_answers` reads, so the same
    teacher-forced capture measures stories. Shortest texts first.
    """
    if tok.pad_token_id is None:
        raise EmlabError("tokenizer has no pad token; set tokenizer.pad_token")
    ids = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
    for i, x in enumerate(ids):
        if len(x) <= offset:
            raise EmlabError(
                f"text #{i} has {len(x)} tokens, not more than offset={offset}; lower --offset or lengthen the text: {texts[i][:50]!r}"
            )
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
            attn[r, : len(ids[i])] = 1
        pos = torch.arange(width)[None, :]
        yield (
            idx,
            {"input_ids": input_ids, "attention_mask": attn, "assistant_mask": (attn.bool() & (pos >= offset)).long()},
        )


def text_activations(
    cm, texts: Sequence[str], sites: Sequence[str], offset: int = 0, batch_size: int = 16, progress=None
) -> torch.Tensor:
    """Mean activation over token positions >= offset of each plain text. -> [n, len(sites), d] fp32."""
    from emlab.vectors.directions import forward_answers

    if not texts:
        raise EmlabError("no texts to measure")
    out = torch.empty(len(texts), len(sites), cm.model.config.hidden_size)
    for idx, batch in text_batches(cm.tokenizer, texts, offset, batch_size):
        cap = forward_answers(cm, batch, sites)
        for j, s in enumerate(sites):
            out[idx, j] = cap.stack(s)
        if progress:
            progress(len(idx))
    return out


# ---------------------------------------------------------------- the math


def neutral_components(
    neutral: torch.Tensor, variance: float = 0.5, max_components: int | None = None
) -> tuple[torch.Tensor, list[float]]:
    """Top principal components of neutral activations [n, d] that explain >= `variance` of their variance.

    -> (V [k, d] orthonormal rows, explained-variance ratios of the kept components). variance=0 keeps none.
    """
    if not 0 <= variance < 1:
        raise EmlabError(f"neutral_variance={variance} must be in [0, 1)")
    if variance == 0:
        return torch.zeros(0, neutral.shape[1]), []
    x = neutral.double() - neutral.double().mean(0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    ratio = (s**2) / (s**2).sum()
    k = int((torch.cumsum(ratio, 0) < variance).sum()) + 1
    k = min(k, max_components or k, vh.shape[0])
    return vh[:k].float(), [float(r) for r in ratio[:k]]


def project_out(x: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """x - (x V^T) V for orthonormal rows V [k, d]; x [..., d]."""
    if components.shape[0] == 0:
        return x.clone()
    v = components.double()
    xd = x.double()
    return (xd - (xd @ v.T) @ v).float()


def emotion_means(acts: torch.Tensor, labels: Sequence[str], emotions: Sequence[str]) -> torch.Tensor:
    """Per-emotion mean of story activations. acts [n, ...], labels [n] -> [E, ...] (fp32, averaged in fp64)."""
    rows = []
    for e in emotions:
        idx = [i for i, l in enumerate(labels) if l == e]
        if not idx:
            raise EmlabError(f"no story activations for emotion {e!r}")
        rows.append(acts[idx].double().mean(0))
    return torch.stack(rows).float()


def emotion_vectors_from(raw: torch.Tensor, neutral_pcs: torch.Tensor) -> torch.Tensor:
    """raw [E, d] -> (raw - mean over emotions) with the neutral components projected out."""
    centred = raw.double() - raw.double().mean(0, keepdim=True)
    return project_out(centred, neutral_pcs)


# ---------------------------------------------------------------- the artifact


@dataclass
class EmotionVectors:
    """Emotion vectors per site ([E, d] each), the raw means, the removed neutral components and provenance."""

    emotions: list[Emotion]
    vectors: dict[str, torch.Tensor]  # site -> [E, d]
    raw: dict[str, torch.Tensor] = field(default_factory=dict)  # site -> [E, d] before centring / projection
    neutral_pcs: dict[str, torch.Tensor] = field(default_factory=dict)  # site -> [k, d]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        from emlab.vectors.directions import _site_key

        if not self.vectors:
            raise EmlabError("EmotionVectors needs at least one site")
        for site, m in self.vectors.items():
            if m.ndim != 2 or m.shape[0] != len(self.emotions) or not torch.isfinite(m).all():
                raise EmlabError(
                    f"emotion vectors at {site} must be a finite [{len(self.emotions)}, d] matrix, got {tuple(m.shape)}"
                )
        self.vectors = {s: self.vectors[s].float().contiguous() for s in sorted(self.vectors, key=_site_key)}

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.emotions]

    @property
    def sites(self) -> list[str]:
        return list(self.vectors)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise EmlabError(f"no emotion {name!r} in these vectors; they have: {', '.join(self.names)}")
        return self.names.index(name)

    def matrix(self, site: str) -> torch.Tensor:
        if site not in self.vectors:
            raise EmlabError(
                f"emotion vectors have no site {site!r}; they have {self.sites[0]} .. {self.sites[-1]} ({len(self.sites)} sites)"
            )
        return self.vectors[site]

    def vector(self, name: str, site: str) -> torch.Tensor:
        return self.matrix(site)[self.index(name)]

    def direction(self, name: str, sites: Sequence[str] | None = None):
        """One emotion as a `Direction` (for steering, ablation, projection)."""
        from emlab.vectors.directions import Direction

        sites = list(sites or self.sites)
        prov = {
            k: self.provenance.get(k)
            for k in ("format", "model", "revision", "adapter", "layer_convention", "created", "emlab_version")
        }
        return Direction(
            {s: self.vector(name, s) for s in sites},
            {**prov, "method": "emotion", "emotion": name, "source": self.provenance.get("source", "")},
        )

    def ratings(self, key: str = "valence") -> torch.Tensor:
        return torch.tensor([getattr(e, key) for e in self.emotions], dtype=torch.float64)

    def default_site(self) -> str:
        """The pre-chosen analysis site: the block at 2/3 depth of the model's blocks (stored at extraction)."""
        return self.provenance.get("default_site") or self.sites[len(self.sites) * 2 // 3]

    def without_neutral_projection(self) -> EmotionVectors:
        """The ablation: raw means minus their mean over emotions, no neutral components removed."""
        if not self.raw:
            raise EmlabError("these emotion vectors carry no raw means; re-extract them")
        vecs = {s: (r.double() - r.double().mean(0, keepdim=True)).float() for s, r in self.raw.items()}
        return EmotionVectors(
            list(self.emotions),
            vecs,
            dict(self.raw),
            {},
            {**self.provenance, "neutral_variance": 0.0, "variant": "centred only"},
        )

    def save(self, directory: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from emlab.io import atomic_path, write_json

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"vectors.{s}": m for s, m in self.vectors.items()}
        tensors.update({f"raw.{s}": m.float().contiguous() for s, m in self.raw.items()})
        tensors.update({f"neutral_pcs.{s}": m.float().contiguous() for s, m in self.neutral_pcs.items()})
        with atomic_path(folder / VECTORS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        meta = {**self.provenance, "format": FORMAT, "sites": self.sites, "emotions": [vars(e) for e in self.emotions]}
        write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EmotionVectors:
        from safetensors.torch import load_file

        from emlab.io import read_json

        folder = Path(directory)
        if not (folder / VECTORS_FILE).exists() or not (folder / META_FILE).exists():
            raise EmlabError(
                f"{folder} is not an emotion-vector folder (needs {VECTORS_FILE} and {META_FILE}); create one with `emlab emotions extract`"
            )
        meta = read_json(folder / META_FILE)
        t = load_file(str(folder / VECTORS_FILE))
        sites = meta.get("sites", [])
        missing = [s for s in sites if f"vectors.{s}" not in t]
        if missing:
            raise EmlabError(
                f"{folder}: {VECTORS_FILE} lacks sites {missing[:3]} listed in {META_FILE}; the folder is inconsistent, re-extract it"
            )
        emotions = [Emotion(**e) for e in meta["emotions"]]
        prov = {k: v for k, v in meta.items() if k not in ("sites", "emotions")}
        pick = lambda prefix: {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}  # noqa: E731
        return cls(emotions, {s: t[f"vectors.{s}"] for s in sites}, pick("raw."), pick("neutral_pcs."), prov)


def default_site(model) -> str:
    from emlab.sites import n_layers

    return f"blocks.{(2 * n_layers(model)) // 3}.resid_post"


def extract_emotion_vectors(
    cm,
    emotions: EmotionList | None = None,
    bank: StoryBank | None = None,
    sites: Sequence[str] | None = None,
    per_situation: int = 3,
    offset: int = 8,
    neutral_variance: float = 0.5,
    batch_size: int = 16,
    progress=None,
    both_genders: bool = False,
) -> tuple[EmotionVectors, list[Story]]:
    """Measure every story and neutral text and build the emotion vectors at each site (see the module docstring)."""
    from emlab.vectors.directions import make_provenance, resid_sites

    emotions = emotions or load_emotions()
    bank = bank or load_stories()
    sites = list(sites or resid_sites(cm.model))
    stories = generate_stories(bank, emotions.names, per_situation, both_genders)
    acts = text_activations(cm, [s.text for s in stories], sites, offset, batch_size, progress)  # [n, S, d]
    neutral = text_activations(cm, list(bank.neutral), sites, offset, batch_size, progress)  # [m, S, d]
    raw = emotion_means(acts, [s.emotion for s in stories], emotions.names)  # [E, S, d]
    vectors, raws, pcs, explained = {}, {}, {}, {}
    for j, site in enumerate(sites):
        v, ratio = neutral_components(neutral[:, j], neutral_variance)
        pcs[site], explained[site] = v, ratio
        raws[site] = raw[:, j]
        vectors[site] = emotion_vectors_from(raw[:, j], v)
    counts = {e: sum(s.emotion == e for s in stories) for e in emotions.names}
    ds = default_site(cm.model)
    prov = make_provenance(
        cm.provenance(),
        "emotion_stories",
        f"stories {bank.source} (sha256 {bank.sha256[:12]}), emotions {emotions.source}",
        counts,
        norms=emotions.norms,
        per_situation=per_situation,
        both_genders=both_genders,
        offset=offset,
        positions=f"plain text (no chat template), token positions >= {offset}, mean per story",
        neutral_texts=len(bank.neutral),
        neutral_variance=neutral_variance,
        neutral_components={s: len(r) for s, r in explained.items()},
        neutral_explained={s: round(sum(r), 4) for s, r in explained.items()},
        topics=sorted({s.topic for s in stories}),
        n_stories=len(stories),
        default_site=ds if ds in sites else sites[len(sites) * 2 // 3],
    )
    return EmotionVectors(list(emotions.emotions), vectors, raws, pcs, prov), stories


# ---------------------------------------------------------------- per-token readout


def readout_matrix(
    ev: EmotionVectors, site: str, names: Sequence[str] | None = None, unit: bool = True
) -> tuple[list[str], torch.Tensor]:
    """(names, [k, d]) rows to dot with the residual stream: the chosen emotion vectors (unit length by default)."""
    names = list(names or ev.names)
    m = torch.stack([ev.vector(n, site) for n in names])
    if unit:
        norms = m.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise EmlabError(f"an emotion vector at {site} is all zeros; it has no unit direction")
        m = m / norms
    return names, m


def readout(
    cm,
    texts: Sequence[str],
    ev: EmotionVectors,
    site: str | None = None,
    names: Sequence[str] | None = None,
    unit: bool = True,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Per-token scores of each text: {"text", "tokens": [str], "scores": {emotion: [float per token]}}.

    score[t, e] = act_site[t] . v_e (v_e unit length unless unit=False); every token of the plain text counts.
    """
    from emlab.vectors.directions import forward_answers

    site = site or ev.default_site()
    names, mat = readout_matrix(ev, site, names, unit)
    tok = cm.tokenizer
    out: list[dict[str, Any] | None] = [None] * len(texts)
    for idx, batch in text_batches(tok, texts, 0, batch_size):
        cap = forward_answers(cm, batch, [site], reduce=None)
        for r, i in enumerate(idx):
            acts = cap.per_token(site)[r]  # [T_i, d]
            ids = batch["input_ids"][r][batch["attention_mask"][r].bool()].tolist()
            scores = (acts.double() @ mat.double().T).float()  # [T_i, k]
            out[i] = {
                "text": texts[i],
                "tokens": [tok.decode([t]) for t in ids],
                "site": site,
                "unit": unit,
                "scores": {n: scores[:, j].tolist() for j, n in enumerate(names)},
            }
    return out  # type: ignore[return-value]


def to_rows(ev: EmotionVectors, site: str) -> list[dict[str, Any]]:
    """One row per emotion: name, ratings, vector norm at `site` (for tables)."""
    m = ev.matrix(site)
    return [
        {"emotion": e.name, "valence": e.valence, "arousal": e.arousal, "norm": float(m[i].norm())}
        for i, e in enumerate(ev.emotions)
    ]


def check_compatible(ev: EmotionVectors, model) -> None:
    ev.direction(ev.names[0], ev.sites).check_compatible(model)


def names_from(spec: str | Sequence[str] | None, ev: EmotionVectors) -> list[str]:
    if spec is None:
        return ev.names
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    for n in names:
        ev.index(n)
    return names


__all__ = [
    "Emotion",
    "EmotionList",
    "EmotionVectors",
    "Story",
    "StoryBank",
    "check_compatible",
    "default_site",
    "emotion_means",
    "emotion_vectors_from",
    "extract_emotion_vectors",
    "generate_stories",
    "load_emotions",
    "load_stories",
    "names_from",
    "neutral_components",
    "project_out",
    "readout",
    "readout_matrix",
    "text_activations",
    "text_batches",
    "to_rows",
]
