"""NTU names, benchmark splits, the missing-skeleton list and the .skeleton parser."""
import numpy as np
import pytest

from mksgn.data import ntu, ucla
from mksgn.data.errors import SkeletonFileError


def _joint_line(j, dx=0.0):
    return f"{0.1 * j + dx:.7f} {0.2 * j:.7f} {3.0 + 0.01 * j:.7f} 250.1 200.2 900.3 500.4 0.5 0.1 0.2 0.3 2"


def _body(bid="72057594037931101", dx=0.0, joints=25, fields=None):
    lines = [f"{bid} 0 1 1 1 1 0 0.0276471 0.0574508 2", str(joints)]
    lines += [_joint_line(j, dx) for j in range(joints)]
    if fields is not None:
        lines[2] = fields
    return lines


def _file(frames):
    """frames: list of lists of body line-lists."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for b in bodies:
            out += b
    return "\r\n".join(out) + "\r\n"


def test_parse_name_and_label():
    n = ntu.parse_name("S001C002P003R002A013")
    assert (n.setup, n.camera, n.subject, n.replication, n.action, n.label) == (1, 2, 3, 2, 13, 12)
    assert str(n) == "S001C002P003R002A013"
    for bad in ("S001C002P003R002A13", "s001C002P003R002A013", "S001C004P003R002A013",
                "S001C002P003R003A013", "S000C002P003R002A013", "S001C002P003R002A013x"):
        assert ntu.parse_name(bad) is None


def test_xsub_lists_match_papers():
    assert len(ntu.NTU60_XSUB_TRAIN) == 20 and len(ntu.NTU120_XSUB_TRAIN) == 53
    assert ntu.NTU60_XSUB_TRAIN < ntu.NTU120_XSUB_TRAIN
    assert sorted(ntu.NTU60_XSUB_TRAIN)[:6] == [1, 2, 4, 5, 8, 9]
    assert max(ntu.NTU120_XSUB_TRAIN) == 103


def test_split_membership():
    s = ntu.parse_name
    assert ntu.split_of(s("S001C001P001R001A001"), "ntu60", "xsub") == "train"
    assert ntu.split_of(s("S001C001P003R001A001"), "ntu60", "xsub") == "test"
    assert ntu.split_of(s("S001C001P045R001A001"), "ntu120", "xsub") == "train"
    assert ntu.split_of(s("S001C001P044R001A001"), "ntu120", "xsub") == "test"
    for cam, want in ((1, "test"), (2, "train"), (3, "train")):
        assert ntu.split_of(s(f"S005C00{cam}P003R001A001"), "ntu60", "xview") == want
    assert ntu.split_of(s("S018C001P003R001A001"), "ntu120", "xset") == "train"
    assert ntu.split_of(s("S019C001P003R001A001"), "ntu120", "xset") == "test"
    with pytest.raises(ValueError, match="^unknown benchmark 'xset' for ntu60$"):
        ntu.split_of(s("S001C001P001R001A001"), "ntu60", "xset")
    assert ntu.in_dataset(s("S017C001P001R001A060"), "ntu60")
    assert not ntu.in_dataset(s("S018C001P001R001A001"), "ntu60")
    assert not ntu.in_dataset(s("S001C001P001R001A061"), "ntu60")
    assert ucla.split_of(ucla.parse_name("a01_s01_e00_v03")) == "test"
    assert ucla.split_of(ucla.parse_name("a12_s10_e04_v02")) == "train"
    assert ucla.parse_name("a07_s01_e00_v01") is None  # action 7 is not in NW-UCLA
    assert ucla.parse_name("a12_s01_e00_v01").label == 9


def test_missing_skeleton_lists():
    m60, m120 = ntu.missing_skeleton_names("ntu60"), ntu.missing_skeleton_names("ntu120")
    assert len(m60) == 302 and len(m120) == 535 and m60 < m120
    assert "S001C002P005R002A008" in m60 and "S017C003P020R001A059" in m60
    assert "S032C003P067R002A077" in m120 and "S032C003P067R002A077" not in m60


def test_parse_valid_file_exact_values():
    text = _file([[_body()], [], [_body(dx=0.5), _body("72057594037931102", dx=1.0)]])
    seq = ntu.parse_skeleton(text, "S001C001P001R001A001.skeleton")
    assert seq.name == "S001C001P001R001A001" and seq.num_frames == 2 and seq.dropped_frames == [1]
    a, b = seq.bodies["72057594037931101"], seq.bodies["72057594037931102"]
    assert a.frames == [0, 1] and b.frames == [1]
    assert a.joints.shape == (2, 25, 3) and b.joints.shape == (1, 25, 3)
    assert a.joints[1, 7, 0] == float("%.7f" % (0.7 + 0.5))
    assert a.joints[0, 24, 2] == float("%.7f" % 3.24)
    assert b.joints[0, 3, 0] == float("%.7f" % 1.3)


BAD_CASES = [
    # (description, text builder, expected line, reason fragment)
    ("zero frames", lambda: "0\r\n", 1, "zero frames"),
    ("empty", lambda: "", 1, "empty"),
    ("non-numeric frame count", lambda: "abc\n", 1, "frame count"),
    ("truncated in joints", lambda: _file([[_body()]])[: -200], None, "truncated"),
    ("truncated frames", lambda: "3\n" + _file([[_body()]]).split("\n", 1)[1], 30, "truncated"),
    ("wrong joint count", lambda: _file([[_body(joints=20)]]), 4, "joint count 20"),
    ("non-numeric field", lambda: _file([[_body(fields="0.1 0.2 abc 1 1 1 1 1 1 1 1 2")]]), 5, "non-numeric"),
    ("short joint line", lambda: _file([[_body(fields="0.1 0.2 0.3")]]), 5, "3 fields"),
    ("nan coordinate", lambda: _file([[_body(fields="nan 0.2 0.3 1 1 1 1 1 1 1 1 2")]]), 5, "NaN"),
    ("inf coordinate", lambda: _file([[_body(fields="0.1 -inf 0.3 1 1 1 1 1 1 1 1 2")]]), 5, "infinite"),
    ("no bodies at all", lambda: "2\n0\n0\n", 1, "no skeleton"),
    ("trailing text", lambda: _file([[_body()]]) + "1\n", 30, "after the last"),
    ("body line fields", lambda: _file([[["1 2 3"] + _body()[1:]]]), 3, "body line"),
    ("binary", lambda: b"\xff\xfe\x00", 1, "ASCII"),
]


@pytest.mark.parametrize("desc,build,line,frag", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_files_give_path_line_reason(desc, build, line, frag):
    with pytest.raises(SkeletonFileError) as ei:
        ntu.parse_skeleton(build(), "some/dir/S001C001P001R001A001.skeleton")
    e = ei.value
    assert e.path == "some/dir/S001C001P001R001A001.skeleton"
    assert frag in e.reason
    if line is not None:
        assert e.line == line
    assert str(e).startswith("some/dir/S001C001P001R001A001.skeleton:")


def test_read_file_missing(tmp_path):
    with pytest.raises(SkeletonFileError, match="cannot read"):
        ntu.read_skeleton_file(tmp_path / "S001C001P001R001A001.skeleton")


def test_ucla_parser(tmp_path):
    name = ucla.parse_name("a02_s03_e01_v02")
    joints = np.arange(2 * 20 * 3, dtype=float).reshape(2, 20, 3) / 7.0
    text = ucla.format_ucla(name, joints)
    got = ucla.parse_ucla(text)
    np.testing.assert_array_equal(got, ucla.roundtrip(joints))
    for bad, frag in (('{"skeletons": []}', "zero frames"), ("{", "invalid json"),
                      ('{"skeletons": [[[1,2,3]]]}', "1 joints"),
                      ('{"skeletons": [[' + ",".join(["[1,2,NaN]"] * 20) + ']]}', "NaN"),
                      ('{"skeletons": [[' + ",".join(['[1,2,"x"]'] * 20) + ']]}', "not 3 numbers"),
                      ('[1]', "no \"skeletons\"")):
        with pytest.raises(SkeletonFileError, match=frag):
            ucla.parse_ucla(bad, "x.json")
