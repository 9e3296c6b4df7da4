"""Question/answer rows as TRL conversations, in one place: `radtune data qa`'s export and LLaVA training use it.

A dataset built by `radtune data build vqa-rad|slake|pathvqa` holds one question a row (`image`, `question`,
`answer`, `answer_type`, ids); TRL's `SFTTrainer` trains on conversations (`messages` with the image placeholder in
the first user turn, and the image(s)). `qa_conversations` turns the first into the second when a split is loaded,
without writing anything beside the dataset:

    train = qa_conversations(load_from_disk("runs/data/vqa-rad")["train"])                 # one question a row
    train = qa_conversations(load_from_disk("runs/data/slake")["train"], conversation="multi")  # one image a row

`answer_type` stays beside the conversation (a list per row in the multi-turn form, as the export writes it), so
`radtune.common.vqa_evaluation.vqa_items` and the closed/open metric families read the same split either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CONVERSATIONS = ("single", "multi")
QA_COLUMNS = ("question", "answer")
# The columns a multi-turn row holds one value per question of.
PER_QUESTION_COLUMNS = ("question", "answer", "answer_type", "category")


def conversation_turns(pairs: Sequence[Mapping]) -> list[dict]:
    """User/assistant turns for `pairs` (dicts with `question` and `answer`), the image placeholder in the first
    user turn only (TRL's conversational format, as `HuggingFaceH4/llava-instruct-mix-vsft` holds it)."""
    turns = []
    for index, pair in enumerate(pairs):
        image = [{"type": "image", "text": None}] if index == 0 else []
        turns.append({"role": "user", "content": image + [{"type": "text", "text": str(pair["question"])}]})
        turns.append({"role": "assistant", "content": [{"type": "text", "text": str(pair["answer"])}]})
    return turns


def messages_feature():
    """The `datasets` feature of a `messages` column."""
    from datasets import List, Value

    return List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})


def _image_keys(split, image_column: str) -> list:
    # Rows about one image: the same `study_id` (the VQA readers' image id), else the same encoded image.
    import hashlib

    from datasets import Image

    if "study_id" in split.column_names and all(value is not None for value in split["study_id"]):
        return list(split["study_id"])
    undecoded = split.cast_column(image_column, Image(decode=False))
    keys = []
    for value in undecoded[image_column]:
        data = value.get("bytes") if isinstance(value, Mapping) else None
        keys.append(hashlib.sha1(data).hexdigest() if data else (value or {}).get("path"))
    return keys


def qa_conversations(split, conversation: str = "single", image_column: str = "image"):
    """`split` with the `messages` column TRL's `SFTTrainer` trains on, built from its question/answer columns.

    A split that already has `messages` (`radtune data qa`'s export) comes back unchanged. Otherwise each row's
    `question` and `answer` become a user turn (the image, then the question) and an assistant turn (the answer):

    - `conversation="single"`: one conversation a row; every column is kept (the rows are not copied: the new
      column is joined to the loaded table).
    - `conversation="multi"`: the rows about one image (the same `study_id`, which the VQA readers set to the
      image's id; without one, the same image bytes) become one multi-turn conversation, in row order, with the
      image once; `question`, `answer`, `answer_type` and `category` become lists (one value a turn), `qa_id` is
      the image's key, and columns whose value differs between an image's questions (e.g. `id`) are dropped.

    The image column is named `image` in the result (TRL's collator reads `image` or `images`).

    Args:
        split (`datasets.Dataset`): rows with `image` (or `image_column`), `question` and `answer`, or `messages`.
        conversation (`str`, *optional*, defaults to `"single"`): `single` or `multi`.
        image_column (`str`, *optional*, defaults to `"image"`): the column of the images.

    Raises:
        `ValueError`: an unknown `conversation`, or a split with neither `messages` nor `question`/`answer`
        columns, or without `image_column`.
    """
    from datasets import Dataset, List, Value, concatenate_datasets

    if conversation not in CONVERSATIONS:
        raise ValueError(f"conversation must be one of {', '.join(CONVERSATIONS)}, got {conversation!r}")
    columns = split.column_names
    if "messages" in columns:
        return split
    if not set(QA_COLUMNS) <= set(columns):
        raise ValueError(
            "the dataset has neither a 'messages' column (`radtune data qa`) nor 'question' and 'answer' columns "
            f"(`radtune data build vqa-rad|slake|pathvqa`); it has: {', '.join(columns)}"
        )
    if image_column not in columns:
        raise ValueError(f"the dataset has no {image_column!r} image column (set image_column); it has: "
                         f"{', '.join(columns)}")  # fmt: skip
    if image_column != "image":
        split = split.remove_columns([c for c in ("image",) if c in columns]).rename_column(image_column, "image")
    if split._indices is not None:  # a selection: join the new column to the rows it selects
        split = split.flatten_indices(keep_in_memory=True)
    questions, answers = split["question"], split["answer"]

    if conversation == "single":
        messages = [
            conversation_turns([{"question": q, "answer": a}]) for q, a in zip(questions, answers, strict=True)
        ]
        added = Dataset.from_dict({"messages": messages}, features=_features({"messages": messages_feature()}))
        return concatenate_datasets([split, added], axis=1)

    groups: dict = {}
    for index, key in enumerate(_image_keys(split, "image")):
        groups.setdefault(key, []).append(index)
    per_question = [name for name in PER_QUESTION_COLUMNS if name in split.column_names]
    values = {name: split[name] for name in per_question}
    # A column kept whole must say one thing about the image: the same value in all its rows.
    shared = []
    for name in split.column_names:
        if name in per_question or name in ("image", "qa_id", "messages"):
            continue
        column = split[name]
        if all(len({repr(column[i]) for i in rows}) == 1 for rows in groups.values()):
            shared.append(name)
    firsts = [rows[0] for rows in groups.values()]
    base = split.select_columns(["image", *shared]).select(firsts).flatten_indices(keep_in_memory=True)
    new = {"qa_id": [str(key) for key in groups]}
    new.update({name: [[values[name][i] for i in rows] for rows in groups.values()] for name in per_question})
    new["messages"] = [conversation_turns([{"question": questions[i], "answer": answers[i]} for i in rows])
                       for rows in groups.values()]  # fmt: skip
    features = {"qa_id": Value("string"), "messages": messages_feature()}
    features.update({name: List(split.features[name]) for name in per_question})
    added = Dataset.from_dict(new, features=_features(features))
    return concatenate_datasets([base, added], axis=1)


def _features(features: dict):
    from datasets import Features

    return Features(features)
