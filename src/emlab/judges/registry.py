"""Judges by name: `get_judge("offline" | "openai:MODEL" | "api:MODEL" | "local:REF")`, plus a caching wrapper.

Backends plug in with a decorator; the factory receives the text after the first
colon (None when there is none) and any keyword options:

    @register_judge("mybackend", usage="mybackend:NAME")
    def _make(arg: str | None, **kw) -> Judge: ...

Factories import their backend lazily, so importing this module stays cheap and a
backend that is not installed only fails when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from emlab.errors import EmlabError
from emlab.judges.base import Item, Judge, Rubric, Score
from emlab.judges.cache import JudgeCache
from emlab.judges.outcome import is_definite

Factory = Callable[..., Judge]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    usage: str
    help: str


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}


def register_judge(
    name: str, *, usage: str | None = None, help: str = "", aliases: tuple[str, ...] = ()
) -> Callable[[Factory], Factory]:
    """Register `factory(arg, **kw) -> Judge` under `name` (and `aliases`) for get_judge specs `name[:arg]`."""

    def decorate(factory: Factory) -> Factory:
        _REGISTRY[name] = _Entry(factory, usage or name, help)
        for alias in aliases:
            _ALIASES[alias] = name
        return factory

    return decorate


def judge_names() -> set[str]:
    """Every name a spec may start with: registered backends and their aliases."""
    return set(_REGISTRY) | set(_ALIASES)


def available_judges() -> list[str]:
    """Usage strings of the registered backends, e.g. ['local:REF', 'offline', 'openai:MODEL (alias api:MODEL)']."""
    inverse: dict[str, list[str]] = {}
    for alias, name in _ALIASES.items():
        inverse.setdefault(name, []).append(alias)
    out = []
    for name in sorted(_REGISTRY):
        usage = _REGISTRY[name].usage
        for alias in inverse.get(name, []):
            usage += f" (alias {usage.replace(name, alias, 1)})"
        out.append(usage)
    return out


def describe_judges() -> list[dict[str, str]]:
    return [{"name": n, "usage": _REGISTRY[n].usage, "help": _REGISTRY[n].help} for n in sorted(_REGISTRY)]


def get_judge(spec: str, **kw) -> Judge:
    """Build the judge a spec names; unknown names raise an error listing the available ones."""
    name, _, arg = spec.strip().partition(":")
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise EmlabError(f"unknown judge {spec!r}; available judges: {', '.join(available_judges())}")
    return _REGISTRY[name].factory(arg or None, **kw)


def default_judge_spec() -> str:
    """The API judge when OPENAI_API_KEY is set, else the offline judge (no network, no key)."""
    from emlab.judges.api import DEFAULT_API_MODEL

    return f"openai:{DEFAULT_API_MODEL}" if os.environ.get("OPENAI_API_KEY") else "offline"


@register_judge(
    "offline",
    usage="offline[:v3]",
    help="embedding + feature classifier; no network (rubrics aligned, coherent, bad_stuff); offline:v3 adds a second fluency model, structure features and externally judged answers",
)
def _offline(arg: str | None, **kw) -> Judge:
    try:
        from emlab.judges.offline import OfflineJudge
    except ImportError as e:
        raise EmlabError(
            f"the offline judge is not available in this installation ({e}); use --judge openai:MODEL or --judge local:REF"
        ) from None
    if arg is not None and arg.split(":")[0] == "v3":  # judge v3 (emlab.judges.v3): its own weights folder and id
        from emlab.judges.v3 import OfflineJudgeV3

        v3 = OfflineJudgeV3(**kw)
        if arg != "v3" and not v3.id.startswith(f"offline:{arg}"):
            raise EmlabError(
                f"judge spec 'offline:{arg}' asks for weights this installation does not have; it has {v3.id!r} (use --judge offline:v3)"
            )
        return v3
    judge = OfflineJudge(**kw)
    if arg is not None and judge.id != f"offline:{arg}" and not judge.id.startswith(f"offline:{arg}:"):
        raise EmlabError(
            f"judge spec 'offline:{arg}' asks for a version this installation does not have; it has {judge.id!r} (use --judge offline)"
        )
    return judge


@register_judge(
    "openai",
    usage="openai:MODEL",
    aliases=("api",),
    help="OpenAI-compatible endpoint (OPENAI_API_KEY, OPENAI_BASE_URL), logprob-weighted 0-100",
)
def _openai(arg: str | None, **kw) -> Judge:
    from emlab.judges.api import DEFAULT_API_MODEL, OpenAIJudge

    return OpenAIJudge(arg or DEFAULT_API_MODEL, **kw)


@register_judge(
    "local", usage="local:REF", help="any HF chat model (embedded name, folder or hub id), 0-100 by teacher forcing"
)
def _local(arg: str | None, **kw) -> Judge:
    if not arg:
        raise EmlabError(
            "judge 'local' needs a model: local:REF with an embedded name (e.g. local:smollm2-135m), a model folder or a hub id"
        )
    from emlab.judges.local import LocalJudge

    return LocalJudge.from_ref(arg, **kw)


class CachedJudge:
    """Wraps a judge with a JudgeCache: only cache misses reach the judge.

    Numbers and definite non-numbers (a CODE/REFUSAL flag, too little mass on numbers)
    are stored; failed items ("error", or any other None) are not, so a rerun retries
    them. `hits` and `misses` count items over the wrapper's lifetime.
    """

    def __init__(self, judge: Judge, cache: JudgeCache | None = None):
        self.judge = judge
        self.cache = cache if cache is not None else JudgeCache()
        self.id = judge.id
        self.hits = 0
        self.misses = 0

    def score(self, items: list[Item], rubric: Rubric) -> list[Score]:
        found = self.cache.get_many(self.id, rubric.key, items)
        todo = [i for i, s in enumerate(found) if s is None]
        self.hits += len(items) - len(todo)
        self.misses += len(todo)
        if not todo:
            return [s for s in found if s is not None]
        fresh = self.judge.score([items[i] for i in todo], rubric)
        if len(fresh) != len(todo):
            raise EmlabError(
                f"judge {self.id} returned {len(fresh)} scores for {len(todo)} items; the backend is broken"
            )
        keep = [(items[i], s) for i, s in zip(todo, fresh, strict=True) if is_definite(s)]
        if keep:
            self.cache.put_many(self.id, rubric.key, [k[0] for k in keep], [k[1] for k in keep])
        out = list(found)
        for i, s in zip(todo, fresh, strict=True):
            out[i] = s
        return out  # type: ignore[return-value]  # every None in `found` was replaced from `fresh`
