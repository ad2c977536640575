"""LLM access for the vocabulary stage: an OpenAI-compatible chat client with an on-disk answer cache,
JSON answers validated and re-asked when invalid, and PCC's self-refine clustering (Algorithm 1).
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
from pipeline.tracking import info
from pipeline.vocab import VocabError, prompt_text

T = TypeVar("T")


class ChatCache:
    """Answers on disk, one JSON file per request, keyed by provider, model, messages and sampling params."""

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


class OpenAIChat:
    """Chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

    The ``openai`` SDK does the transport: timeouts, and retries with exponential backoff on 429, 5xx,
    timeouts and dropped connections (``max_retries``). The API key is read from the environment variable
    named in params and is never part of a cache key, a log line or an output.
    """

    def __init__(self, params: OpenAIVocabParams, cache: ChatCache) -> None:
        from openai import OpenAI

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

    def complete(self, messages: list[dict[str, str]], tag: str) -> str:
        """One chat completion (``tag`` names the request, e.g. its round, so rounds are cached apart)."""
        request = {
            "provider": "openai", "base_url": self.params.base_url, "model": self.params.model, "tag": tag,
            "messages": messages, "temperature": self.params.temperature, "seed": self.params.seed,
        }  # fmt: skip
        cached = self.cache.get(request)
        if cached is not None:
            return cached
        from openai import APIError

        try:
            response = self.client.chat.completions.create(
                model=self.params.model, messages=messages, temperature=self.params.temperature, seed=self.params.seed
            )
        except APIError as error:
            failure = f"{type(error).__name__}: {error}"
            raise VocabError(f"{self.params.base_url}: request '{tag}' failed: {failure}") from None
        text = response.choices[0].message.content or ""
        self.cache.put(request, text)
        return text


def parse_json(text: str) -> Any:
    """The JSON object of an answer, tolerating a fenced code block around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    return json.loads(fenced.group(1) if fenced else text)


def ask_json(chat: OpenAIChat, prompt: str, validate: Callable[[Any], T], tag: str, max_invalid: int) -> T:
    """Ask until ``validate`` accepts the JSON answer; an invalid answer is sent back with its error."""
    messages = [{"role": "user", "content": prompt}]
    for attempt in range(max_invalid + 1):
        text = chat.complete(messages, f"{tag}/attempt-{attempt}")
        try:
            return validate(parse_json(text))
        except (json.JSONDecodeError, VocabError, TypeError, AttributeError, KeyError) as error:
            problem = f"{type(error).__name__}: {error}"
            info(f"invalid answer to '{tag}' (attempt {attempt + 1}): {problem}")
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": f"That answer is invalid ({problem}). Answer again with JSON only."},
            ]
    raise VocabError(f"no valid answer to '{tag}' after {max_invalid + 1} attempts; last error: {problem}")


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
