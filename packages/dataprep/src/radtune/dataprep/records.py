"""The one record schema every reader yields, and the small file helpers readers share.

A record is a plain dict. Readers fill what their source has and leave the rest out:

- `image`: a path (`str`) to a JPEG/PNG/DICOM file, or the file's raw `bytes`;
- `id`: the source's own identifier of the image (or of the question for VQA);
- `text`: the caption, or for reports the findings and impression; reports also give `findings` and `impression`;
- `labels`: a list of label names (positive findings), `concepts`: a list of UMLS CUIs;
- `question`, `answer`, `answer_type` for VQA: `closed` or `open` (lowercase, whatever the source wrote), with
  `answer_type_source` saying whether the source gave it (`given`) or `vqa_answer_type` derived it (`derived`);
- `patient_id`, `study_id`, `view`;
- `split`: the official split when the source has one (`train`, `validation`, `test`, or `train_val` for rows
  the build must divide between train and validation by patient);
- `source` and `license` (a per-record licence where the source gives one);
- `skip_reason` and `skip_detail` for a record whose own file shows it bad (`missing_report`; `invalid_text`: a
  report that is not UTF-8): the build counts and lists it.

Readers never decide that a record is bad because of its image: the build decodes every image and counts
missing, unreadable, truncated and oversized ones (and text holding NUL bytes as `invalid_text`). Readers fail
loudly on a malformed metadata file, naming it: `MissingColumnError`, `SourceLayoutError`, `SourceFileError` (not
UTF-8, a damaged gzip file, malformed CSV or JSON, an item that is not an object).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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
    "answer_type_source",
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


class SourceFileError(ValueError):
    """A source file that cannot be read as what it should be: not UTF-8, a damaged gzip file, malformed CSV or JSON,
    a JSON item that is not an object, a repeated id. The message names the file (and line or item)."""


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently un-gzipping `.gz`, decoding UTF-8 with or without a BOM.

    Read it inside `reading(path)` so that a file that is not UTF-8, a damaged or truncated gzip file and a malformed
    CSV give a `SourceFileError` naming the file instead of a traceback.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _raw_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def _first_bad_byte(path: Path) -> str:
    """Where the first byte that is not UTF-8 lies in `path` (`line 3, byte 0xe9`), found again on the raw bytes:
    the decoder that failed worked on blocks, so its position is not the file's."""
    try:
        data = _raw_bytes(path)
    except (OSError, EOFError, zlib.error):
        return "somewhere"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"line {line:,}, byte 0x{data[error.start]:02x}"
    return "somewhere"


def not_utf8_message(path: str | Path, where: str) -> str:
    return (
        f"{path}: not valid UTF-8 ({where}); convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) and build "
        "again"
    )


@contextmanager
def reading(path: str | Path):
    """Turn the errors of reading a source file into a `SourceFileError` that names it and says what to do."""
    path = Path(path)
    try:
        yield
    except SourceFileError:
        raise
    except UnicodeDecodeError:
        raise SourceFileError(not_utf8_message(path, _first_bad_byte(path))) from None
    except EOFError:  # gzip: the stream ends before its end-of-stream marker (click would only print "Aborted!")
        raise SourceFileError(f"{path}: the gzip file is truncated; download it again") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise SourceFileError(f"{path}: not a valid gzip file ({error}); download it again") from None


def read_text(path: str | Path) -> str:
    """The whole text of a (possibly gzipped) UTF-8 file; errors name the file (see `reading`)."""
    with reading(path), open_text(path) as handle:
        return handle.read()


def read_json(path: str | Path):
    """A (possibly gzipped) UTF-8 JSON file; errors name the file, and the line and column of a syntax error."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SourceFileError(f"{path}: not valid JSON ({error})") from None


def json_object(item, path: str | Path, number: int, required: Iterable[str]) -> dict:
    """`item` (the `number`-th element of the JSON list in `path`) when it is an object holding `required`."""
    if not isinstance(item, dict):
        kind = "null" if item is None else type(item).__name__
        raise SourceFileError(
            f"{path}: item {number} is {kind} ({str(item)[:40]!r}), expected an object with "
            f"{', '.join(required)}; fix or remove it"
        )
    for key in required:
        if key not in item:
            raise MissingColumnError(path, key, item.keys())
    return item


def json_objects(items, path: str | Path, required: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """`(number, item)` for each element of `items` (the list read from `path`), each checked by `json_object`.

    Raises:
        `SourceFileError`: `items` is not a list, or an element is not an object holding `required`.
    """
    if not isinstance(items, list):
        raise SourceFileError(f"{path}: expected a list of questions, got {type(items).__name__}")
    for number, item in enumerate(items):
        yield number, json_object(item, path, number, required)


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
        `SourceFileError`: the file is empty, not UTF-8, a damaged or truncated gzip file, or not CSV (a field longer
            than the csv module's limit, usually a quote never closed); the message names the file and line.
    """
    with reading(path), open_text(path) as handle, csv_field_limit(CSV_FIELD_LIMIT):
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise SourceFileError(f"{path}: empty file, expected a header row") from None
        except csv.Error as error:
            raise SourceFileError(_csv_message(path, 1, error)) from None
        header = [name.strip() for name in header]
        # A trailing comma in the header gives a last empty name: treat it as absent.
        while header and header[-1] == "":
            header.pop()
        keep = [i for i, name in enumerate(header) if name and not name.startswith("Unnamed:")]
        names = [header[i] for i in keep]
        for column in required:
            if column not in names:
                raise MissingColumnError(path, column, names)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise SourceFileError(_csv_message(path, reader.line_num, error)) from None
            if not row or all(not value.strip() for value in row):
                continue
            yield {header[i]: (row[i].strip() if i < len(row) else "") for i in keep}


# The csv module's default: a source field longer than this is almost always a quote that is never closed.
CSV_FIELD_LIMIT = 131_072


@contextmanager
def csv_field_limit(limit: int):
    """Read CSV with this field size limit, whatever another part of the process set (the limit is global)."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_message(path, line: int, error: csv.Error) -> str:
    hint = ""
    if "field larger than field limit" in str(error):
        hint = (
            f" (over {csv.field_size_limit():,} characters): a quote that is never closed swallows the lines after it"
        )
    return f"{path}, line {line:,}: not valid CSV: {error}{hint}; fix the file and build again"


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


# The answers that make a question closed where the source does not say (LLaVA-Med's and the Hub copies' rule).
CLOSED_ANSWERS = ("yes", "no")
ANSWER_TYPE_RULE = (
    "`answer_type` is `closed` or `open`. Where the source gives a question's type (VQA-RAD's and SLAKE's "
    "`answer_type`, `CLOSED`/`OPEN`) it is kept, lowercased (`answer_type_source` = `given`); where it does not "
    "(PathVQA, the Hub copies without a type column) a question whose answer is `yes` or `no` (case and a final "
    "period ignored) is `closed` and every other question `open` (`answer_type_source` = `derived`)."
)


def vqa_answer_type(answer, given=None) -> tuple[str, str]:
    """`(answer_type, answer_type_source)` of a VQA record: the source's `given` type lowercased when it is closed or
    open (`"given"`), else derived from the answer: `yes`/`no` → `closed`, anything else → `open` (`"derived"`)."""
    kind = clean_text(given).lower()
    if kind in ("closed", "open"):
        return kind, "given"
    closed = clean_text(answer).lower().rstrip(".").strip() in CLOSED_ANSWERS
    return ("closed" if closed else "open"), "derived"


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
