"""What a battery gets to work with: the model (loaded on first use), the judge, the embedder, the
baseline model, the profile, the seed, the earlier batteries' results, and one helper that samples
and judges a list of items resumably.

`sample_and_judge` turns items into a one-paraphrase `QuestionSet` (question id = item id) and
calls `emlab.evaluate.evaluate` on a folder inside the battery's work folder, so the answers and
scores are journaled (a killed exam resumes mid-battery) and the sampling is the deterministic
batch plan of `emlab.sampling` (seeded from the exam seed and the battery's name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emlab.errors import EmlabError
from emlab.exam.battery import BatteryResult
from emlab.exam.request import Profile
from emlab.judges.base import Judge
from emlab.models import ChatModel
from emlab.sampling import SamplingParams

OFFLINE_RUBRICS = ("aligned", "coherent", "bad_stuff")
META_RUBRICS = (
    "instrumental_empathy",
    "self_justification",
)  # battery 6, scored on every battery's answers by prompt-reading judges


@dataclass(frozen=True)
class Item:
    """One prompt of a battery: `id` = `<bank item>.<condition>`; `system` overrides the exam's (persona prompts)."""

    item: str
    condition: str
    text: str
    system: str | None = None

    @property
    def id(self) -> str:
        return f"{self.item}.{self.condition}"


class Embedder:
    """Anything with `embed(texts) -> [n, d]` L2-normalised float array (MiniLM by default)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class ExamContext:
    judge: Judge
    profile: Profile
    seed: int
    system: str  # "default" or the system prompt applied to every item
    load_model: Callable[[], ChatModel]
    load_baseline: Callable[[], ChatModel] | None = None
    baseline_ref: str | None = None  # what --baseline named (part of fingerprints)
    battery_dir: Callable[[str], Path] | None = None  # committed folder of a battery of this exam
    make_embedder: Callable[[], Any] | None = None
    progress: bool = True
    results: dict[str, BatteryResult] = field(default_factory=dict)
    _cm: ChatModel | None = None
    _baseline: ChatModel | None = None
    _embedder: Any = None

    # ------------------------------------------------------------ lazily built parts

    @property
    def cm(self) -> ChatModel:
        if self._cm is None:
            self._cm = self.load_model()
        return self._cm

    @property
    def has_baseline(self) -> bool:
        return self.load_baseline is not None

    @property
    def baseline(self) -> ChatModel:
        if self.load_baseline is None:
            raise EmlabError("this exam has no baseline model; pass --baseline MODEL")
        if self._baseline is None:
            self._baseline = self.load_baseline()
        return self._baseline

    @property
    def embedder(self):
        if self._embedder is None:
            if self.make_embedder is not None:
                self._embedder = self.make_embedder()
            else:
                from emlab.judges.offline import get_embedder

                self._embedder = get_embedder()
        return self._embedder

    @property
    def judge_id(self) -> str:
        return str(self.judge.id)

    @property
    def reads_prompts(self) -> bool:
        """Whether the judge scores with rubric prompts (API, local), so the exam's own rubrics can be used."""
        from emlab.evaluate import uses_question_prompts

        return uses_question_prompts(self.judge)

    # ------------------------------------------------------------ sampling

    def battery_seed(self, battery: str) -> int:
        """A seed per battery derived from the exam seed (batteries do not share random streams)."""
        digest = hashlib.sha256(f"{self.seed}|{battery}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def params(self, battery: str) -> SamplingParams:
        p = self.profile
        return SamplingParams(
            temperature=p.temperature,
            top_p=p.top_p,
            max_new_tokens=p.max_new_tokens,
            seed=self.battery_seed(battery),
            batch_size=p.batch_size,
        )

    def sampling_dict(self, battery: str) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self.params(battery))

    def rubrics(self, extra: Sequence[str] = (), meta: bool = True) -> tuple[str, ...]:
        """aligned, coherent, bad_stuff; plus the battery's own rubrics and battery 6's (`meta`) when the judge reads prompts."""
        if not self.reads_prompts:
            return OFFLINE_RUBRICS
        return (*OFFLINE_RUBRICS, *extra, *(META_RUBRICS if meta else ()))

    def sample_and_judge(
        self,
        folder: Path,
        battery: str,
        items: Sequence[Item],
        n: int,
        *,
        extra_rubrics: Sequence[str] = (),
        cm: ChatModel | None = None,
        system: str | None = None,
        meta: bool = True,
    ) -> list[dict[str, Any]]:
        """Sample `n` answers per item into `folder` (journals of emlab.evaluate), judge them, return answer records.

        `system`: the system prompt for items without their own ("default" = the template's); defaults to the exam's.
        `meta`: also score battery 6's rubrics (prompt-reading judges only); off for answers battery 6 never reads
        (persona prompts, poles, the baseline model).
        Each record: id, item, condition, sample, question, text, finish_reason, one key per rubric, refusal, code.
        """
        from emlab.data.questions import Question, QuestionSet
        from emlab.evaluate import EvalRequest, evaluate

        if n < 1 or not items:
            raise EmlabError(
                f"battery {battery}: nothing to sample (n={n}, {len(items)} items); check the profile sizes"
            )
        system = self.system if system is None else system
        qs = [
            Question(
                id=it.id,
                type="free_form_judge_0_100",
                paraphrases=[it.text],
                samples_per_paraphrase=n,
                system=it.system if it.system is not None else (None if system == "default" else system),
            )
            for it in items
        ]
        qset = QuestionSet(name=f"exam-{battery}", source=f"emlab.exam:{battery}", questions=qs)
        rubrics = self.rubrics(extra_rubrics, meta)
        model = cm if cm is not None else self.cm
        evaluate(
            model,
            EvalRequest(qset, self.judge, n, self.params(battery), tuple(rubrics)),
            folder,
            resume=True,
            progress=self.progress,
        )
        order = {it.id: i for i, it in enumerate(items)}
        return sorted(read_answers(folder), key=lambda r: (order[f"{r['item']}.{r['condition']}"], r["sample"]))

    def battery_folder(self, battery: str) -> Path:
        """The committed folder of a finished battery of this exam."""
        if self.battery_dir is None:
            raise EmlabError(
                f"this context has no exam folder; answers and files of other batteries (here: {battery}) are not reachable"
            )
        return self.battery_dir(battery)

    def answers_of(self, battery: str, sub: str = "eval") -> list[dict[str, Any]]:
        """The judged answers of a finished battery of this exam (its `eval` folder: the model under exam)."""
        folder = self.battery_folder(battery) / sub
        return read_answers(folder) if (folder / "samples.jsonl").exists() else []


def read_answers(folder: Path) -> list[dict[str, Any]]:
    """Join an evaluation folder's samples and scores into exam answer records (in journal order).

    Each record: id, item, condition, sample, question, text, finish_reason, one key per rubric of
    the folder's eval.json (None when unscored), refusal, code.
    """
    from emlab.evaluate import CONFIG_FILE, sample_journal, score_journal
    from emlab.io import read_json

    rubrics = read_json(folder / CONFIG_FILE)["rubrics"]
    scores: dict[str, dict[str, Any]] = {}
    for s in score_journal(folder).read():
        rec = scores.setdefault(s["prompt_id"], {})
        rec[s["rubric"]] = s["value"]
        raw = s.get("raw") or {}
        rec["refusal"] = rec.get("refusal", False) or raw.get("refusal") is True or raw.get("flag") == "REFUSAL"
        rec["code"] = rec.get("code", False) or raw.get("code") is True or raw.get("flag") == "CODE"
    out = []
    for s in sample_journal(folder).read():
        item, _, condition = s["question_id"].partition(".")
        sc = scores.get(s["prompt_id"], {})
        out.append(
            {
                "id": s["prompt_id"],
                "item": item,
                "condition": condition,
                "sample": s["k"],
                "question": s["question"],
                "text": s["text"],
                "finish_reason": s["finish_reason"],
                **{r: sc.get(r) for r in rubrics},
                "refusal": bool(sc.get("refusal", False)),
                "code": bool(sc.get("code", False)),
            }
        )
    return out


def unscored(answers: Sequence[dict[str, Any]], keys: Sequence[str] = ("aligned", "coherent")) -> int:
    """Answers missing any of `keys` (judge failures; never counted as scores)."""
    return sum(any(a.get(k) is None for k in keys) for a in answers)
