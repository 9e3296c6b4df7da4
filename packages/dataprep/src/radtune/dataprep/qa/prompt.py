"""The versioned prompt and the structured-output schema of the LLM question–answer generator.

`PROMPT_VERSION` is part of every cache key: change it whenever the wording or the schema changes, so a run
never mixes answers to two different prompts.
"""

from __future__ import annotations

import copy
import re
from typing import Literal

from pydantic import BaseModel, Field

PROMPT_VERSION = "radtune-qa-v1"

SYSTEM_PROMPT = """\
You are a radiologist writing training data for a visual question-answering model that looks at the \
image described by a radiology report. You are given the report only.

Write exactly {n} question-answer pairs about the image, grounded ONLY in the report:
- Cover different aspects where the report allows: presence or absence of findings, location and laterality, \
severity or size, support devices and their position, comparison with prior studies.
- Mix closed questions (answerable with yes or no; the answer starts with "Yes" or "No") and open questions.
- Ask questions a reader of the image could answer; never ask about the report, the patient's history or \
anything the report does not state.
- Answer cautiously: when the report hedges ("possible", "cannot exclude"), say so ("Possibly, ...").
- Never include names, dates, ages, record numbers or any other identifier; "___" marks removed text.
- No two questions may be the same.
Set answer_type to "closed" for yes/no questions and "open" for all others."""

USER_TEMPLATE = "Report:\n{report}"

CATEGORIES = ("presence", "location", "severity", "device", "comparison", "other")


class QAPair(BaseModel):
    """One question about the image and its answer."""

    question: str = Field(description="A question about the image.")
    answer: str = Field(description="The answer, grounded in the report.")
    answer_type: Literal["closed", "open"] = Field(description='"closed" for yes/no questions, else "open".')
    category: Literal["presence", "location", "severity", "device", "comparison", "other"]


class QAPairs(BaseModel):
    """The model's whole answer: the list of pairs."""

    pairs: list[QAPair]

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict:
        # `chat.completions.parse` asks for the schema on every request and pydantic rebuilds it every time, which
        # at high concurrency costs more CPU than the rest of the request; the schema never changes, so build it
        # once per set of arguments. A deep copy goes out because the openai client edits it in place.
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(_SCHEMAS[key])


_SCHEMAS: dict = {}


class InvalidQAError(ValueError):
    """The model's pairs break a rule of the prompt; the message says which (it is what the re-ask quotes)."""


def build_messages(report: str, n: int) -> list[dict]:
    """The chat messages that ask for `n` pairs about `report` (already scrubbed)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(n=n)},
        {"role": "user", "content": USER_TEMPLATE.format(report=report.strip())},
    ]


def reask_message(reason: str, n: int) -> dict:
    """The follow-up user turn of the one re-ask after an invalid answer."""
    return {
        "role": "user",
        "content": f"Your previous answer was invalid: {reason}. Answer again with exactly {n} valid pairs.",
    }


def _normalise(question: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", " ".join(question.lower().split()))


def validate_pairs(parsed: QAPairs | None, n: int) -> list[dict]:
    """Check the model's answer and return the pairs as plain dicts.

    Raises:
        `InvalidQAError`: no parsed answer, not exactly `n` pairs, an empty question or answer, or a repeated
            question (compared case- and punctuation-insensitively).
    """
    if parsed is None:
        raise InvalidQAError("the answer did not follow the JSON schema")
    if len(parsed.pairs) != n:
        raise InvalidQAError(f"expected {n} pairs, got {len(parsed.pairs)}")
    seen = set()
    pairs = []
    for index, pair in enumerate(parsed.pairs):
        question, answer = pair.question.strip(), pair.answer.strip()
        if not question or not answer:
            raise InvalidQAError(f"pair {index + 1} has an empty question or answer")
        key = _normalise(question)
        if key in seen:
            raise InvalidQAError(f"pair {index + 1} repeats the question {question!r}")
        seen.add(key)
        pairs.append(
            {"question": question, "answer": answer, "answer_type": pair.answer_type, "category": pair.category}
        )
    return pairs
