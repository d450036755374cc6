"""Parameter and MAC counting."""
from __future__ import annotations

import torch
from torch import nn

from mksgn.data.layouts import get_layout
from mksgn.train.summary import count_macs, count_params, summarize
from mksgn.train.teacher import TeacherConfig, build_teacher


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, (3, 1), padding=(1, 0))
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = self.conv(x)                                        # (1, 4, 6, 2)
        a = torch.einsum("nctv,nctu->nvu", h, h)               # 4*6*2*2 = 96 MACs
        return self.fc(h.mean((2, 3))) + a.sum()


def test_macs_count_conv_linear_einsum():
    x = torch.randn(1, 3, 6, 2)
    conv = 4 * 6 * 2 * 3 * 3          # output elements x (C_in x kernel)
    assert count_macs(_Toy(), x) == conv + 96 + 4 * 5
    assert count_params(_Toy()) == 4 * 3 * 3 + 4 + 4 * 5 + 5


def test_teacher_macs_scale_with_streams_and_frames():
    layout = get_layout("ucla20")
    one = build_teacher(TeacherConfig(base_channels=4, modalities=("joint",)), 3, layout)
    two = build_teacher(TeacherConfig(base_channels=4, modalities=("joint", "bone")), 3, layout)
    s1 = summarize(one, "teacher", (1, 1, 3, 8, 20, 2))
    s2 = summarize(two, "teacher", (1, 2, 3, 8, 20, 2))
    assert s2.macs == 2 * s1.macs and s2.params == 2 * s1.params and s2.streams == 2
    s3 = summarize(one, "teacher", (1, 1, 3, 16, 20, 2))
    # convs/einsums over frames double with T; the refined (V, V) topologies (conv4) do not
    assert 1.5 * s1.macs < s3.macs < 2 * s1.macs
