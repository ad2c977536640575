"""One redaction layer: no secret the project reads reaches a terminal, a log, a stored error or Prefect.

Secrets come from environment variables only (params refuse credentials in URLs, since params are stored in
``dvc.lock``, the DVC cache and Prefect). :func:`redact` replaces the value of every secret variable — a name
ending in KEY, TOKEN, SECRET, PASSWORD or CREDENTIALS (``OPENAI_API_KEY``, ``HF_TOKEN``, ``PREFECT_API_KEY``),
or one registered by the code that reads it (``vocab.openai.api_key_env`` may name any variable) — and the
user:password part of any URL, by ``***``. :func:`install` passes every log record created in the process
through it (the project's, Prefect's, the openai SDK's, with their tracebacks); the stages' error lines, Prefect
state messages and anything an LLM answers pass through it too. Values shorter than
:data:`MIN_SECRET_LENGTH` characters are not searched for (they would blank ordinary words).
"""

from __future__ import annotations

import logging
import os
import re
import traceback

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
MIN_SECRET_LENGTH = 8
URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")
MASK = "***"
_registered: set[str] = set()


def register_secret(variable: str) -> None:
    """Treat ``variable``'s value as a secret from now on, whatever its name."""
    _registered.add(variable)


def secret_values() -> list[str]:
    """The values of the secret environment variables set now, longest first."""
    names = {name for name in os.environ if SECRET_NAME.search(name)} | _registered
    values = {os.environ.get(name, "") for name in names}
    return sorted((value for value in values if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact_url(text: str) -> str:
    """``text`` without the user:password part of any URL in it."""
    return URL_CREDENTIALS.sub(f"{MASK}@", text)


def redact(text: str) -> str:
    """``text`` with every secret value and URL credential replaced by ``***``."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return redact_url(text)


def install() -> None:
    """Redact every log record created in this process from now on, message and traceback (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:  # formatted now, so the formatter uses this text
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    redacting_factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)
