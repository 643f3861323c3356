"""A judge behind any OpenAI-compatible chat endpoint, scored from the first token's logprobs.

One request per item (a small thread pool sends them concurrently): the filled rubric
prompt as the only user message, `max_tokens=1, temperature=0, logprobs=True,
top_logprobs=20`. Among the returned top tokens, those that read as an integer
0..100 (surrounding whitespace ignored, no leading zeros; equal integers summed) give

    mass  = sum_k p_k                      (k over integer tokens)
    value = sum_k p_k * int(token_k) / mass

and the item is unscored ("low_mass") when mass < `min_mass` (0.25). If the single most
likely token starts a special word the rubric allows (CODE, REFUSAL) the item is
flagged instead. 429s, 5xx, timeouts and connection errors are retried with
exponential backoff plus jitter; after the last attempt the item is unscored with
the error in `raw`, never 0. The openai client's own retries are off (max_retries=0)
so every attempt is ours and counted in `raw["attempts"]`.

The key comes from OPENAI_API_KEY (or `api_key=`) and is never written anywhere;
the endpoint from OPENAI_BASE_URL (or `base_url=`).
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from emlab.errors import EmlabError
from emlab.judges.base import Item, Rubric, Score
from emlab.judges.outcome import DEFAULT_MIN_MASS, error_score, id_suffix, numeric_score
from emlab.judges.rubrics import fill_prompt, special_words

DEFAULT_API_MODEL = "gpt-4o-2024-08-06"
_INT_RE = re.compile(r"0|[1-9][0-9]{0,2}")


class _Fatal(Exception):
    """A failure that will hit every item (bad key, unknown model): abort the whole batch."""


def aggregate_top_logprobs(top: list[tuple[str, float]]) -> tuple[float | None, float]:
    """(probability-weighted mean of the integer tokens 0..100, their total probability) from (token, logprob) pairs."""
    weights: dict[int, float] = {}
    for token, logprob in top:
        text = token.strip()
        if _INT_RE.fullmatch(text) and int(text) <= 100:
            weights[int(text)] = weights.get(int(text), 0.0) + math.exp(logprob)
    mass = sum(weights.values())
    mean = sum(v * p for v, p in weights.items()) / mass if mass > 0 else None
    return mean, mass


def top_token_flag(token: str, words: tuple[str, ...]) -> str | None:
    """The special word that `token` starts (at least 2 letters, or the whole word), if any."""
    text = token.strip().upper()
    for word in words:
        if text and word.startswith(text) and (len(text) >= 2 or text == word):
            return word
    return None


class OpenAIJudge:
    """Logprob-weighted 0-100 scores from an OpenAI-compatible endpoint.

    `concurrency` requests in flight; `max_attempts` tries per item with delays
    base_delay * 2**k * (1 + jitter * U[0,1]) capped at max_delay; `timeout` seconds per request.
    """

    def __init__(
        self,
        model: str = DEFAULT_API_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        concurrency: int = 8,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        jitter: float = 0.5,
        timeout: float = 60.0,
        min_mass: float = DEFAULT_MIN_MASS,
        top_logprobs: int = 20,
    ):
        import openai

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise EmlabError(
                f"judge openai:{model} needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI endpoint), or use --judge offline"
            )
        if max_attempts < 1 or concurrency < 1:
            raise EmlabError(
                f"judge openai:{model}: max_attempts ({max_attempts}) and concurrency ({concurrency}) must be at least 1"
            )
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self.base_delay, self.max_delay, self.jitter = base_delay, max_delay, jitter
        self.min_mass, self.top_logprobs = min_mass, top_logprobs
        self._key = key
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout)
        self.id = f"openai:{model}{_endpoint_suffix(self.base_url)}{id_suffix(min_mass)}"

    def score(self, items: list[Item], rubric: Rubric) -> list[Score]:
        """One Score per item, in order; failed items are unscored (value None), never 0."""
        words = special_words(rubric)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._score_one, fill_prompt(rubric, it), words) for it in items]
            try:
                return [f.result() for f in futures]
            except _Fatal as e:
                for f in futures:
                    f.cancel()
                raise EmlabError(str(e)) from None

    def _score_one(self, prompt: str, words: tuple[str, ...]) -> Score:
        import openai

        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=1,
                    temperature=0,
                    logprobs=True,
                    top_logprobs=self.top_logprobs,
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
                raise _Fatal(
                    f"judge {self.id}: the endpoint {self.base_url or 'api.openai.com'} answered {e.status_code} "
                    f"({type(e).__name__}); check OPENAI_API_KEY, OPENAI_BASE_URL and the model name {self.model!r}"
                ) from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                last = self._describe(e)
                if attempt < self.max_attempts:
                    time.sleep(self._delay(attempt))
                continue
            except openai.APIStatusError as e:  # other 4xx: this item's request is refused; retrying will not help
                return error_score(self._describe(e), attempts=attempt)
            return self._parse(response, words, attempt)
        return error_score(f"gave up after {self.max_attempts} attempts: {last}", attempts=self.max_attempts)

    def _parse(self, response: Any, words: tuple[str, ...], attempt: int) -> Score:
        try:
            first = response.choices[0].logprobs.content[0]
            top = [(t.token, float(t.logprob)) for t in first.top_logprobs]
        except (AttributeError, IndexError, TypeError):
            return error_score(
                "the response has no top logprobs (the endpoint or model may not support logprobs)", attempts=attempt
            )
        if not top:
            return error_score("the response has an empty top_logprobs list", attempts=attempt)
        mean, mass = aggregate_top_logprobs(top)
        best = max(top, key=lambda t: t[1])[0]
        raw_top = [[tok, math.exp(lp)] for tok, lp in top]
        return numeric_score(mean, mass, self.min_mass, flag=top_token_flag(best, words), top=raw_top, attempts=attempt)

    def _delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1) * (1 + self.jitter * random.random()))

    def _describe(self, e: Exception) -> str:
        status = getattr(e, "status_code", None)
        text = f"{type(e).__name__}" + (f" (HTTP {status})" if status else "") + f": {str(e)[:200]}"
        return text.replace(self._key, "***")


def _endpoint_suffix(base_url: str | None) -> str:
    """'' for OpenAI itself, else '@host[:port]/path' so models of the same name on different servers never share a cache entry."""
    if not base_url:
        return ""
    url = urlparse(base_url)
    if url.hostname == "api.openai.com":
        return ""
    return "@" + (url.netloc + url.path).rstrip("/")
