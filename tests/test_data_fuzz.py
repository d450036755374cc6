"""Property test: thousands of corrupted files give either a valid parse or a clean SkeletonFileError."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mksgn.data import ntu, synth, ucla
from mksgn.data.errors import SkeletonFileError

_CFG = synth.SynthConfig("ntu60", seed=0, classes=1, subjects=1, samples_per_class=1, frames=16,
                         second_actor_prob=1.0, dropped_frame_prob=1.0)
_SAMPLE = synth.make_sample(_CFG, synth.sample_specs(_CFG)[0])
# keep the seed file short: 3 frames of the generated sample (+ its second body where present)
_SAMPLE.num_file_frames, _SAMPLE.dropped_frames = 4, [2]
_BID, _, _J = _SAMPLE.bodies[0]
_SAMPLE.bodies = [(_BID, np.arange(3), _J[:3]), ("72057594037999999", np.arange(1, 3), _J[1:3] + 1.0)]
VALID = synth.sample_text(_CFG, _SAMPLE)
VALID_UCLA = ucla.format_ucla(ucla.parse_name("a01_s01_e00_v01"), np.random.default_rng(0).normal(size=(2, 20, 3)))

TOKENS = st.sampled_from(["", "0", "1", "25", "24", "26", "-1", "7", "nan", "NaN", "inf", "-inf", "1e999",
                          "1_0", "0x1f", "abc", "1.2.3", "+", "٣", "\t", "   ", "99999999999999999999",
                          "72057594037931101", "0.5 0.5", "\x00", "]", "[", "{", "\"x\"", "null", "true"])


@st.composite
def corrupted(draw, base: str):
    text = base
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "del_line", "dup_line", "token", "insert", "bytes"]))
        lines = text.split("\n")
        if kind == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif kind == "del_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join(lines[:i] + lines[i + 1:])
        elif kind == "dup_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join(lines[: i + 1] + lines[i:])
        elif kind == "token":
            toks = text.split(" ")
            i = draw(st.integers(0, len(toks) - 1))
            toks[i] = draw(TOKENS)
            text = " ".join(toks)
        elif kind == "insert":
            i = draw(st.integers(0, len(lines)))
            text = "\n".join(lines[:i] + [draw(st.text(max_size=30))] + lines[i:])
        else:
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(st.binary(max_size=8)).decode("latin-1") + text[pos:]
    return text.encode("utf-8", errors="surrogatepass") if draw(st.booleans()) else text


def _check_ntu(data):
    try:
        seq = ntu.parse_skeleton(data, "fuzz/S001C001P001R001A001.skeleton")
    except SkeletonFileError as e:
        assert e.path == "fuzz/S001C001P001R001A001.skeleton" and e.reason
        assert e.line is None or e.line >= 1
        assert str(e).startswith(f"{e.path}:") and "\n" not in str(e)
        return "error"
    assert seq.num_frames >= 1 and seq.bodies
    for b in seq.bodies.values():
        assert b.joints.shape == (len(b.frames), 25, 3) and np.isfinite(b.joints).all()
        assert all(0 <= f < seq.num_frames for f in b.frames)
    return "ok"


def test_seed_file_is_valid():
    seq = ntu.parse_skeleton(VALID)
    assert seq.num_frames == 3 and seq.dropped_frames == [2] and len(seq.bodies) == 2
    assert ucla.parse_ucla(VALID_UCLA).shape == (2, 20, 3)


@pytest.mark.slow
@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(corrupted(VALID))
def test_corrupted_skeleton_files_fail_cleanly(data):
    _check_ntu(data)


# every reason parse_ucla gives, as a pattern (the frame / joint numbers vary)
UCLA_REASONS = re.compile(r"not UTF-8 text|invalid json: .+|json has no \"skeletons\" list"
                          r"|zero frames|frame \d+: \w+ joints, expected 20"
                          r"|frame \d+ joint \d+: (not 3 numbers|NaN or infinite coordinate)")


def _check_ucla(data, path="fuzz/a01_s01_e00_v01.json"):
    """A (T, 20, 3) array of finite numbers, or a SkeletonFileError naming the file and one of
    parse_ucla's reasons on one line."""
    try:
        x = ucla.parse_ucla(data, path)
    except SkeletonFileError as e:
        assert e.path == path and UCLA_REASONS.fullmatch(e.reason), e.reason
        assert e.line is None or e.line >= 1
        assert str(e).startswith(f"{path}:") and "\n" not in str(e)
        return "error"
    assert x.ndim == 3 and x.shape[1:] == (20, 3) and len(x) >= 1 and np.isfinite(x).all()
    return "ok"


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.binary(max_size=200))
def test_random_bytes_fail_cleanly(data):
    _check_ntu(data)
    _check_ucla(data, "fuzz.json")


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(corrupted(VALID_UCLA))
def test_corrupted_ucla_files_fail_cleanly(data):
    _check_ucla(data)


def test_deeply_nested_json_is_clean():
    """json's decoder gives up with a RecursionError; it surfaces as a SkeletonFileError."""
    with pytest.raises(SkeletonFileError) as e:
        ucla.parse_ucla("[" * 100000 + "]" * 100000, "deep.json")
    assert (e.value.path, e.value.line, e.value.reason) == \
        ("deep.json", None, "invalid json: nested too deeply")
    assert str(e.value) == "deep.json: invalid json: nested too deeply"
