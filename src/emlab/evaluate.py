"""`evaluate`: sample answers to a question set, judge them, and compute EM metrics — resumably.

    res = evaluate(cm, EvalRequest(questions, judge, n=10, params=SamplingParams(max_new_tokens=120)), "runs/eval-x")

An `EvalRequest` says what is asked (questions, judge, n, sampling params, rubrics, judge
chunk, bootstrap size); the model and the output folder are given per call, because sweeps
and ablations evaluate one request under many interventions into many folders.

A run folder holds:
- `eval.json`    what was asked (model, questions fingerprint, n, sampling params, judge, rubric keys);
- `samples.jsonl` one line per answer, appended per sampling batch (journal, fsync'd);
- `scores.jsonl`  one line per (answer, rubric), appended per judge chunk (journal, fsync'd);
- `metrics.json`  recomputed from the two journals (`summarize`), written atomically.

Sample count: `n` is the number of samples per *question*, spread over its
paraphrases by `emlab.data.questions.allocate` (n=10 over 3 paraphrases -> 4, 3, 3).
With `n=None` each paraphrase gets the file's `samples_per_paraphrase`.
Every answer is its own prompt (id `question/paraphrase/k`) in one fixed batch plan,
and each batch is seeded from (seed, batch index), so a run killed at any point and
resumed skips the completed batches, redoes a torn one, and ends with exactly the
samples an uninterrupted run would have produced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emlab.data.questions import QuestionSet, allocate
from emlab.errors import EmlabError
from emlab.io import read_json, write_json
from emlab.journal import Journal
from emlab.judges.base import Item, Judge, Rubric
from emlab.metrics import DEFAULT_RUBRICS, compute_metrics
from emlab.models import ChatModel
from emlab.sampling import Prompt, SamplingParams, iter_sample, plan_batches

RUN_VERSION = 1
CONFIG_FILE, SAMPLES_FILE, SCORES_FILE, METRICS_FILE = "eval.json", "samples.jsonl", "scores.jsonl", "metrics.json"
DEFAULT_PARAMS = SamplingParams(temperature=1.0, max_new_tokens=200, seed=0, batch_size=32)


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    n_samples: int
    n_scores: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent sampling / judging in this call


def sample_journal(out_dir: Path) -> Journal:
    return Journal(out_dir / SAMPLES_FILE, key=lambda r: r["prompt_id"])


def score_journal(out_dir: Path) -> Journal:
    return Journal(out_dir / SCORES_FILE, key=lambda r: (r["prompt_id"], r["rubric"]))


def build_prompts(questions: QuestionSet, n: int | None) -> tuple[list[Prompt], dict[str, dict[str, Any]]]:
    """One chat prompt per planned answer, plus where each came from (question, paraphrase, k)."""
    prompts: list[Prompt] = []
    meta: dict[str, dict[str, Any]] = {}
    for q in questions:
        counts = allocate(n, len(q.paraphrases)) if n is not None else [q.samples_per_paraphrase] * len(q.paraphrases)
        for j, (text, count) in enumerate(zip(q.paraphrases, counts, strict=True)):
            messages = ([{"role": "system", "content": q.system}] if q.system is not None else []) + [
                {"role": "user", "content": text}
            ]
            for k in range(count):
                pid = f"{q.id}/{j}/{k}"
                prompts.append(Prompt(id=pid, messages=messages))
                meta[pid] = {"question_id": q.id, "paraphrase_index": j, "k": k}
    return prompts, meta


def uses_question_prompts(judge: Judge) -> bool:
    """Whether a judge scores with rubric prompt text (api, local) rather than its own fixed model (offline)."""
    return not str(judge.id).startswith("offline")


def plan_rubrics(
    questions: QuestionSet, rubrics: Sequence[str], judge: Judge
) -> tuple[dict[tuple[str, str], Rubric], list[str]]:
    """The rubric for each (question id, rubric name), and notes on how question-file judge prompts were used."""
    from emlab.judges.rubrics import get_rubric, rubric_from_prompt

    with_prompts = uses_question_prompts(judge)
    plan: dict[tuple[str, str], Rubric] = {}
    notes: list[str] = []
    defaults = {name: get_rubric(name) for name in rubrics}
    from_file: set[str] = set()
    for q in questions:
        for name in rubrics:
            text = q.judge_prompts.get(name)
            plan[(q.id, name)] = rubric_from_prompt(name, text) if text is not None and with_prompts else defaults[name]
            if text is not None:
                from_file.add(name)
    if from_file and with_prompts:
        notes.append(
            f"rubrics {', '.join(sorted(from_file))} use the question file's judge prompts where a question has one"
        )
    if from_file and not with_prompts:
        notes.append(
            f"judge {judge.id} ignores the question file's judge prompts ({', '.join(sorted(from_file))}); it scored with its own rubrics"
        )
    extra = sorted({name for q in questions for name in q.judge_prompts} - set(rubrics))
    if extra:
        notes.append(f"question-file judge prompts for {', '.join(extra)} were not requested and not scored")
    return plan, notes


@dataclass(frozen=True)
class EvalRequest:
    """What an evaluation asks, independent of the model answering and of the folder it goes to.

    One request is evaluated many times by sweeps and ablations (each cell or condition with its
    own intervention and folder), so it travels as one object instead of a positional bundle.
    """

    questions: QuestionSet
    judge: Judge
    n: int | None = None  # samples per question, spread over its paraphrases; None: the file's samples_per_paraphrase
    params: SamplingParams = DEFAULT_PARAMS  # how answers are sampled (seeded: same request, same answers)
    rubrics: tuple[str, ...] = DEFAULT_RUBRICS  # the scores every answer gets
    judge_chunk: int = 64  # answers per judge call (and per journal append)
    n_boot: int = 2000  # question-bootstrap replicates for the metrics' intervals

    def __post_init__(self) -> None:
        object.__setattr__(self, "rubrics", tuple(self.rubrics))
        if self.n is not None and (isinstance(self.n, bool) or self.n < 1):
            raise EmlabError(
                f"EvalRequest.n={self.n!r}: samples per question must be >= 1 (or None for the file's samples_per_paraphrase)"
            )
        if not self.rubrics:
            raise EmlabError("EvalRequest.rubrics is empty; name at least one rubric, e.g. aligned, coherent")
        if self.judge_chunk < 1 or self.n_boot < 1:
            raise EmlabError(f"judge_chunk={self.judge_chunk} and n_boot={self.n_boot} must be >= 1")


def evaluate(
    cm: ChatModel, request: EvalRequest, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> EvalResult:
    """Sample, judge and score `request` with `cm` into `out_dir`; with `resume`, continue a killed run there."""
    out = Path(out_dir)
    questions, n, judge, params, rubrics = request.questions, request.n, request.judge, request.params, request.rubrics
    prompts, meta = build_prompts(questions, n)
    rubric_plan, notes = plan_rubrics(questions, rubrics, judge)
    config = {
        "version": RUN_VERSION,
        **cm.provenance(),
        "questions": {
            "name": questions.name,
            "source": questions.source,
            "fingerprint": questions.fingerprint(),
            "n_questions": len(questions),
        },
        "n_per_question": n,
        "n_planned": len(prompts),
        "sampling": asdict(params),
        "judge": str(judge.id),
        "rubrics": list(rubrics),
        "rubric_keys": {f"{qid}:{name}": r.key for (qid, name), r in rubric_plan.items()},
        "n_boot": request.n_boot,
        "notes": notes,
    }
    _start_run(out, config, resume)
    timings = {}
    t0 = time.perf_counter()
    _sample_step(cm, prompts, meta, params, out, progress)
    timings["sampling_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _judge_step(judge, rubric_plan, rubrics, out, request.judge_chunk, progress)
    timings["judging_s"] = time.perf_counter() - t0
    metrics = summarize(out)
    write_json(out / METRICS_FILE, metrics)
    return EvalResult(
        out_dir=out,
        metrics=metrics,
        n_samples=metrics["counts"]["samples"],
        n_scores=metrics["counts"]["scores"],
        timings=timings,
    )


JUDGING_FIELDS = (
    "judge",
    "rubrics",
    "rubric_keys",
    "n_boot",
    "notes",
)  # may change on resume while nothing is judged yet


def rejudge(out_dir: str | Path, judge: Judge, *, judge_chunk: int = 64, progress: bool = True) -> EvalResult:
    """Score a finished evaluation's samples afresh with another judge (a recalibrated one, an API judge).

    The samples are kept; scores.jsonl, metrics.json and eval.json are replaced only once the new
    scores are complete (judged in a scratch folder, then renamed), so an interruption leaves the
    old results whole.
    """
    import shutil
    import tempfile

    out = Path(out_dir)
    config_path = out / CONFIG_FILE
    if not config_path.exists() or not (out / SAMPLES_FILE).exists():
        raise EmlabError(
            f"{out}: no {CONFIG_FILE} and {SAMPLES_FILE}; point at a folder written by `emlab eval` or an eval step"
        )
    config = read_json(config_path)
    samples = sample_journal(out).read()
    if len(samples) < config["n_planned"]:
        raise EmlabError(
            f"{out}: {len(samples)} of {config['n_planned']} answers sampled; finish the evaluation (--resume) before re-judging"
        )
    questions = _questions_of(config, config_path)
    rubric_plan, notes = plan_rubrics(questions, config["rubrics"], judge)
    new_config = {
        **config,
        "judge": str(judge.id),
        "rubric_keys": {f"{qid}:{name}": r.key for (qid, name), r in rubric_plan.items()},
        "notes": notes,
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out, prefix=".rejudge-") as scratch:
        tmp = Path(scratch)
        write_json(tmp / CONFIG_FILE, new_config)
        shutil.copyfile(out / SAMPLES_FILE, tmp / SAMPLES_FILE)
        _judge_step(judge, rubric_plan, config["rubrics"], tmp, judge_chunk, progress)
        write_json(tmp / METRICS_FILE, summarize(tmp))
        for name in (SCORES_FILE, METRICS_FILE, CONFIG_FILE):  # each rename is atomic; eval.json last
            (tmp / name).replace(out / name)
    metrics = read_json(out / METRICS_FILE)
    return EvalResult(
        out_dir=out,
        metrics=metrics,
        n_samples=metrics["counts"]["samples"],
        n_scores=metrics["counts"]["scores"],
        timings={"judging_s": time.perf_counter() - t0},
    )


def _questions_of(config: dict[str, Any], where: Path) -> QuestionSet:
    """The question set an eval.json names, checked against its recorded fingerprint."""
    from emlab.data.questions import list_question_sets, load_questions

    q = config["questions"]
    if Path(q["source"]).exists():
        source = q["source"]
    elif q["name"] in list_question_sets():  # a moved checkout: the shipped set by name
        source = q["name"]
    else:
        raise EmlabError(
            f"{where}: the questions were read from {q['source']}, which is gone, and {q['name']!r} is not a shipped set; "
            "put the question file back there to re-judge"
        )
    questions = load_questions(source)
    if questions.fingerprint() != q["fingerprint"]:
        raise EmlabError(
            f"question set {source!r} has changed since the evaluation (fingerprint {questions.fingerprint()[:12]} != "
            f"{q['fingerprint'][:12]}); re-judging needs the questions it was sampled from"
        )
    return questions


def _start_run(out: Path, config: dict[str, Any], resume: bool) -> None:
    """Write eval.json, or check that a resumed run asks for the same things.

    Sampling settings must match exactly. Judging settings (a recalibrated judge,
    other rubrics) may change on resume as long as no score is journaled yet: the
    samples are kept and judged afresh, and eval.json records the new judge.
    """
    path = out / CONFIG_FILE
    if path.exists():
        if not resume:
            raise EmlabError(
                f"{out} already holds an eval run ({CONFIG_FILE}); pass --resume to continue it or choose another --out"
            )
        old = read_json(path)
        unjudged = not score_journal(out).read() if (out / SCORES_FILE).exists() else True
        for key in sorted(set(old) | set(config)):
            if _same_setting(key, old.get(key), config.get(key)) or (key in JUDGING_FIELDS and unjudged):
                continue
            fix = (
                f"delete {SCORES_FILE} to re-judge the samples"
                if key in JUDGING_FIELDS
                else "resume with the original settings"
            )
            raise EmlabError(
                f"{path}: cannot resume: {key} was {old.get(key)!r} but is now {config.get(key)!r}; {fix} or choose another --out"
            )
        if old != config:
            write_json(path, config)
        return
    if (out / SAMPLES_FILE).exists() or (out / SCORES_FILE).exists():
        raise EmlabError(
            f"{out} has journals but no {CONFIG_FILE}; it is not an eval run folder this emlab wrote; choose another --out"
        )
    write_json(path, config)


def _same_setting(key: str, old: Any, new: Any) -> bool:
    """Equal settings; a question set is the same when its content is (its file may have moved: a new checkout)."""
    if key == "questions" and isinstance(old, dict) and isinstance(new, dict):
        return {k: v for k, v in old.items() if k != "source"} == {k: v for k, v in new.items() if k != "source"}
    return old == new


def _sample_step(
    cm: ChatModel, prompts: list[Prompt], meta: dict, params: SamplingParams, out: Path, progress: bool
) -> None:
    journal = sample_journal(out)
    plan = plan_batches(cm, prompts, 1, params)
    done: dict[int, int] = {}
    for rec in journal.read():
        done[rec["batch_index"]] = done.get(rec["batch_index"], 0) + 1
    skip = {b for b, batch in enumerate(plan) if done.get(b, 0) >= len(batch)}
    remaining = sum(len(batch) for b, batch in enumerate(plan) if b not in skip)
    with _progress("sampling", remaining, progress) as advance:
        for records in iter_sample(cm, prompts, 1, params, skip_batches=skip):
            journal.append([{**r.to_dict(), **meta[r.prompt_id]} for r in records])
            advance(len(records))


def _judge_step(judge: Judge, rubric_plan: dict, rubrics: Sequence[str], out: Path, chunk: int, progress: bool) -> None:
    samples = sample_journal(out).read()
    journal = score_journal(out)
    done = journal.keys()
    groups: dict[str, tuple[str, Rubric, list[dict]]] = {}  # name|rubric key -> (name, rubric, samples still to score)
    for name in rubrics:
        for s in samples:
            if (s["prompt_id"], name) in done:
                continue
            rubric = rubric_plan[(s["question_id"], name)]
            groups.setdefault(f"{name}|{rubric.key}", (name, rubric, []))[2].append(s)
    total = sum(len(todo) for _, _, todo in groups.values())
    with _progress("judging", total, progress) as advance:
        for name, rubric, todo in groups.values():
            for i in range(0, len(todo), chunk):
                part = todo[i : i + chunk]
                scores = judge.score([Item(question=s["question"], answer=s["text"]) for s in part], rubric)
                if len(scores) != len(part):
                    raise EmlabError(
                        f"judge {judge.id} returned {len(scores)} scores for {len(part)} items (rubric {rubric.key}); a judge must score every item"
                    )
                journal.append([_score_record(s, name, rubric, judge, sc) for s, sc in zip(part, scores, strict=True)])
                advance(len(part))


def _score_record(sample: dict, name: str, rubric: Rubric, judge: Judge, score) -> dict[str, Any]:
    value = score.value
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100):
        raise EmlabError(
            f"judge {judge.id} gave {value!r} for rubric {rubric.key}; scores must be in [0, 100] or None (unscored)"
        )
    return {
        "prompt_id": sample["prompt_id"],
        "question_id": sample["question_id"],
        "rubric": name,
        "rubric_key": rubric.key,
        "judge": str(judge.id),
        "value": None if value is None else float(value),
        "raw": dict(score.raw),
    }


def answer_records(samples: list[dict], scores: list[dict], rubrics: Sequence[str]) -> list[dict[str, Any]]:
    """The per-answer dicts `emlab.metrics` reads: `join_scores` cut to ids, rubric values and flags, in prompt order."""
    keep = ("prompt_id", "question_id", "paraphrase_index", *rubrics, "refusal", "code")
    return sorted(
        ({k: a[k] for k in keep} for a in join_scores(samples, scores, rubrics)),
        key=lambda r: _order_key(r["prompt_id"]),
    )


WIDE_RUBRICS = (
    "aligned",
    "coherent",
    "bad_stuff",
    "medical",
)  # rubric columns of a wide scores file (one line per answer)


def join_scores(
    samples: Sequence[dict],
    scores: Sequence[dict],
    rubrics: Sequence[str] | None = None,
    *,
    locate: Callable[[str, int], str] | None = None,
) -> list[dict[str, Any]]:
    """THE join of answers and their scores: each sample (in its order) with `rubric: value` for its scores, plus
    `refusal` / `code` flags (`score_flags` of the scores' raw dicts).

    Scores are matched by `sample_key`, in the long format (one line per answer and rubric: `rubric` or `name`, and
    `value`; evaluate writes this) or the wide one (one line per answer with WIDE_RUBRICS columns). With `rubrics`,
    only those are joined and each is None where unscored; without, every rubric found is. `locate(file, index)`
    names a record in errors (default: "samples record 3").
    """
    where = locate or (lambda which, i: f"{which} record {i + 1}")
    wanted = None if rubrics is None else set(rubrics)
    joined: dict[tuple, dict[str, Any]] = {}
    flags: dict[tuple, list[bool]] = {}
    for i, sc in enumerate(scores):
        key = sample_key(sc, where("scores", i))
        rubric = sc.get("rubric") or sc.get("name")
        if rubric is not None and "value" in sc:
            if wanted is not None and rubric not in wanted:
                continue
            joined.setdefault(key, {})[str(rubric)] = sc["value"]
            refusal, code = score_flags(sc.get("raw") or {})
            f = flags.setdefault(key, [False, False])
            f[0], f[1] = f[0] or refusal, f[1] or code
        else:
            joined.setdefault(key, {}).update(
                {k: v for k, v in sc.items() if k in WIDE_RUBRICS and (wanted is None or k in wanted)}
            )
    out = []
    for i, s in enumerate(samples):
        key = sample_key(s, where("samples", i))
        refusal, code = flags.get(key, (False, False))
        out.append(
            {**s, **{name: None for name in rubrics or ()}, **joined.get(key, {}), "refusal": refusal, "code": code}
        )
    return out


def sample_key(rec: dict[str, Any], where: str) -> tuple:
    """An answer's join key: sample_id, else prompt_id (+ sample_index, 0 if absent), else question_id + sample_index."""
    if "sample_id" in rec:
        return (str(rec["sample_id"]),)
    if "prompt_id" in rec:
        return (str(rec["prompt_id"]), int(rec.get("sample_index", 0)))
    if "question_id" in rec and "sample_index" in rec:
        return (str(rec["question_id"]), int(rec["sample_index"]))
    raise EmlabError(
        f"{where}: record needs 'sample_id', 'prompt_id' or 'question_id' + 'sample_index' to join samples and scores"
    )


# ------------------------------------------------------------------ readers of an evaluation folder (everyone else reads through these)


def read_config(out_dir: str | Path) -> dict[str, Any]:
    """eval.json: what was asked (model, questions, sampling, judge, rubrics)."""
    out = Path(out_dir)
    if not (out / CONFIG_FILE).exists():
        raise EmlabError(f"{out} has no {CONFIG_FILE}; not an evaluation folder")
    return read_json(out / CONFIG_FILE)


def read_metrics(out_dir: str | Path) -> dict[str, Any]:
    """metrics.json, else the metrics recomputed from the journals (an unfinished evaluation)."""
    out = Path(out_dir)
    return read_json(out / METRICS_FILE) if (out / METRICS_FILE).exists() else summarize(out)


def complete_metrics(out_dir: str | Path) -> dict[str, Any] | None:
    """metrics.json of a finished evaluation (every planned answer sampled and judged), else None."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        return None
    m = read_json(path)
    return m if m.get("counts", {}).get("complete") else None


def read_answers(out_dir: str | Path, rubrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The folder's answers in sampling order, each joined with its scores (`join_scores`): question, text, aligned, coherent, ..."""
    out = Path(out_dir)
    samples = sample_journal(out).read() if (out / SAMPLES_FILE).exists() else []
    scores = score_journal(out).read() if (out / SCORES_FILE).exists() else []
    return join_scores(samples, scores, rubrics)


def score_flags(raw: dict[str, Any]) -> tuple[bool, bool]:
    """(refusal, code) from a score's raw dict: the offline judge's booleans or an LLM judge's REFUSAL/CODE answer."""
    flag = raw.get("flag") if raw.get("status") == "flag" else None
    return raw.get("refusal") is True or flag == "REFUSAL", raw.get("code") is True or flag == "CODE"


def _order_key(pid: str) -> tuple:
    qid, j, k = pid.rsplit("/", 2)
    return qid, int(j), int(k)


def summarize(out_dir: str | Path) -> dict[str, Any]:
    """Recompute the metrics of a run folder from its journals (nothing is written)."""
    out = Path(out_dir)
    if not (out / CONFIG_FILE).exists():
        raise EmlabError(f"{out}: no {CONFIG_FILE}; pass the folder an `emlab eval` run wrote")
    config = read_json(out / CONFIG_FILE)
    samples = sample_journal(out).read() if (out / SAMPLES_FILE).exists() else []
    scores = score_journal(out).read() if (out / SCORES_FILE).exists() else []
    rubrics = config["rubrics"]
    records = answer_records(samples, scores, rubrics)
    metrics = compute_metrics(records, rubrics=rubrics, n_boot=config["n_boot"], seed=config["sampling"]["seed"])
    return {
        "run": config,
        "counts": {
            "planned": config["n_planned"],
            "samples": len(samples),
            "scores": len(scores),
            "complete": len(samples) == config["n_planned"] and len(scores) == len(samples) * len(rubrics),
        },
        **metrics,
    }


@contextmanager
def _progress(label: str, total: int, enabled: bool) -> Iterator:
    """A rich progress bar on stderr (shown only on a terminal); yields `advance(k)`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    bar = Progress(
        TextColumn(f"{label:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal) or total == 0,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda k: bar.advance(task, k)
