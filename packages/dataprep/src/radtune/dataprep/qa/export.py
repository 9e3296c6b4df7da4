"""The generated pairs as a dataset TRL's `SFTTrainer` trains on directly.

`messages` form (default; works with `assistant_only_loss=True`): each row has
`messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
{"role": "assistant", "content": [{"type": "text", "text": answer}]}]` and `images = [image]`, like
`HuggingFaceH4/llava-instruct-mix-vsft`. `conversation="multi"` puts all pairs of an image in one multi-turn
conversation (the image only in the first user turn). `form="prompt-completion"` splits the same turns into
`prompt` (the user turns up to the last answer) and `completion` (the last answer).

Every row keeps `question`, `answer`, `answer_type` (`closed`/`open`) and `category` (lists in multi-turn
rows), the ids of its image (`id`, `study_id`, `patient_id`, … where the source has them) and `qa_id`, and stays in
its source split, so the patient-level split of the build is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from radtune.common.vqa_data import conversation_turns, messages_feature

ID_COLUMNS = ("id", "study_id", "patient_id", "view", "split", "source", "license")
CONVERSATIONS = ("single", "multi")
FORMS = ("messages", "prompt-completion")


def _features(source_features, conversation: str, form: str):
    from datasets import Features, Image, List, Value

    turn = messages_feature()
    text = Value("string") if conversation == "single" else List(Value("string"))
    features = {name: source_features[name] for name in ID_COLUMNS if name in source_features}
    features["qa_id"] = Value("string")
    features.update({"question": text, "answer": text, "answer_type": text, "category": text})
    features.update({"messages": turn} if form == "messages" else {"prompt": turn, "completion": turn})
    features["images"] = List(Image())
    return Features(features)


def build_qa_split(
    split, pairs_per_row: Sequence[list[dict] | None], conversation: str = "single", form: str = "messages"
):
    """The QA rows of one source split.

    Args:
        split (`datasets.Dataset`): the source split (an `image` column and the id columns).
        pairs_per_row (`Sequence[list[dict] | None]`): the pairs of each source row (`None`/empty: no rows).
        conversation (`str`, *optional*, defaults to `"single"`): `single` (one pair a row) or `multi`.
        form (`str`, *optional*, defaults to `"messages"`): `messages` or `prompt-completion`.

    Returns:
        `datasets.Dataset`
    """
    from datasets import Image

    if conversation not in CONVERSATIONS:
        raise ValueError(f"conversation must be one of {CONVERSATIONS}, got {conversation!r}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if len(pairs_per_row) != len(split):
        raise ValueError(f"got pairs for {len(pairs_per_row)} rows, the split has {len(split)}")

    # (source row, pairs of the output row, number of the first pair)
    plan = []
    for row, pairs in enumerate(pairs_per_row):
        if not pairs:
            continue
        if conversation == "single":
            plan += [(row, [pair], number) for number, pair in enumerate(pairs)]
        else:
            plan.append((row, list(pairs), 0))

    keep = [name for name in ID_COLUMNS if name in split.column_names]
    # Images are carried as encoded bytes, never decoded and re-encoded.
    base = split.select_columns(["image", *keep]).cast_column("image", Image(decode=False))
    base = base.select([row for row, _pairs, _number in plan])
    features = _features(split.features, conversation, form)
    key_column = "id" if "id" in keep else ("study_id" if "study_id" in keep else None)

    def add(batch, indices):
        out = {name: batch[name] for name in keep}
        out["images"] = [[image] for image in batch["image"]]
        columns = {"qa_id": [], "question": [], "answer": [], "answer_type": [], "category": []}
        turns_column = {"messages": []} if form == "messages" else {"prompt": [], "completion": []}
        for position, index in enumerate(indices):
            row, pairs, number = plan[index]
            prefix = batch[key_column][position] if key_column else str(row)
            columns["qa_id"].append(f"{prefix}-{number}" if conversation == "single" else str(prefix))
            for name in ("question", "answer", "answer_type", "category"):
                values = [pair.get(name) for pair in pairs]
                columns[name].append(values[0] if conversation == "single" else values)
            turns = conversation_turns(pairs)
            if form == "messages":
                turns_column["messages"].append(turns)
            else:
                turns_column["prompt"].append(turns[:-1])
                turns_column["completion"].append(turns[-1:])
        out.update(columns)
        out.update(turns_column)
        return out

    return base.map(add, with_indices=True, batched=True, remove_columns=["image"], features=features)


def build_qa_dataset(dataset, pairs: dict[str, Sequence[list[dict] | None]], conversation="single", form="messages"):
    """`build_qa_split` for every split of `dataset` (a `DatasetDict`) that has pairs; splits keep their names."""
    from datasets import DatasetDict

    return DatasetDict(
        {name: build_qa_split(dataset[name], pairs[name], conversation, form) for name in dataset if name in pairs}
    )


def render_qa_card(report: dict, source_card_metadata: dict | None = None, data_use_notice: str = "") -> str:
    """The `README.md` of a QA dataset described by the run `report` (see `pipeline.generate_qa_dataset`)."""
    import yaml

    source_card_metadata = source_card_metadata or {}
    splits: dict[str, int] = report["rows"]
    metadata = {"pretty_name": f"{source_card_metadata.get('pretty_name', 'radtune')} VQA pairs"}
    for key in ("license", "license_name", "license_link", "credentialed"):
        if key in source_card_metadata:
            metadata[key] = source_card_metadata[key]
    metadata.setdefault("license", "other")
    metadata["task_categories"] = ["visual-question-answering"]
    metadata["language"] = ["en"]
    metadata["tags"] = sorted({"medical", "radiology", "radtune", "vqa", *source_card_metadata.get("tags", [])})
    metadata["configs"] = [
        {"config_name": "default", "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits]}
    ]
    generator = report["generator"]
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {metadata['pretty_name']}", ""]
    if data_use_notice:
        lines += ["## Data use agreement", "", f"> **{data_use_notice}**", ""]
    source = report.get("dataset", "the source dataset")
    if generator == "rules":
        how = "offline rules from the CheXpert-style report labeler (`radtune.common.labeler`)"
    else:
        how = f"the model `{report.get('model')}` (prompt `{report.get('prompt_version')}`) from the scrubbed reports"
    lines += [
        f"Question–answer pairs about the images of `{source}`, generated by `radtune data qa` with {how}.",
        "Pairs come from the report only; generated answers may contain errors and are not a diagnosis.",
        "",
        "## Splits",
        "",
        "| split | rows |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {count:,} |" for name, count in splits.items()]
    lines += ["", "Splits are those of the source (patient-level), so no patient crosses them."]
    if report.get("empty_splits"):
        names = ", ".join(f"`{name}`" for name in report["empty_splits"])
        lines += [f"Left out: {names} (no question-answer pairs came from its reports)."]
    lines += [""]
    lines += ["## Format", ""]
    if report["form"] == "messages":
        lines += ["`messages` (user turn: the image then the question; assistant turn: the answer) and `images`,"]
    else:
        lines += ["`prompt` (user turns) / `completion` (the last answer) and `images`,"]
    lines += [
        f"{'one pair per row' if report['conversation'] == 'single' else 'all pairs of an image in one conversation'};"
        " `question`, `answer`, `answer_type` (closed/open) and `category` for evaluation.",
        "",
        "```python",
        "from trl import SFTConfig, SFTTrainer",
        "trainer = SFTTrainer(model=model, processing_class=processor, train_dataset=dataset['train'],",
        "                     args=SFTConfig(assistant_only_loss=True, max_length=None, ...))",
        "```",
        "",
        "## Generation",
        "",
        f"- reports: {report.get('reports', 0):,}; with pairs: {report.get('reports_with_pairs', 0):,}; "
        f"failed: {len(report.get('failures', [])):,}",
        f"- pairs per report: {report.get('n_per_report')}",
    ]
    cost = report.get("cost")
    if cost:
        dollars = "unknown" if cost["cost_usd"] is None else f"${cost['cost_usd']:.4f}"
        lines += [f"- tokens: {cost['prompt_tokens']:,} in / {cost['completion_tokens']:,} out; cost: {dollars}"]
    if report.get("command"):
        lines += ["", "```bash", report["command"], "```"]
    lines += [""]
    return "\n".join(lines)
