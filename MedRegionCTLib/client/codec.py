"""The binary case encoding sent to the report server (numpy + stdlib only; shared by client and server).

A payload is one prepared case (:class:`~MedRegionCTLib.model.preprocess.PreparedCase`: the arrays on the
model's grids, region keys, names and attribute sentences) and nothing else: no patient identifiers, no
dates, no affine. Layout::

    b"MRCTCASE"                     8 bytes, magic
    header length                    uint32, little-endian
    header                           UTF-8 JSON (at most 1 MiB)
    buffers                          the arrays' bytes, at the offsets the header gives (relative to here)

Header::

    {"format": "medregionct-case", "format_version": 1, "schema": "radgenome10",
     "keys": ["lung", "heart"], "names": {"lung": "Lung"}, "attributes": {"lung": "A nodule ..."},
     "empty": ["breast"],
     "arrays": {"image": {"shape": [X, Y, Z], "encoding": "float16", "compression": "zlib",
                          "offset": 0, "nbytes": 123456}, ...}}

Encodings (all little-endian, C order): ``float16``/``float32`` (values as they are), ``unorm8`` (uint8 q
standing for q / 255: mask occupancies, error at most 1/510) and ``bits`` (``np.packbits(bitorder="little")``
of a 0/1 array). ``compression`` is ``none``, ``zlib`` or ``shuffle-zlib`` (the bytes of each value grouped by
significance before zlib, as Blosc's shuffle: 10-15% smaller for float16 images). Nothing is ever unpickled:
buffers are read with ``np.frombuffer`` into the dtype the encoding names, after their sizes have been checked
against the shape the model expects, so a hostile payload cannot make the decoder allocate more than a valid
one.

Every problem raises :class:`~MedRegionCTLib.errors.PayloadError` with the HTTP status the server answers:
400 (malformed: bad magic, truncated, not JSON, corrupt zlib), 413 (too large), 422 (well formed but not what
this model takes: wrong shape, encoding, schema, region key, missing field).
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import PayloadError
from ..model.preprocess import ARRAY_NAMES, PreparedCase

MAGIC = b"MRCTCASE"
FORMAT = "medregionct-case"
FORMAT_VERSION = 1
CONTENT_TYPE = "application/vnd.medregionct.case"
MAX_HEADER_BYTES = 1 << 20
PER_REGION = ("masks", "crops", "slice_masks")  # arrays whose first axis is the region (R)
MASK_ARRAYS = ("masks", "slice_masks")
ENCODINGS = {"float16": ("<f2", 2.0), "float32": ("<f4", 4.0), "unorm8": ("u1", 1.0), "bits": (None, 1 / 8)}
ALLOWED_ENCODINGS = {name: (("float16", "float32", "unorm8", "bits") if name in MASK_ARRAYS
                            else ("float16", "float32")) for name in ARRAY_NAMES}
COMPRESSIONS = ("none", "zlib", "shuffle-zlib")
HEADER_FIELDS = {"format", "format_version", "schema", "keys", "names", "attributes", "empty", "arrays"}
REQUIRED_FIELDS = ("format", "format_version", "schema", "keys", "arrays")
ARRAY_FIELDS = {"shape", "encoding", "compression", "offset", "nbytes"}
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_PREFIX = struct.Struct("<8sI")


@dataclass(frozen=True)
class InputSpec:
    """What a server's model takes: the schema, the allowed region keys, each array's shape, the limits.

    ``arrays`` maps an array name to its shape; per-region arrays start with ``"R"`` (the number of regions
    in the payload). Published by ``GET /v1/model`` (``input``) and rebuilt by the client with
    :meth:`from_dict`.
    """

    schema: str
    region_keys: tuple[str, ...]
    arrays: dict = field(default_factory=dict)
    max_regions: int = 64
    max_name_chars: int = 200
    max_attribute_chars: int = 8000
    max_body_bytes: int = 256 << 20

    @classmethod
    def from_preprocess(cls, preprocess, needed, schema: str, region_keys, **limits) -> InputSpec:
        gx, gy, gz = (int(v) for v in preprocess.grid)
        s, h = int(preprocess.num_slices), int(preprocess.slice_size)
        shapes = {"image": (gx, gy, gz), "masks": ("R", gx, gy, gz), "crops": ("R", gx, gy, gz),
                  "slices": (s, h, h), "slice_masks": ("R", s, h, h)}
        arrays = {name: shapes[name] for name in ARRAY_NAMES if name in set(needed)}
        return cls(schema=str(schema), region_keys=tuple(region_keys), arrays=arrays, **limits)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "region_keys": list(self.region_keys),
                "arrays": {k: list(v) for k, v in self.arrays.items()}, "max_regions": self.max_regions,
                "max_name_chars": self.max_name_chars, "max_attribute_chars": self.max_attribute_chars,
                "max_body_bytes": self.max_body_bytes}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        try:
            return cls(schema=str(data["schema"]), region_keys=tuple(data["region_keys"]),
                       arrays={k: tuple(v) for k, v in data["arrays"].items()},
                       max_regions=int(data["max_regions"]), max_name_chars=int(data["max_name_chars"]),
                       max_attribute_chars=int(data["max_attribute_chars"]),
                       max_body_bytes=int(data["max_body_bytes"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PayloadError(f"the server's input description is incomplete ({exc!r}); the server and this "
                               "client are different versions, upgrade one of them.", 400, "bad_spec") from None

    def shape_for(self, name: str, regions: int) -> tuple[int, ...]:
        return tuple(regions if d == "R" else int(d) for d in self.arrays[name])


# --- encoding -----------------------------------------------------------------------------------------------
def _pick_encoding(name: str, array: np.ndarray, exact: bool) -> str:
    if name in MASK_ARRAYS:
        if np.all((array == 0) | (array == 1)):
            return "bits"
        return "float32" if exact else "unorm8"
    return "float32" if exact else "float16"


def _to_bytes(array: np.ndarray, encoding: str) -> bytes:
    array = np.asarray(array)
    if encoding == "bits":
        return np.packbits(array.reshape(-1) > 0.5, bitorder="little").tobytes()
    if encoding == "unorm8":
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=ENCODINGS[encoding][0]).tobytes()


def _shuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes() if itemsize > 1 else raw


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(itemsize, -1).T.tobytes() if itemsize > 1 else raw


def encode_case(prepared: PreparedCase, schema: str, compression: str = "shuffle-zlib", level: int = 1,
                exact: bool = False, encodings: dict | None = None) -> bytes:
    """The payload bytes of ``prepared`` (its training paragraphs are never sent).

    ``exact``: float32 for images and fractional masks (about 2x larger); otherwise images travel as float16
    and fractional masks as unorm8. ``encodings`` forces an encoding per array name.
    """
    if compression not in COMPRESSIONS:
        raise PayloadError(f"unknown compression {compression!r}; use one of {COMPRESSIONS}.", 400, "bad_compression")
    buffers, table, offset = [], {}, 0
    for name, array in prepared.arrays.items():
        array = np.asarray(array)
        encoding = (encodings or {}).get(name) or _pick_encoding(name, array, exact)
        raw = _to_bytes(array, encoding)
        if compression == "shuffle-zlib":
            raw = _shuffle(raw, int(ENCODINGS[encoding][1]))
        if compression != "none":
            raw = zlib.compress(raw, level)
        table[name] = {"shape": [int(n) for n in array.shape], "encoding": encoding, "compression": compression,
                       "offset": offset, "nbytes": len(raw)}
        buffers.append(raw)
        offset += len(raw)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema": str(schema),
              "keys": [str(k) for k in prepared.keys],
              "names": {str(k): str(v) for k, v in prepared.names.items()},
              "attributes": {str(k): str(v) for k, v in prepared.attributes.items()},
              "empty": [str(k) for k in prepared.empty], "arrays": table}
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join([_PREFIX.pack(MAGIC, len(head)), head, *buffers])


# --- decoding -----------------------------------------------------------------------------------------------
def _bad(message: str, code: str = "malformed", status: int = 400):
    return PayloadError(message, status, code)


def read_header(body: bytes, max_body_bytes: int | None = None) -> tuple[dict, memoryview]:
    """The parsed header and the buffer area of a payload (only the framing is checked here)."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise _bad(f"the payload must be bytes, not {type(body).__name__}.")
    if max_body_bytes is not None and len(body) > max_body_bytes:
        raise _bad(f"the payload is {len(body)} bytes, over this server's limit of {max_body_bytes}; prepare the case "
                   "with the server's declared grid (ReportClient does).", "too_large", 413)
    if len(body) < _PREFIX.size:
        raise _bad(f"the payload is only {len(body)} bytes, shorter than its {_PREFIX.size}-byte prefix; it was "
                   "truncated in transit, send it again.", "truncated")
    magic, head_len = _PREFIX.unpack_from(body, 0)
    if magic != MAGIC:
        raise _bad(f"the payload does not start with {MAGIC!r}; it is not a MedRegionCT case encoding (build it "
                   "with MedRegionCTLib.client.codec.encode_case).", "bad_magic")
    if head_len > MAX_HEADER_BYTES:
        raise _bad(f"the payload header claims {head_len} bytes, over the {MAX_HEADER_BYTES}-byte limit.",
                   "header_too_large")
    end = _PREFIX.size + head_len
    if end > len(body):
        raise _bad(f"the payload header claims {head_len} bytes but only {len(body) - _PREFIX.size} follow; the "
                   "payload was truncated in transit, send it again.", "truncated")
    try:
        header = json.loads(bytes(body[_PREFIX.size:end]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _bad(f"the payload header is not valid UTF-8 JSON ({type(exc).__name__}).", "bad_header") from None
    if not isinstance(header, dict):
        raise _bad(f"the payload header must be a JSON object, not {type(header).__name__}.", "bad_header")
    return header, memoryview(body)[end:]


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{what} must be an integer, got {type(value).__name__}.", "bad_header")
    return value


def _text_table(header: dict, name: str, keys: set, limit: int) -> dict[str, str]:
    table = header.get(name, {})
    if not isinstance(table, dict):
        raise _bad(f"'{name}' must be an object {{region key: text}}, got {type(table).__name__}.", "bad_field", 422)
    out = {}
    for key, value in table.items():
        if key not in keys:
            raise _bad(f"'{name}' has an entry for region {key!r}, which is not among the payload's regions.",
                       "unknown_region", 422)
        if not isinstance(value, str):
            raise _bad(f"'{name}'[{key!r}] must be a string, got {type(value).__name__}.", "bad_field", 422)
        if len(value) > limit:
            raise _bad(f"'{name}'[{key!r}] has {len(value)} characters, over the limit of {limit}.",
                       "text_too_long", 422)
        out[key] = value
    return out


def _check_key(key, spec: InputSpec) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise _bad(f"region key {str(key)[:80]!r} is not a valid key (1-64 letters, digits, spaces, '_', '.', '-').",
                   "bad_region_key", 422)
    if spec.region_keys and key not in spec.region_keys:
        raise _bad(f"region key {key!r} is not in the server's schema {spec.schema!r} (keys: "
                   f"{', '.join(spec.region_keys)}); build the regions with that schema.", "unknown_region", 422)
    return key


def _decode_array(name: str, info, buffers: memoryview, expected: tuple[int, ...],
                  materialize: bool = True) -> np.ndarray | None:
    if not isinstance(info, dict):
        raise _bad(f"array {name!r} must be described by an object.", "bad_header")
    missing = sorted(ARRAY_FIELDS - set(info))
    extra = sorted(set(info) - ARRAY_FIELDS)
    if missing or extra:
        raise _bad(f"array {name!r} description has missing fields {missing} / unknown fields {extra}; expected "
                   f"{sorted(ARRAY_FIELDS)}.", "missing_field" if missing else "unknown_field", 422)
    shape = info["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise _bad(f"array {name!r} shape must be a list of integers.", "bad_header")
    if tuple(shape) != expected:
        raise _bad(f"array {name!r} has shape {tuple(shape)}, but this model takes {expected}; prepare the case "
                   "with the server's preprocessing (GET /v1/model).", "wrong_shape", 422)
    encoding, compression = info["encoding"], info["compression"]
    if encoding not in ALLOWED_ENCODINGS.get(name, ()):
        raise _bad(f"array {name!r} has encoding {str(encoding)[:40]!r}; allowed: {ALLOWED_ENCODINGS[name]}.",
                   "wrong_dtype", 422)
    if compression not in COMPRESSIONS:
        raise _bad(f"array {name!r} has compression {str(compression)[:40]!r}; allowed: {COMPRESSIONS}.",
                   "bad_compression", 422)
    offset, nbytes = _int(info["offset"], f"array {name!r} offset"), _int(info["nbytes"], f"array {name!r} nbytes")
    if offset < 0 or nbytes < 0 or offset + nbytes > len(buffers):
        raise _bad(f"array {name!r} claims bytes {offset}..{offset + nbytes} but the payload has {len(buffers)}; it "
                   "was truncated in transit, send it again.", "truncated")
    count = math.prod(expected)
    want = math.ceil(count * ENCODINGS[encoding][1])
    raw = buffers[offset:offset + nbytes]
    if compression != "none":
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(raw, want)
            complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
        except zlib.error:
            raise _bad(f"array {name!r} is not valid zlib data; the payload is corrupt, send it again.",
                       "bad_compression") from None
        if not complete or len(out) != want:
            raise _bad(f"array {name!r} does not inflate to exactly {want} bytes for shape {expected}; the payload is "
                       "corrupt.", "wrong_size")
        if compression == "shuffle-zlib":
            out = _unshuffle(out, int(ENCODINGS[encoding][1]))
    else:
        out = raw
        if len(out) != want:
            raise _bad(f"array {name!r} has {len(out)} bytes, but shape {expected} as {encoding} needs {want}.",
                       "wrong_size")
    if encoding == "bits":
        if not materialize:
            return None
        values = np.unpackbits(np.frombuffer(out, dtype=np.uint8), count=count, bitorder="little")
        return values.astype(np.float32).reshape(expected)
    if encoding == "unorm8":
        if not materialize:
            return None
        return (np.frombuffer(out, dtype=np.uint8).astype(np.float32) / np.float32(255.0)).reshape(expected)
    wire = np.frombuffer(out, dtype=ENCODINGS[encoding][0])
    if not np.isfinite(wire).all():
        raise _bad(f"array {name!r} contains NaN or infinite values.", "bad_values", 422)
    if name in MASK_ARRAYS and (wire.min(initial=0) < 0 or wire.max(initial=0) > 1):
        raise _bad(f"array {name!r} holds mask occupancies, which must lie in [0, 1].", "bad_values", 422)
    return wire.astype(np.float32).reshape(expected) if materialize else None


def decode_case(body: bytes, spec: InputSpec, materialize: bool = True) -> tuple[PreparedCase, dict]:
    """Check ``body`` against ``spec`` and return the prepared case (float32 arrays) and its header.

    ``materialize=False`` checks everything (inflating one array at a time) but keeps no array: the case comes
    back with ``arrays == {}`` (what the server does on submission, to bound its memory). Raises only
    :class:`~MedRegionCTLib.errors.PayloadError`.
    """
    header, buffers = read_header(body, spec.max_body_bytes)
    unknown = sorted(str(k)[:40] for k in set(header) - HEADER_FIELDS)
    if unknown:
        raise _bad(f"the payload header has unknown fields {unknown}; expected {sorted(HEADER_FIELDS)}.",
                   "unknown_field", 422)
    for name in REQUIRED_FIELDS:
        if name not in header:
            raise _bad(f"the payload header lacks the field {name!r}; build the payload with encode_case().",
                       "missing_field", 422)
    if header["format"] != FORMAT:
        raise _bad(f"the payload format is {str(header['format'])[:40]!r}, not {FORMAT!r}.", "bad_format")
    version = header["format_version"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise _bad(f"payload format version {str(version)[:20]} is not supported (this server reads version "
                   f"{FORMAT_VERSION}); use a client of the same MedRegionCT version.", "unsupported_format_version")
    if header["schema"] != spec.schema:
        raise _bad(f"the payload's regions follow schema {str(header['schema'])[:60]!r}, but this server's model "
                   f"uses {spec.schema!r}; build the regions with that schema.", "schema_mismatch", 422)
    keys = header["keys"]
    if not isinstance(keys, list) or not keys:
        raise _bad("'keys' must be a non-empty list of region keys.", "bad_field", 422)
    if len(keys) > spec.max_regions:
        raise _bad(f"the payload has {len(keys)} regions, over this server's limit of {spec.max_regions}.",
                   "too_many_regions", 422)
    keys = [_check_key(k, spec) for k in keys]
    empty = header.get("empty", [])
    if not isinstance(empty, list) or len(empty) > spec.max_regions:
        raise _bad("'empty' must be a list of region keys.", "bad_field", 422)
    empty = [_check_key(k, spec) for k in empty]
    if len(set(keys) | set(empty)) != len(keys) + len(empty):
        raise _bad("a region key appears twice in 'keys' and 'empty'; each region is sent once.", "duplicate_region",
                   422)
    names = _text_table(header, "names", set(keys) | set(empty), spec.max_name_chars)
    attributes = _text_table(header, "attributes", set(keys), spec.max_attribute_chars)
    table = header["arrays"]
    if not isinstance(table, dict):
        raise _bad("'arrays' must be an object {array name: description}.", "bad_field", 422)
    extra = sorted(str(k)[:40] for k in set(table) - set(spec.arrays))
    if extra:
        raise _bad(f"the payload has arrays {extra} that this model does not take (it takes {sorted(spec.arrays)}).",
                   "unexpected_array", 422)
    missing = sorted(set(spec.arrays) - set(table))
    if missing:
        raise _bad(f"the payload lacks arrays {missing} that this model needs; prepare the case with the server's "
                   "preprocessing (GET /v1/model).", "missing_array", 422)
    arrays = {}
    for name in spec.arrays:
        array = _decode_array(name, table[name], buffers, spec.shape_for(name, len(keys)), materialize)
        if materialize:
            arrays[name] = array
    return PreparedCase(keys=keys, arrays=arrays, names=names, attributes=attributes, empty=empty), header
