"""Writing netx ``/layer`` sections directly, for the netx-coverage tests (no slayer needed).

Arrays are given in the file's own layout (what slayer's ``export_hdf5`` writes): shapes
(C, H, W), conv weights (out, in/groups, kH, kW), biases per channel or (x, y, z).
"""
from __future__ import annotations

import h5py
import numpy as np


def _type(h, name):
    h.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def neuron(h, kind="CUBA", **p):
    h.create_dataset("neuron/type", data=kind)
    for k, v in p.items():
        h.create_dataset(f"neuron/{k}", data=v)


def cuba(rng, vth=None):
    return dict(kind="CUBA", iDecay=int(rng.choice([0, 1, rng.integers(0, 4097), 4096])),
                vDecay=int(rng.choice([0, rng.integers(0, 4097), 4096])),
                vThMant=int(vth if vth is not None else rng.integers(1, 60)), refDelay=1,
                gradedSpike=False)


def sdnn(rng, vth=None, sigma_output=False):
    d = dict(kind="SDNN", activation="relu",
             vThMant=int(vth if vth is not None else rng.integers(1, 40)))
    if sigma_output:
        d["sigma_output"] = True
    return d


class Writer:
    """``with Writer(path) as w: w.input(...); w.conv(...)`` appends layers 0, 1, ..."""

    def __init__(self, path):
        self.h5 = h5py.File(path, "w")
        self.root = self.h5.create_group("layer")
        self.i = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.h5.close()

    def layer(self, kind, shape=None, neuron_p=None, **data):
        h = self.root.create_group(str(self.i))
        self.i += 1
        _type(h, kind)
        if shape is not None:
            h.create_dataset("shape", data=np.asarray(shape))
        for k, v in data.items():
            if v is not None:
                h.create_dataset(k.replace("__", "/"), data=np.asarray(v))
        if neuron_p is not None:
            neuron(h, **neuron_p)
        return h

    def input(self, shape, neuron_p=None):
        return self.layer("input", shape, neuron_p)

    def flatten(self, shape):
        return self.layer("flatten", shape)

    def dense(self, n_out, weight, neuron_p=None, bias=None, delay=None, kind="dense", **kw):
        return self.layer(kind, (n_out,), neuron_p, weight=np.asarray(weight, np.float32),
                          bias=bias, delay=delay, **kw)

    def conv(self, shape, weight, neuron_p, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
             groups=1, bias=None):
        w = np.asarray(weight, np.float32)
        return self.layer("conv", shape, neuron_p, weight=w, stride=stride, padding=padding,
                          dilation=dilation, groups=groups, kernelSize=w.shape[2:],
                          inChannels=w.shape[1] * groups, outChannels=w.shape[0], bias=bias)


def weights(rng, shape, lo=-256, hi=255):
    w = rng.integers(lo, hi, shape)
    if not w.any():
        w.flat[0] = 7
    return w
