"""LLM access for the vocabulary stage: an OpenAI-compatible chat client, JSON answers validated and re-asked
when invalid, an on-disk cache of the validated answers, and PCC's self-refine clustering (Algorithm 1).

The cache keeps only answers that passed validation, keyed by the question (the first request of a
conversation): an invalid answer is never stored, so once the server is fixed a rerun asks it again. A cached
answer is validated again when read (the checks may have grown stricter since) and dropped if it fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.io import write_json
from pipeline.params import OpenAIVocabParams
from pipeline.redaction import redact, register_secret
from pipeline.tracking import info
from pipeline.vocab import VocabError, prompt_text

T = TypeVar("T")


class ChatCache:
    """Validated answers on disk, one JSON file per question, keyed by provider, model, messages and sampling
    params."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def get(self, request: dict[str, Any]) -> str | None:
        path = self.directory / f"{self.key(request)}.json"
        return json.loads(path.read_text())["response"] if path.is_file() else None

    def put(self, request: dict[str, Any], response: str) -> None:
        write_json(self.directory / f"{self.key(request)}.json", {"request": request, "response": response})

    def drop(self, request: dict[str, Any]) -> None:
        (self.directory / f"{self.key(request)}.json").unlink(missing_ok=True)


class OpenAIChat:
    """Chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

    The ``openai`` SDK does the transport: timeouts, and retries with exponential backoff on 429, 5xx,
    timeouts and dropped connections (``max_retries``). The API key is read from the environment variable
    named in params and is never part of a cache key, a log line or an output.
    """

    def __init__(self, params: OpenAIVocabParams, cache: ChatCache) -> None:
        from openai import OpenAI

        register_secret(params.api_key_env)
        api_key = os.environ.get(params.api_key_env)
        if not api_key:
            raise VocabError(f"environment variable {params.api_key_env} is not set (the API key is read from it)")
        for noisy in ("openai", "httpx", "httpcore", "httpx2", "httpcore2"):  # debug logs of requests
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.params = params
        self.cache = cache
        self.client = OpenAI(
            base_url=params.base_url, api_key=api_key, timeout=params.timeout, max_retries=params.max_retries
        )

    def request(self, messages: list[dict[str, str]], tag: str) -> dict[str, Any]:
        """What identifies a question in the cache (``tag`` names it, e.g. its round, so rounds are kept apart);
        the API key is not part of it."""
        return {
            "provider": "openai", "base_url": self.params.base_url, "model": self.params.model, "tag": tag,
            "messages": messages, "temperature": self.params.temperature, "seed": self.params.seed,
        }  # fmt: skip

    def complete(self, messages: list[dict[str, str]], tag: str) -> str:
        """One chat completion from the server (never from the cache: :func:`ask_json` keeps what validates)."""
        from openai import APIError

        try:
            response = self.client.chat.completions.create(
                model=self.params.model, messages=messages, temperature=self.params.temperature, seed=self.params.seed
            )
        except APIError as error:
            failure = redact(f"{type(error).__name__}: {error}")  # a server may echo the key in its error body
            raise VocabError(f"{self.params.base_url}: request '{tag}' failed: {failure}") from None
        return redact(response.choices[0].message.content or "")


def parse_json(text: str) -> Any:
    """The JSON object of an answer, tolerating a fenced code block around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    return json.loads(fenced.group(1) if fenced else text)


INVALID_ANSWER = (json.JSONDecodeError, VocabError, TypeError, AttributeError, KeyError)


def ask_json(chat: OpenAIChat, prompt: str, validate: Callable[[Any], T], tag: str, max_invalid: int) -> T:
    """The validated JSON answer to ``prompt``: from the cache, else asked until ``validate`` accepts it (an
    invalid answer is sent back with its error); only an accepted answer is cached, under the question."""
    messages = [{"role": "user", "content": prompt}]
    question = chat.request(messages, tag)
    cached = chat.cache.get(question)
    if cached is not None:
        try:
            return validate(parse_json(cached))
        except INVALID_ANSWER as error:
            info(f"cached answer to '{tag}' is no longer valid ({type(error).__name__}: {error}); asking again")
            chat.cache.drop(question)
    for attempt in range(max_invalid + 1):
        text = chat.complete(messages, f"{tag}/attempt-{attempt}")
        try:
            answer = validate(parse_json(text))
        except INVALID_ANSWER as error:
            problem = f"{type(error).__name__}: {error}"
            info(f"invalid answer to '{tag}' (attempt {attempt + 1}): {problem}")
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": f"That answer is invalid ({problem}). Answer again with JSON only."},
            ]
        else:
            chat.cache.put(question, text)
            return answer
    raise VocabError(
        f"no valid answer to '{tag}' after {max_invalid + 1} attempts; last error: {problem}. Invalid answers are "
        f"not cached: a rerun asks {chat.params.base_url} again (valid answers are kept in {chat.cache.directory}; "
        f"delete that folder to ask every question afresh)"
    )


def self_refine_clusters(
    chat: OpenAIChat, classes: list[str], validate: Callable[[Any], dict[str, list[str]]],
    stable_rounds: int, max_rounds: int, max_invalid: int,
) -> tuple[dict[str, list[str]], int, bool]:  # fmt: skip
    """Algorithm 1 of the PCC paper: z_0 = M(p_gen ‖ l); z_{t+1} = M(p_refine ‖ z_t) until the answer is
    unchanged for ``stable_rounds`` consecutive rounds or ``max_rounds`` answers were taken.

    Returns the clusters, the number of answers taken and whether the stop condition was met.
    """
    listed = ", ".join(classes)
    current = ask_json(chat, prompt_text("cluster_initial").format(classes=listed), validate, "clusters/0", max_invalid)
    rounds, unchanged = 1, 0
    while unchanged < stable_rounds and rounds < max_rounds:
        prompt = prompt_text("cluster_refine").format(classes=listed, previous=json.dumps({"clusters": current}))
        refined = ask_json(chat, prompt, validate, f"clusters/{rounds}", max_invalid)
        unchanged = unchanged + 1 if refined == current else 0
        current, rounds = refined, rounds + 1
    return current, rounds, unchanged >= stable_rounds
