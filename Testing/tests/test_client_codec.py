"""The binary case encoding: lossless where it should be, small, strict, and fuzz-proof (only PayloadError)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MedRegionCTLib.client.codec import (
    FORMAT_VERSION,
    MAGIC,
    InputSpec,
    decode_case,
    encode_case,
    read_header,
)
from MedRegionCTLib.errors import PayloadError
from MedRegionCTLib.model.config import PreprocessConfig
from MedRegionCTLib.model.preprocess import ARRAY_NAMES, prepare_case
from MedRegionCTLib.model.tiny import synthetic_case

KEYS = ("heart", "lung", "trachea and bronchie", "breast")
PRE = PreprocessConfig(grid=(16, 16, 8), num_slices=8, slice_size=32, body_margin_mm=2.0)
SPEC = InputSpec.from_preprocess(PRE, ARRAY_NAMES, "radgenome10", KEYS, max_regions=4, max_body_bytes=1 << 20)


def _case(seed=3):
    case = synthetic_case(seed)
    regions = case["regions"]
    case["regions"] = {"lung": regions["lung"], "heart": regions["heart"], "trachea and bronchie": regions["trachea"],
                       "breast": np.zeros_like(regions["lung"])}
    case["names"] = {"lung": "Lung", "heart": "Heart", "trachea and bronchie": "Trachea and bronchi"}
    case["attributes"] = {"lung": "A nodule with a diameter of 6.0 mm is identified in the left lung."}
    return prepare_case(case, PRE, ARRAY_NAMES)


PREPARED = _case()
BODY = encode_case(PREPARED, "radgenome10")


def _split(body: bytes) -> tuple[dict, bytes]:
    header, buffers = read_header(body)
    return header, bytes(buffers)


def _join(header: dict, buffers: bytes) -> bytes:
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + buffers


def test_round_trip_keeps_text_and_arrays_within_the_encoding_precision():
    case, header = decode_case(BODY, SPEC)
    assert case.keys == PREPARED.keys and case.empty == ["breast"]
    assert case.names == PREPARED.names and case.attributes == PREPARED.attributes
    assert case.paragraphs == {}  # training targets never travel
    for name, array in PREPARED.arrays.items():
        got = case.arrays[name]
        assert got.dtype == np.float32 and got.shape == array.shape
        tol = 1 / 510 + 1e-6 if name in ("masks", "slice_masks") else 2e-3 * max(1.0, float(np.abs(array).max()))
        assert np.abs(got - array).max() <= tol, name
    assert header["format_version"] == FORMAT_VERSION
    exact, _ = decode_case(encode_case(PREPARED, "radgenome10", exact=True), SPEC)
    for name, array in PREPARED.arrays.items():
        assert np.array_equal(exact.arrays[name], array), name


def test_binary_masks_are_bit_packed_and_the_payload_is_small():
    prepared = _case()
    prepared.arrays["masks"] = (prepared.arrays["masks"] > 0.5).astype(np.float32)
    body = encode_case(prepared, "radgenome10", compression="none")
    header, _ = _split(body)
    assert header["arrays"]["masks"]["encoding"] == "bits"
    assert header["arrays"]["masks"]["nbytes"] == prepared.arrays["masks"].size // 8
    case, _ = decode_case(body, SPEC)
    assert np.array_equal(case.arrays["masks"], prepared.arrays["masks"])
    float32_bytes = sum(a.size * 4 for a in PREPARED.arrays.values())
    assert len(BODY) < float32_bytes / 4  # float16 + unorm8 + zlib


@pytest.mark.parametrize("compression", ["none", "zlib", "shuffle-zlib"])
def test_every_compression_round_trips(compression):
    case, _ = decode_case(encode_case(PREPARED, "radgenome10", compression=compression, exact=True), SPEC)
    for name, array in PREPARED.arrays.items():
        assert np.array_equal(case.arrays[name], array), (compression, name)


def test_spec_round_trips_through_json():
    assert InputSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC


def _mutated(change) -> bytes:
    header, buffers = _split(BODY)
    out = change(header, buffers)
    return out if isinstance(out, bytes) else _join(header, buffers)


@pytest.mark.parametrize("change, status, code", [
    (lambda h, b: h["arrays"]["image"].update(shape=[16, 16, 9]), 422, "wrong_shape"),
    (lambda h, b: h["arrays"]["image"].update(encoding="int64"), 422, "wrong_dtype"),
    (lambda h, b: h["arrays"]["image"].update(encoding="bits"), 422, "wrong_dtype"),
    (lambda h, b: h.update(format_version=FORMAT_VERSION + 1), 400, "unsupported_format_version"),
    (lambda h, b: h.update(schema="medregion6"), 422, "schema_mismatch"),
    (lambda h, b: h.pop("keys"), 422, "missing_field"),
    (lambda h, b: h["arrays"].pop("crops"), 422, "missing_array"),
    (lambda h, b: h["keys"].__setitem__(0, "spleen"), 422, "unknown_region"),
    (lambda h, b: h["attributes"].update(liver="x"), 422, "unknown_region"),
    (lambda h, b: h.update(patient_name="X"), 422, "unknown_field"),
    (lambda h, b: h.update(keys=h["keys"] + ["lung"]), 422, "duplicate_region"),
    (lambda h, b: h["arrays"]["image"].update(nbytes=h["arrays"]["image"]["nbytes"] + 10 ** 9), 400, "truncated"),
    (lambda h, b: _join(h, b)[:-100], 400, "truncated"),
    (lambda h, b: _join(h, b)[:20], 400, "truncated"),
    (lambda h, b: b"NOTACASE" + _join(h, b)[8:], 400, "bad_magic"),
    (lambda h, b: _join(h, b) + b"\0" * (1 << 20), 413, "too_large"),
])
def test_bad_payloads_get_the_right_status(change, status, code):
    with pytest.raises(PayloadError) as info:
        decode_case(_mutated(change), SPEC)
    assert (info.value.status, info.value.code) == (status, code), str(info.value)


def test_checking_without_keeping_the_arrays():
    case, _ = decode_case(BODY, SPEC, materialize=False)
    assert case.arrays == {} and case.keys == PREPARED.keys


def test_nan_and_out_of_range_values_are_refused():
    prepared = _case()
    prepared.arrays["image"][0, 0, 0] = np.nan
    for materialize in (True, False):
        with pytest.raises(PayloadError, match="NaN"):
            decode_case(encode_case(prepared, "radgenome10"), SPEC, materialize=materialize)
    prepared = _case()
    prepared.arrays["masks"][0, 0, 0, 0] = 2.0
    with pytest.raises(PayloadError, match=r"\[0, 1\]"):
        decode_case(encode_case(prepared, "radgenome10", encodings={"masks": "float16"}), SPEC)


def test_a_zlib_bomb_is_refused_without_inflating_it():
    header, buffers = _split(BODY)
    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in ~64 KiB
    info = header["arrays"]["image"]
    info.update(offset=len(buffers), nbytes=len(bomb))
    with pytest.raises(PayloadError) as err:
        decode_case(_join(header, buffers + bomb), SPEC)
    assert err.value.code == "wrong_size"


# --- property-based fuzzing: the decoder raises nothing but PayloadError --------------------------------------
def _decode_or_payload_error(body: bytes) -> None:
    for materialize in (True, False):
        try:
            decode_case(body, SPEC, materialize=materialize)
        except PayloadError as exc:
            assert 400 <= exc.status < 500
            assert str(exc)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(body):
    _decode_or_payload_error(body)
    _decode_or_payload_error(MAGIC + body)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BODY) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(BODY)))
def test_fuzz_corrupted_and_truncated_payloads(flips, cut):
    body = bytearray(BODY)
    for position, value in flips:
        body[position] = value
    _decode_or_payload_error(bytes(body[:cut]))
    _decode_or_payload_error(bytes(body))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=12)
FIELDS = ["format", "format_version", "schema", "keys", "names", "attributes", "empty", "arrays"]
ARRAY_FIELDS = ["shape", "encoding", "compression", "offset", "nbytes"]


@FUZZ
@given(st.sampled_from(FIELDS), JSON, st.sampled_from(["image", "masks", "slices"]), st.sampled_from(ARRAY_FIELDS),
       JSON)
def test_fuzz_header_values(field, value, array, array_field, array_value):
    header, buffers = _split(BODY)
    header[field] = value
    _decode_or_payload_error(_join(header, buffers))
    header, buffers = _split(BODY)
    header["arrays"][array][array_field] = array_value
    _decode_or_payload_error(_join(header, buffers))


def test_deeply_nested_header_is_a_payload_error():
    head = b"[" * 100000 + b"]" * 100000
    _decode_or_payload_error(MAGIC + struct.pack("<I", len(head)) + head)


def test_client_layer_imports_no_torch():
    code = ("import sys; import MedRegionCTLib.client, MedRegionCTLib.client.codec; "
            "bad = [m for m in ('torch', 'transformers', 'fastapi') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
