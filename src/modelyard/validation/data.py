"""The rows a validation runs both versions on, read from a file.

Formats, by suffix:

- ``.npz``: one array per input, by input name (rows along axis 0);
- ``.csv`` (read with the standard library) and ``.parquet`` (needs pyarrow: ``pip install
  'modelyard[parquet]'``): one column per input by name, or, for a model with one input, every
  column (but the labels) side by side in file order as that input's features;
- ``.jsonl`` / ``.ndjson``: one request body per line, KServe V2 (``{"inputs": [...]}``) or
  TF-Serving (``{"instances": ...}`` / ``{"inputs": {...}}``), each of one or several rows; or the
  gateway's inference log (records with ``request_body``): its primary records answered 200, V2
  bodies binary or JSON, TF-Serving bodies.

Labels (``--labels COL``) are an array of the ``.npz``, a column of the table, or a key beside the
request in each JSON line (one value, or a list with one per row). The data is held in memory;
:meth:`Dataset.inputs_for` shapes it for one model's signature (names, datatypes, shapes), so two
versions with different signatures read the same rows.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.dtypes import numpy_dtype
from modelyard.errors import InvalidInput
from modelyard.registry.files import file_sha256
from modelyard.sdk import ModelMetadata, TensorSpec

__all__ = ["FORMATS", "Dataset", "load_dataset"]

FORMATS = {".npz": "npz", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}  # fmt: skip
UNNAMED = ""  # the one tensor of a TF-Serving body that does not name it

Decoder = Callable[[ModelMetadata], dict[str, np.ndarray]]


@dataclasses.dataclass
class Dataset:
    """Rows read from ``path``: either named columns, or requests decoded per model signature."""

    path: str
    format: str  # npz, csv, parquet, jsonl (requests) or log (the gateway's inference log)
    sha256: str
    rows: int
    labels: np.ndarray | None = None
    columns: dict[str, np.ndarray] | None = None
    requests: list[tuple[int, Decoder]] | None = None  # (rows, decode for a model's metadata)
    _assembled: dict[int, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)

    def inputs_for(self, meta: ModelMetadata) -> dict[str, np.ndarray]:
        """Every row as ``meta``'s inputs: the declared names, datatypes and shapes."""
        key = id(meta)
        if key not in self._assembled:
            columns = self.columns if self.columns is not None else self._decode(meta)
            self._assembled[key] = assemble(columns, meta.inputs, self.rows)
        return self._assembled[key]

    def _decode(self, meta: ModelMetadata) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for index, (rows, decode) in enumerate(self.requests or []):
            try:
                arrays = decode(meta)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{self.path}: request {index + 1}: {exc.message}", field=exc.field
                ) from None
            for name, array in arrays.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise InvalidInput(
                        f"{self.path}: request {index + 1}: input '{name}' has shape {list(array.shape)},"
                        f" not {rows} rows",
                        field=name,
                    )
                parts.setdefault(name, []).append(array)
        try:
            return {name: np.concatenate(arrays) for name, arrays in parts.items()}
        except ValueError as exc:
            raise InvalidInput(
                f"{self.path}: the requests' inputs cannot be put one under the other ({exc})", field="data"
            ) from None


def load_dataset(path: str | Path, labels: str | None = None) -> Dataset:
    """Read ``path`` (see the module doc); ``labels`` names the label column or key."""
    source = Path(path)
    kind = FORMATS.get(source.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"{source}: unknown data format; use one of {', '.join(sorted(FORMATS))}", field="data"
        )
    if not source.is_file():
        raise InvalidInput(f"{source}: no such data file", field="data")
    digest = file_sha256(source)
    if kind == "jsonl":
        return _jsonl(source, labels, digest)
    columns = {"npz": _npz, "csv": _csv, "parquet": _parquet}[kind](source)
    found = None
    if labels is not None:
        if labels not in columns:
            raise InvalidInput(
                f"{source}: no label column '{labels}' (it has {_count(columns)})", field="labels"
            )
        found = columns.pop(labels)
    rows = _rows(columns, source)
    return Dataset(str(source), kind, digest, rows, found, columns=columns)


def assemble(columns: dict[str, np.ndarray], specs: Sequence[TensorSpec], rows: int) -> dict[str, np.ndarray]:
    """``columns`` as the inputs ``specs`` declare (see the module doc for the rules)."""
    if not specs:  # no signature: the columns as they are
        return {name or "input": array for name, array in columns.items()}
    if all(spec.name in columns for spec in specs):
        return {spec.name: _fit(columns[spec.name], spec) for spec in specs}
    if len(specs) == 1 and columns:
        spec = specs[0]
        arrays = list(columns.values())
        if len(arrays) == 1:
            return {spec.name: _fit(arrays[0], spec)}
        if all(array.ndim == 1 for array in arrays):  # a table's columns: the features, in order
            return {spec.name: _fit(np.column_stack(arrays), spec)}
    wanted = [spec.name for spec in specs]
    missing = [name for name in wanted if name not in columns]
    raise InvalidInput(
        f"the model takes inputs {wanted}; the data ({_count(columns)}) has no column "
        f"{', '.join(repr(name) for name in missing)}: name each input's column",
        field="data",
    )


def _fit(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    try:
        fitted = array.astype(numpy_dtype(spec.datatype), copy=False)
    except (ValueError, TypeError):  # numpy's message quotes the value: data is never echoed
        raise InvalidInput(
            f"input '{spec.name}': the data is not {spec.datatype} (a value cannot be converted)",
            field=spec.name,
        ) from None
    if fitted.ndim == len(spec.shape) - 1 and spec.shape and spec.shape[-1] in (-1, 1):
        fitted = fitted.reshape(*fitted.shape, 1)  # one value per row for a [-1, 1] input
    if not spec.accepts_shape(tuple(fitted.shape)):
        raise InvalidInput(
            f"input '{spec.name}': the data has shape {list(fitted.shape)}, the model takes "
            f"{list(spec.shape)} (-1 means any size)",
            field=spec.name,
        )
    return fitted


def _rows(columns: dict[str, np.ndarray], source: Path) -> int:
    counts = {name: (array.shape[0] if array.ndim else 1) for name, array in columns.items()}
    if not counts:
        raise InvalidInput(f"{source}: no input columns", field="data")
    if len(set(counts.values())) != 1:
        low, high = min(counts.values()), max(counts.values())
        raise InvalidInput(
            f"{source}: the columns have different numbers of rows ({low} to {high})", field="data"
        )
    return next(iter(counts.values()))


def _count(columns: dict[str, Any]) -> str:
    """How many columns, never their names: a validation job's error is read by viewers, and a
    setup's dataset may be a file whose header is not theirs to read."""
    return f"{len(columns)} column{'' if len(columns) == 1 else 's'}"


# -- tables -----------------------------------------------------------------------------------------


def _npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.asarray(archive[name]) for name in archive.files}
    # A truncated or damaged archive: zipfile's and zlib's own errors, not OSError.
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InvalidInput(f"{path}: not a readable .npz file ({exc})", field="data") from None


def _csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header, values = _csv_columns(reader, path)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{path}: not UTF-8 text (byte {exc.start} of a block cannot be decoded)", field="data"
            ) from None
        except csv.Error as exc:
            raise InvalidInput(f"{path}:{reader.line_num}: not valid CSV ({exc})", field="data") from None
    return {name: _typed(column) for name, column in zip(header, values, strict=True)}


def _csv_columns(reader: Any, path: Path) -> tuple[list[str], list[list[str]]]:
    header = next(reader, None)
    if not header:
        raise InvalidInput(f"{path}: empty CSV file (a header line names the columns)", field="data")
    values: list[list[str]] = [[] for _ in header]
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}", field="data"
            )
        for column, value in zip(values, row, strict=True):
            column.append(value)
    return header, values


def _typed(values: list[str]) -> np.ndarray:
    """A CSV column as integers, else floats (empty cells NaN), else text."""
    try:
        return np.array(values, dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([value if value.strip() else "nan" for value in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=object)


def _parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise InvalidInput(
            "reading .parquet needs pyarrow: pip install 'modelyard[parquet]'", field="data"
        ) from None
    import pyarrow as pa  # type: ignore[import-not-found,import-untyped,unused-ignore]

    try:
        table = pq.read_table(path)
        return {name: np.asarray(table.column(name).to_numpy()) for name in table.column_names}
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"{path}: not a readable Parquet file ({reason})", field="data") from None


# -- requests ---------------------------------------------------------------------------------------


def _jsonl(path: Path, labels: str | None, digest: str) -> Dataset:
    requests: list[tuple[int, Decoder]] = []
    found: list[Any] = []
    kinds: set[str] = set()
    for number, doc in _lines(path):
        parsed = _request(doc, f"{path}:{number}")
        if parsed is None:  # a log record that is not a primary answer with a payload
            continue
        kind, rows, decode = parsed
        kinds.add(kind)
        requests.append((rows, decode))
        if labels is not None:
            found.extend(_labels_of(doc, labels, rows, f"{path}:{number}"))
    if not requests:
        raise InvalidInput(
            f"{path}: no request to replay (log records need payload mode 'full')", field="data"
        )
    label_array = np.asarray(found) if labels is not None else None
    rows = sum(rows for rows, _ in requests)
    return Dataset(
        str(path), "log" if kinds == {"log"} else "jsonl", digest, rows, label_array, requests=requests
    )


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path}:{number}: not JSON ({exc})", field="data") from None
            if not isinstance(doc, dict):
                raise InvalidInput(f"{path}:{number}: each line must be a JSON object", field="data")
            yield number, doc


def _request(doc: dict[str, Any], where: str) -> tuple[str, int, Decoder] | None:
    if "request_body" in doc:  # a gateway inference-log record
        if doc.get("role") != "primary" or doc.get("status") != 200 or not doc.get("request_body"):
            return None
        body = _log_body(str(doc["request_body"]), where)
        if doc.get("protocol") == "tfserving":
            return ("log", *_tfserving(_json_object(body, where), where))
        return ("log", *_v2(body, where))
    if isinstance(doc.get("inputs"), list):
        return ("jsonl", *_v2(json.dumps(doc).encode(), where))
    if "instances" in doc or isinstance(doc.get("inputs"), dict):
        return ("jsonl", *_tfserving(doc, where))
    raise InvalidInput(
        f"{where}: neither a V2 request ('inputs' list), a TF-Serving one ('instances' or 'inputs' "
        "object) nor an inference-log record ('request_body')",
        field="data",
    )


def _log_body(text: str, where: str) -> bytes:
    if not text.startswith("b64:"):
        return text.encode("utf-8")
    try:
        return base64.b64decode(text[4:], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: request_body is not valid base64", field="data") from None


def _json_object(body: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"{where}: the request body is not JSON ({exc})", field="data") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: the request body is not a JSON object", field="data")
    return doc


def _v2(body: bytes, where: str) -> tuple[int, Decoder]:
    """A V2 body, JSON or with binary tensors after the JSON (the log does not keep the header that
    says where the JSON ends, so the JSON's own end says it)."""
    from modelyard.server.protocols.oip_codec import decode_request

    text = body.decode("latin-1")  # one character per byte: indices are byte offsets
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError as exc:
        raise InvalidInput(f"{where}: the V2 request is not JSON ({exc})", field="data") from None
    header = None if end == len(body) else str(end)
    try:
        request, _ = decode_request(body, header)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", field=exc.field) from None
    arrays = request.inputs
    first = next(iter(arrays.values()))
    rows = first.shape[0] if first.ndim else 1
    return rows, lambda meta: arrays


def _tfserving(doc: dict[str, Any], where: str) -> tuple[int, Decoder]:
    rows = _tfserving_rows(doc, where)

    def decode(meta: ModelMetadata) -> dict[str, np.ndarray]:
        from modelyard.server.protocols.tfserving_rest import decode_predict

        return decode_predict(doc, meta)[0]

    return rows, decode


def _tfserving_rows(doc: dict[str, Any], where: str) -> int:
    value = doc.get("instances", doc.get("inputs"))
    if isinstance(value, dict) and value:
        value = next(iter(value.values()))
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where}: a TF-Serving request needs a non-empty list of rows", field="data")
    return len(value)


def _labels_of(doc: dict[str, Any], key: str, rows: int, where: str) -> list[Any]:
    if key not in doc:
        raise InvalidInput(f"{where}: no label '{key}' beside the request", field="labels")
    value = doc[key]
    values = value if isinstance(value, list) else [value]
    if len(values) != rows:
        raise InvalidInput(f"{where}: {len(values)} labels for {rows} rows", field="labels")
    return values
