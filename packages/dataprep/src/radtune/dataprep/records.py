"""The one record schema every reader yields, and the small file helpers readers share.

A record is a plain dict. Readers fill what their source has and leave the rest out:

- `image`: a path (`str`) to a JPEG/PNG/DICOM file, or the file's raw `bytes`;
- `id`: the source's own identifier of the image (or of the question for VQA);
- `text`: the caption, or for reports the findings and impression; reports also give `findings` and `impression`;
- `labels`: a list of label names (positive findings), `concepts`: a list of UMLS CUIs;
- `question`, `answer`, `answer_type` for VQA;
- `patient_id`, `study_id`, `view`;
- `split`: the official split when the source has one (`train`, `validation`, `test`, or `train_val` for rows
  the build must divide between train and validation by patient);
- `source` and `license` (a per-record licence where the source gives one).

Readers never decide that a record is bad because of its image: the build decodes every image and counts
missing, unreadable, truncated and oversized ones. Readers do fail loudly on a malformed metadata file.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from radtune.common.labeler import OBSERVATIONS

# Every column a built dataset can hold, in card order. `image` is added as a datasets `Image()` feature.
STRING_FIELDS = (
    "id",
    "text",
    "findings",
    "impression",
    "question",
    "answer",
    "answer_type",
    "patient_id",
    "study_id",
    "view",
    "source",
    "license",
)
LIST_FIELDS = ("labels", "concepts")
RECORD_FIELDS = ("image", *STRING_FIELDS, *LIST_FIELDS, "split")


class MissingColumnError(ValueError):
    """A metadata file lacks a column the reader needs."""

    def __init__(self, path: str | Path, column: str, found: Iterable[str]):
        self.path = str(path)
        self.column = column
        super().__init__(f"{path}: required column '{column}' is missing (found: {', '.join(found) or 'none'})")


class SourceLayoutError(FileNotFoundError):
    """The source folder does not have the layout the reader expects."""


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently un-gzipping `.gz`, decoding UTF-8 with or without a BOM."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def find_file(root: Path, *names: str) -> Path | None:
    """The first of `names` (relative to `root`, tried as given and with `.gz`) that exists."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def require_file(root: Path, *names: str, what: str = "") -> Path:
    found = find_file(root, *names)
    if found is None:
        label = f" ({what})" if what else ""
        raise SourceLayoutError(f"{root}: none of {', '.join(names)} found{label}")
    return found


def read_csv(path: str | Path, required: Iterable[str] = (), delimiter: str = ",") -> Iterator[dict[str, str]]:
    """Yield the rows of a CSV file as dicts of stripped strings.

    Tolerates what real downloads contain: a UTF-8 BOM, `.gz` compression, a trailing comma on data rows
    (an extra value with no header, dropped), and a leading unnamed index column (header `""` or
    `Unnamed: 0`, dropped).

    Raises:
        `MissingColumnError`: a column in `required` is not in the header (the message names the file and column).
        `ValueError`: the file is empty.
    """
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        header = [name.strip() for name in header]
        # A trailing comma in the header gives a last empty name: treat it as absent.
        while header and header[-1] == "":
            header.pop()
        keep = [i for i, name in enumerate(header) if name and not name.startswith("Unnamed:")]
        names = [header[i] for i in keep]
        for column in required:
            if column not in names:
                raise MissingColumnError(path, column, names)
        for row in reader:
            if not row or all(not value.strip() for value in row):
                continue
            yield {header[i]: (row[i].strip() if i < len(row) else "") for i in keep}


def clean_text(value) -> str:
    """A string with runs of whitespace collapsed; `None`, NaN and the literal `"NULL"` become `""`.

    Non-strings (VQA-RAD's int answers) become their string form.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    text = " ".join(str(value).split())
    # VQA-RAD writes missing fields as the string "NULL"; a real answer "none" must survive.
    return "" if text == "NULL" else text


def label_names(values: dict[str, object], names: Iterable[str] = OBSERVATIONS) -> list[str]:
    """The names whose value is positive (`1`, `1.0`, `"1.0"`): uncertain (-1) and blank are not positive."""
    positive = []
    for name in names:
        value = values.get(name)
        if value is None or value == "":
            continue
        try:
            if float(value) == 1.0:
                positive.append(name)
        except (TypeError, ValueError):
            continue
    return positive


@dataclass(frozen=True)
class Reader:
    """One source's reader.

    Args:
        name (`str`): the source name on the command line.
        read (`Callable[..., Iterator[dict]]`): `read(root, **options)` yields records.
        required_text (`tuple[str, ...]`): record fields that must be non-empty, else the record is skipped
            as `empty_text` (`("text",)` for captions and reports, `("question", "answer")` for VQA, `()` for
            label-only sources such as NIH).
        dedupe_on (`tuple[str, ...]`): fields that, with the image hash, identify an exact duplicate (VQA asks many
            questions about one image, so a duplicate there is the same image *and* the same question and answer).
    """

    name: str
    read: Callable[..., Iterator[dict]]
    required_text: tuple[str, ...] = ("text",)
    dedupe_on: tuple[str, ...] = ()
