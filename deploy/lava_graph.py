"""Lava process graphs: a converted ``Network``, or a stock netx file, run bit-accurately.

Both run under ``Loihi2SimCfg(select_tag="fixed_pt")`` (lava-nc's bit-accurate CPU models).

``LavaNetwork(net)`` builds one Lava process per part of a ``netgraph.Network``:
- every neuron group is a ``lava.proc.lif.LIF`` (``LIFReset`` with periodic reset), in netx's
  (x, y, z) = (V, T, C) order so Lava's ``Conv`` can read it; ``du = i_decay - 1`` because the
  bit-accurate LIF adds 1 back (as netx does); a readout group gets a threshold above the 24-bit
  voltage range so it never spikes;
- ``dense`` synapses are ``Dense`` (``Sparse`` when large); ``conv`` synapses with no exponent
  and no delay are Lava's ``Conv`` (``loihi.lava_conv``; weights flipped and transposed as netx
  does); other conv and all ``graph`` synapses are unrolled (``unroll``) into a ``Sparse``
  matrix over the row-major (C, T, V) index; any synapse with a delay is a ``DelaySparse``.
  Weights are passed with sign mode MIXED and 9 weight bits so that Lava's clip/truncate leave
  every 8-bit mantissa unchanged;
- residual sums are fan-in: every synapse process connects to the same LIF ``a_in`` (Lava adds
  the inputs of one port);
- ``JointAttention``, which the chip has no block for, is ``JointAttentionProcess`` with its own
  ``fixed_pt`` ProcessModel (``loihi.joint_attention`` on numpy integers, one step of synaptic
  delay plus ``delay``);
- an ``Encoder`` is host-side: its integer bias (``engine.encode``) is written into the LIF's
  ``bias_mant`` before each sample; ``source`` groups and external currents come from
  ``lava.proc.io.source.RingBuffer`` processes.

``run_netx(path, ...)`` loads a stock netx file with ``lava.lib.dl.netx.hdf5.Network``.

Runs end cleanly: the runtime is always stopped in a ``finally``; if stopping hangs (a process
died) the Lava worker processes this run started are terminated by pid. ``timeout`` bounds the
wall-clock time of a run (``LavaTimeout``).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from mksgn import loihi
from mksgn.netgraph import Network, NeuronGroup, Synapse

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

NEVER_SPIKE_VTH = loihi.NEVER_SPIKE_VTH_MANT   # (2**17) << 6 = 2**23 > the largest voltage


class LavaError(RuntimeError):
    """A Lava run failed (a process died, or the network could not be built)."""


class LavaTimeout(LavaError):
    """A Lava run took longer than its timeout."""


class _WorkerDied(Exception):
    """Raised in the main thread by the session watchdog (SIGUSR1) when a worker died."""


# ---------------------------------------------------------------------------------------------
# JointAttention as a Lava process with a fixed_pt model

class JointAttentionProcess(AbstractProcess):
    """Spiking joint attention: ``a[d,t,v] = (sum_c q[c,t,v] sum_u k[c,t,u] x[d,t,u]) >> shift``.

    Ports are in Lava's (V, T, C) order: q, k (V, T, Cq); x and a_out (V, T, Cx). Delivers at step
    t what it computed from the spikes of step ``t - 1 - delay``.
    """

    def __init__(self, *, qk_shape: tuple, x_shape: tuple, shift: int, delay: int = 0,
                 name: str | None = None):
        super().__init__(qk_shape=qk_shape, x_shape=x_shape, shift=shift, delay=delay, name=name)
        self.q = InPort(shape=qk_shape)
        self.k = InPort(shape=qk_shape)
        self.x = InPort(shape=x_shape)
        self.a_out = OutPort(shape=x_shape)
        self.a_buf = Var(shape=(delay + 1, *x_shape), init=0)
        self.shift = Var(shape=(1,), init=shift)


@implements(proc=JointAttentionProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyJointAttentionModelFixed(PyLoihiProcessModel):
    q: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    k: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    x: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    shift: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf[0])
        # (V, T, C) port order -> one sample in mksgn's (1, C, T, V)
        q, k, x = (from_lava(p.recv().astype(np.int64))[None] for p in (self.q, self.k, self.x))
        a = loihi.shift(loihi.joint_attention(q, k, x), -int(self.shift[0]))
        self.a_buf[:-1] = self.a_buf[1:]
        self.a_buf[-1] = to_lava(a[0]).astype(np.int32)


# ---------------------------------------------------------------------------------------------
@dataclass
class LavaResult:
    """One sample's run. spikes: group -> bool (steps, *shape); u, v: int64 (steps, *shape), in
    mksgn's (C, T, V) order; counts: int32 (*shape)."""
    num_steps: int
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    u: dict[str, np.ndarray] = field(default_factory=dict)
    v: dict[str, np.ndarray] = field(default_factory=dict)
    scores: np.ndarray | None = None
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # name -> group ->


def to_lava(x: np.ndarray) -> np.ndarray:
    """(C, T, V[, t]) -> Lava's (V, T, C[, t]); 1-D (and (n, t)) arrays unchanged."""
    return np.swapaxes(x, 0, 2) if x.ndim >= 3 else x


def from_lava(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, 0, 2) if x.ndim >= 3 else x


def _lava_shape(shape: tuple) -> tuple:
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def unroll(syn: Synapse, src: NeuronGroup, dst: NeuronGroup):
    """The (N_dst, N_src) integer matrix of a synapse over row-major (C, T, V), as scipy CSR.

    Built by index arithmetic (never a dense N x N array), so graph and conv synapses of real size
    stay in memory: nnz = |w != 0| * T for graph, |w| * output positions for conv.
    """
    from scipy.sparse import coo_matrix, csr_matrix

    w = np.asarray(syn.weight).astype(np.int64)
    if syn.kind == "convT":   # the adjoint of the conv with the same weights and geometry
        fwd = Synapse(syn.name, syn.dst, syn.src, "conv", w, stride=syn.stride,
                      padding=syn.padding, dilation=syn.dilation, groups=syn.groups)
        return unroll(fwd, dst, src).T.tocsr()
    if syn.kind == "dense":
        m = csr_matrix(w.reshape(dst.size, src.size))
        m.eliminate_zeros()
        return m
    rows, cols, vals = [], [], []
    if syn.kind == "graph":
        _, tt, vv = src.shape
        o, i, v, u = np.nonzero(w)
        t = np.arange(tt)[:, None]
        rows.append((o * tt * vv + t * vv + v).reshape(-1))
        cols.append((i * tt * vv + t * vv + u).reshape(-1))
        vals.append(np.broadcast_to(w[o, i, v, u], (tt, len(o))).reshape(-1))
    else:
        n_out, cg, kh_n, kw_n = w.shape
        c, h, wd = src.shape
        _, ho, wo = dst.shape
        og = n_out // syn.groups
        o = np.arange(n_out)
        for kh in range(kh_n):
            ti = np.arange(ho) * syn.stride[0] - syn.padding[0] + kh * syn.dilation[0]
            okt = (ti >= 0) & (ti < h)
            for kw in range(kw_n):
                vi = np.arange(wo) * syn.stride[1] - syn.padding[1] + kw * syn.dilation[1]
                okv = (vi >= 0) & (vi < wd)
                to, tin = np.arange(ho)[okt], ti[okt]
                vo, vin = np.arange(wo)[okv], vi[okv]
                for ic in range(cg):
                    cin = (o // og) * cg + ic
                    r = o[:, None, None] * ho * wo + to[None, :, None] * wo + vo[None, None, :]
                    cc = cin[:, None, None] * h * wd + tin[None, :, None] * wd + vin[None, None, :]
                    rows.append(r.reshape(-1))
                    cols.append(cc.reshape(-1))
                    vals.append(np.broadcast_to(w[:, ic, kh, kw][:, None, None], r.shape)
                                .reshape(-1))
    m = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(dst.size, src.size)).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


@contextlib.contextmanager
def _deadline(timeout: float | None):
    """Raise LavaTimeout in the main thread after ``timeout`` seconds (SIGALRM)."""
    if not timeout or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise LavaTimeout(f"Lava run exceeded its timeout of {timeout:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _actors(proc: AbstractProcess) -> list:
    """The OS processes (lava SystemProcess) of ``proc``'s runtime, [] before it compiled."""
    rt = getattr(proc, "runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None) if rt is not None else None
    return list(getattr(mi, "actors", []) or [])


def _kill(proc: AbstractProcess) -> None:
    """Terminate the worker processes of ``proc``'s runtime (ours, by pid) and free its shared
    memory. Used when a graceful stop is impossible: after a failure, a timeout or Ctrl-C."""
    actors = _actors(proc)
    for a in actors:
        if a.is_alive():
            a.terminate()
    for a in actors:
        multiprocessing.Process.join(a, 2)    # SystemProcess.join() takes no timeout
        if a.is_alive():
            a.kill()
            multiprocessing.Process.join(a, 2)
    rt = getattr(proc, "runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None) if rt is not None else None
    smm = getattr(mi, "smm", None)
    if smm is not None:
        with contextlib.suppress(Exception):
            smm.shutdown()
    with contextlib.suppress(Exception):
        rt._watchdog_manager.stop()


class _Session:
    """Compile-once Lava run of a process graph: run N steps, read sinks and vars, stop.

    A watchdog thread watches the runtime's worker processes while a run is in progress. Lava
    itself hangs when one of them dies (its runtime joins every worker, and the others wait
    forever for the dead one's messages), so the watchdog terminates the rest, which lets the
    runtime's error surface; the session then reports the dead worker's exception as one
    ``LavaError``. ``close`` stops gracefully after clean runs and kills the workers otherwise.
    """

    def __init__(self, anchor: AbstractProcess, timeout: float | None):
        self.anchor = anchor
        self.timeout = timeout
        self.cfg = Loihi2SimCfg(select_tag="fixed_pt")
        self.started = False
        self.clean = True
        self.failure: str | None = None
        self._main: int | None = None

    def _watch(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            for a in _actors(self.anchor):
                # A failing ProcessModel sends its exception through the SystemProcess pipe
                # right away, but may then never exit (its port threads keep it alive).
                exc = None
                with contextlib.suppress(Exception):
                    exc = a.exception
                if exc or a.exitcode is not None:
                    if exc:
                        err, _tb = exc
                        self.failure = f"{type(err).__name__}: {err}"
                    else:
                        self.failure = f"a Lava worker process exited with code {a.exitcode}"
                    for b in _actors(self.anchor):
                        if b is not a and b.is_alive():
                            b.terminate()
                    # The main thread waits on a channel nobody will write to now: wake it.
                    if self._main is not None:
                        signal.pthread_kill(self._main, signal.SIGUSR1)
                    return

    def run(self, steps: int) -> None:
        done = threading.Event()
        in_main = threading.current_thread() is threading.main_thread()
        self._main = threading.main_thread().ident if in_main else None
        old_usr1 = None
        if in_main:
            def woken(signum, frame):
                raise _WorkerDied()
            old_usr1 = signal.signal(signal.SIGUSR1, woken)
        watcher = threading.Thread(target=self._watch, args=(done,), daemon=True)
        watcher.start()
        try:
            with _deadline(self.timeout), warnings.catch_warnings():
                # lava's model search tries to import each process's module by file path and
                # warns when that fails; the models it needs are found anyway.
                warnings.filterwarnings("ignore", message="Cannot import module")
                self.anchor.run(condition=RunSteps(num_steps=steps), run_cfg=self.cfg)
        except _WorkerDied:
            self.clean = False
            raise LavaError(f"a Lava process died: {self.failure}") from None
        except (LavaTimeout, KeyboardInterrupt):
            self.clean = False
            raise
        except Exception as e:  # noqa: BLE001 - any runtime failure becomes one clear error
            self.clean = False
            done.set()
            watcher.join(1)
            if self.failure:
                raise LavaError(f"a Lava process died: {self.failure}") from e
            msg = str(e).strip().splitlines()
            raise LavaError(f"Lava run failed: {type(e).__name__}: "
                            f"{msg[-1] if msg else ''}") from e
        finally:
            done.set()
            if in_main:
                signal.signal(signal.SIGUSR1, old_usr1)
        self.started = True

    def close(self) -> None:
        if self.clean and self.started:
            err: list[BaseException] = []

            def target():
                try:
                    self.anchor.stop()
                except BaseException as e:  # noqa: BLE001 - fall back to killing below
                    err.append(e)

            th = threading.Thread(target=target, daemon=True)
            th.start()
            th.join(20)
            if not th.is_alive() and not err:
                return
        _kill(self.anchor)


# ---------------------------------------------------------------------------------------------
class LavaNetwork:
    """A ``Network`` as a Lava process graph (built once, run sample by sample).

    Use as a context manager (or call ``close``): ``with LavaNetwork(net) as ln: ln.run(...)``.
    """

    def __init__(self, net: Network, *, reset_interval: int | None = None, reset_offset: int = 0,
                 num_steps: int | None = None, record_groups: Iterable[str] | None = None,
                 timeout: float | None = None):
        net.validate()
        self.net = net
        self.steps = int(num_steps or net.num_steps)
        self.groups = {g.name: g for g in net.groups}
        self.lif: dict[str, AbstractProcess] = {}
        self.src: dict[str, AbstractProcess] = {}
        self.sinks: dict[str, AbstractProcess] = {}
        self.conns: list[AbstractProcess] = []
        self.ext: dict[str, AbstractProcess] = {}
        self.keep = set(record_groups) if record_groups is not None else set(self.groups)
        self._add_neurons(reset_interval, reset_offset)
        self._add_sources()
        self._out_port = {n: p.s_out for n, p in {**self.lif, **self.src}.items()}
        for s in net.synapses:
            self.conns.append(self._conv(s) if loihi.lava_conv(s.kind, s.weight_exp, s.delay)
                              else self._matrix(s))
        for a in net.attentions:
            self.conns.append(self._attention(a))
        self._add_sinks()
        self.anchor = next(iter(self.lif.values()))
        self.session = _Session(self.anchor, timeout)

    def _add_neurons(self, reset_interval: int | None, reset_offset: int) -> None:
        """One LIF (LIFReset with a periodic reset) per neuron group, in Lava's (V, T, C) order."""
        from lava.proc.lif.process import LIF, LIFReset

        neurons = [g for g in self.net.groups if not g.source]
        for k, g in enumerate(neurons):
            shape = _lava_shape(g.shape)
            readout = g.readout or g.name == self.net.readout
            kw = dict(shape=shape, du=g.params.i_decay - 1, dv=g.params.v_decay,
                      vth=NEVER_SPIKE_VTH if readout else g.params.vth_mant,
                      bias_mant=np.zeros(shape, np.int32), bias_exp=loihi.NETX_BIAS_EXP,
                      name=g.name)
            if reset_interval:
                self.lif[g.name] = LIFReset(reset_interval=reset_interval,
                                            reset_offset=reset_offset + 1 + k, **kw)
            else:
                self.lif[g.name] = LIF(**kw)

    def _add_sources(self) -> None:
        """A RingBuffer source per source group (its spikes are set before each run)."""
        from lava.proc.io.source import RingBuffer as Source

        for g in self.net.groups:
            if g.source:
                self.src[g.name] = Source(data=np.zeros((*_lava_shape(g.shape), self.steps),
                                                        np.int32))

    def _flat_out(self, name: str):
        """Group ``name``'s spikes flattened in mksgn's row-major (C, T, V) order."""
        port = self._out_port[name]
        return port.transpose([2, 1, 0]).flatten() if len(self.groups[name].shape) == 3 else port

    def _connect_in(self, a_out, name: str, lava_order: bool = False) -> None:
        """Connect a synapse output (mksgn's order unless ``lava_order``) to ``name``'s a_in."""
        g = self.groups[name]
        if len(g.shape) == 3 and not lava_order:
            a_out.reshape(g.shape).transpose([2, 1, 0]).connect(self.lif[name].a_in)
        else:
            a_out.connect(self.lif[name].a_in)

    def _conv(self, s: Synapse) -> AbstractProcess:
        """Lava's ``Conv`` (``loihi.lava_conv``), weights flipped and transposed as netx does."""
        from lava.proc.conv.process import Conv

        src, dst = self.groups[s.src], self.groups[s.dst]
        w = np.asarray(s.weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
        proc = Conv(weight=np.ascontiguousarray(w).astype(np.int32),
                    input_shape=_lava_shape(src.shape), stride=tuple(s.stride)[::-1],
                    padding=tuple(s.padding)[::-1], dilation=tuple(s.dilation)[::-1],
                    groups=s.groups, name=s.name)
        if tuple(proc.a_out.shape) != _lava_shape(dst.shape):
            raise LavaError(f"synapse {s.name}: conv output {proc.a_out.shape} does not "
                            f"match group {dst.name} {_lava_shape(dst.shape)}")
        self._out_port[s.src].connect(proc.s_in)
        proc.a_out.connect(self.lif[s.dst].a_in)
        return proc

    def _matrix(self, s: Synapse) -> AbstractProcess:
        """Any other synapse as its unrolled matrix: DelaySparse with a delay, else Dense (small
        dense) or Sparse. Sign mode MIXED and 9 weight bits leave every 8-bit mantissa as is."""
        from lava.proc.dense.process import Dense
        from lava.proc.sparse.process import DelaySparse, Sparse
        from lava.utils.weightutils import SignMode
        from scipy.sparse import csr_matrix

        wkw = dict(sign_mode=SignMode.MIXED, num_weight_bits=9)   # no clip/truncate change
        src, dst = self.groups[s.src], self.groups[s.dst]
        delay = np.asarray(s.delay)
        m = unroll(s, src, dst).astype(np.int32)
        if delay.ndim or int(delay):
            # DelaySparse: delays share the weights' sparsity pattern
            d = np.broadcast_to(delay, (dst.size, src.size))
            r, c = m.nonzero()
            dl = csr_matrix((d[r, c].astype(int), (r, c)), shape=m.shape)
            proc = DelaySparse(weights=m, delays=dl, max_delay=int(d.max()),
                               weight_exp=s.weight_exp, name=s.name, **wkw)
        elif s.kind == "dense" and m.shape[0] * m.shape[1] <= 1 << 22:
            proc = Dense(weights=m.toarray(), weight_exp=s.weight_exp, name=s.name, **wkw)
        else:
            proc = Sparse(weights=m, weight_exp=s.weight_exp, name=s.name, **wkw)
        self._flat_out(s.src).connect(proc.s_in)
        self._connect_in(proc.a_out, s.dst)
        return proc

    def _attention(self, a) -> AbstractProcess:
        qg, xg = self.groups[a.q], self.groups[a.x]
        proc = JointAttentionProcess(qk_shape=_lava_shape(qg.shape),
                                     x_shape=_lava_shape(xg.shape), shift=a.shift,
                                     delay=a.delay, name=a.name)
        self._out_port[a.q].connect(proc.q)
        self._out_port[a.k].connect(proc.k)
        self._out_port[a.x].connect(proc.x)
        self._connect_in(proc.a_out, a.dst, lava_order=True)
        return proc

    def _add_sinks(self) -> None:
        """A RingBuffer sink on every recorded neuron group's spikes."""
        from lava.proc.io.sink import RingBuffer as Sink

        for name in self.keep:
            if name in self.lif:
                shape = _lava_shape(self.groups[name].shape)
                self.sinks[name] = Sink(shape=shape, buffer=self.steps)
                self.lif[name].s_out.connect(self.sinks[name].a_in)

    def add_current_input(self, name: str) -> None:
        """Drive group ``name``'s ``a_in`` with a per-step current sequence (call before run)."""
        from lava.proc.io.source import RingBuffer as Source

        g = self.groups[name]
        self.ext[name] = Source(data=np.zeros((*_lava_shape(g.shape), self.steps), np.int32))
        self.ext[name].s_out.connect(self.lif[name].a_in)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.session.close()

    def _set(self, var: Var, value: np.ndarray) -> None:
        if self.session.started:
            var.set(value)
        else:
            var.init = value

    def _reset_state(self) -> None:
        for p in self.lif.values():
            z = np.zeros(p.u.shape)
            p.u.set(z)
            p.v.set(z)
        for p in self.conns:
            for attr in ("a_buff", "a_buf"):
                buf = getattr(p, attr, None)
                if isinstance(buf, Var):
                    buf.set(np.zeros(buf.shape))

    def run(self, *, biases: Mapping[str, np.ndarray] | None = None,
            inputs: Mapping[str, np.ndarray] | None = None,
            source_spikes: Mapping[str, np.ndarray] | None = None,
            currents: Mapping[str, np.ndarray] | None = None,
            record: Iterable[str] = ("s",)) -> LavaResult:
        """Run one sample from zero state.

        inputs: modality -> float (C, T, V) for the encoders; biases: group -> int mantissa
        (*shape) replacing static+encoder bias; source_spikes: group -> (steps, *shape);
        currents: group -> int (steps, *shape) (groups registered with ``add_current_input``).
        record: "s", "u", "v"; u and v need one Lava call per step.
        """
        record = tuple(record)
        self._load_sample(biases, inputs, source_spikes, currents)
        res = LavaResult(num_steps=self.steps)
        uv = [k for k in ("u", "v") if k in record]
        if uv:
            per = {k: {n: [] for n in self.keep if n in self.lif} for k in uv}
            for _ in range(self.steps):
                self.session.run(1)
                for k in uv:
                    for n in per[k]:
                        per[k][n].append(from_lava(getattr(self.lif[n], k).get()).astype(np.int64))
            for k in uv:
                setattr(res, k, {n: np.stack(lst) for n, lst in per[k].items()})
        else:
            self.session.run(self.steps)
        if "s" in record or self.net.readout:
            for n, sink in self.sinks.items():
                d = sink.data.get()                     # (*lava shape, steps)
                res.spikes[n] = np.moveaxis(from_lava(d), -1, 0).astype(bool)
        if self.net.readout:
            res.scores = from_lava(self.lif[self.net.readout].v.get()).astype(np.int64)
        return res

    def _load_sample(self, biases, inputs, source_spikes, currents) -> None:
        """Write one sample's bias mantissas (encoders + static, or ``biases``), source spikes
        and external currents into the processes (see ``run``)."""
        from mksgn.deploy.engine import encode
        mant: dict[str, np.ndarray] = {}
        for e in self.net.encoders:
            if not inputs or e.modality not in inputs:
                raise LavaError(f"encoder {e.name} needs input modality {e.modality!r}")
            b = encode(e, torch.as_tensor(inputs[e.modality])[None])[0].numpy()
            mant[e.dst] = mant.get(e.dst, 0) + b
        for g in self.net.groups:
            if g.bias is not None and not g.source:
                mant[g.name] = mant.get(g.name, 0) + np.broadcast_to(g.bias, g.shape)
        for name, b in (biases or {}).items():
            mant[name] = np.asarray(b)
        if self.session.started:
            self._reset_state()
        for name, p in self.lif.items():
            b = np.clip(np.broadcast_to(mant.get(name, 0), self.groups[name].shape),
                        loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX)
            self._set(p.bias_mant, to_lava(np.asarray(b)).astype(np.int32))
        for name, p in self.src.items():
            x = np.asarray((source_spikes or {})[name]) != 0      # (steps, *shape)
            self._set(p.data, to_lava(np.moveaxis(x, 0, -1)).astype(np.int32))
        for name, p in self.ext.items():
            x = np.asarray((currents or {})[name])
            self._set(p.data, to_lava(np.moveaxis(x, 0, -1)).astype(np.int32))


# ---------------------------------------------------------------------------------------------
def run_netx(path: str | Path, steps: int, *, input_spikes: np.ndarray | None = None,
             input_current: np.ndarray | None = None, input_bias: np.ndarray | None = None,
             reset_interval: int | None = None, record: Iterable[str] = ("s",),
             timeout: float | None = None, num_layers: int | None = None,
             input_shape: tuple[int, ...] | None = None) -> LavaResult:
    """Run a stock netx file with ``netx.hdf5.Network`` under the fixed_pt simulator.

    Arrays are in mksgn's order (``mksgn.netx_io`` names the groups ``layer<i>``): input_spikes
    (steps, *input shape) into the first synapse layer (a file without an input neuron layer);
    input_current (steps, *shape) into the input layer's neurons' ``a_in``; input_bias (*shape):
    the input layer's bias mantissa. num_layers / input_shape are netx's (input_shape in our
    (C, H, W) order). record: "s" and any neuron state names (u, v; sigma, act, residue; real,
    imag): each block records those its neuron has. Returns spikes per layer (bool, or int64
    messages for graded neurons) and ``u``/``v``/``states``.
    """
    from lava.proc.io.sink import RingBuffer as Sink

    from mksgn import netx_io

    try:
        ours = netx_io.read(path, input_shape=input_shape, num_layers=num_layers)
    except netx_io.NetxFormatError as e:
        raise LavaError(str(e)) from None
    net = _netx_network(path, reset_interval, num_layers, input_shape)
    names = [m["group"] for m in ours.meta["layers"]]
    if len(names) != len(net.layers):
        raise LavaError(f"{path}: {len(net.layers)} netx blocks for {len(names)} layers")
    blocks = dict(zip(names, net.layers))
    sinks = {}
    for n, b in blocks.items():
        sinks[n] = Sink(shape=b.out.shape, buffer=steps)
        b.out.connect(sinks[n].a_in)
    _drive_netx(path, net, input_spikes, input_current, input_bias)
    session = _Session(net, timeout)
    try:
        res = _record_netx(session, steps, blocks, tuple(record))
        for n, sink in sinks.items():
            d = np.moveaxis(from_lava(sink.data.get()), -1, 0)
            graded = getattr(ours.group(n).model, "graded", False)
            res.spikes[n] = d.astype(np.int64) if graded else d.astype(bool)
    finally:
        session.close()
    return res


def _netx_network(path, reset_interval, num_layers, input_shape):
    """``netx.hdf5.Network`` of the file, or LavaError with netx's reason."""
    from lava.lib.dl import netx

    kw = {}
    if input_shape is not None:
        kw["input_shape"] = tuple(input_shape[::-1]) if len(input_shape) == 3 \
            else tuple(input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return netx.hdf5.Network(net_config=str(path), reset_interval=reset_interval,
                                     num_layers=num_layers, **kw)
    except Exception as e:  # noqa: BLE001
        raise LavaError(f"{path}: netx could not build the network: "
                        f"{type(e).__name__}: {e}") from e


def _drive_netx(path, net, input_spikes, input_current, input_bias) -> None:
    """Connect the given input spikes / currents (RingBuffer sources) and set the input bias."""
    from lava.proc.io.source import RingBuffer as Source

    first = net.layers[0]
    if input_spikes is not None:
        data = to_lava(np.moveaxis(np.asarray(input_spikes) != 0, 0, -1)).astype(np.int32)
        if tuple(data.shape[:-1]) != tuple(net.inp.shape):
            raise LavaError(f"input shape {tuple(np.asarray(input_spikes).shape[1:])} does not "
                            f"match the network input {tuple(net.inp.shape)} (x, y, z)")
        Source(data=data).s_out.connect(net.inp)
    if input_current is not None:
        data = to_lava(np.moveaxis(np.asarray(input_current), 0, -1)).astype(np.int32)
        if tuple(data.shape[:-1]) != tuple(first.neuron.a_in.shape):
            raise LavaError(f"input shape does not match the input layer "
                            f"{tuple(first.neuron.a_in.shape)} (x, y, z)")
        Source(data=data).s_out.connect(first.neuron.a_in)
    if input_bias is not None:
        if not hasattr(first.neuron, "bias_mant"):
            raise LavaError(f"{path}: the input layer's {type(first.neuron).__name__} neuron "
                            f"has no bias; drive it with input currents")
        b = to_lava(np.asarray(input_bias)).astype(np.int32)
        if tuple(b.shape) != tuple(first.neuron.bias_mant.shape):
            raise LavaError(f"input bias shape does not match the input layer "
                            f"{tuple(first.neuron.bias_mant.shape)} (x, y, z)")
        first.neuron.bias_mant.init = b


def _record_netx(session: _Session, steps: int, blocks: dict, record: tuple[str, ...]
                 ) -> LavaResult:
    """Run ``steps`` steps; the neuron states in ``record`` each block has, read every step
    (one Lava call per step then)."""
    res = LavaResult(num_steps=steps)
    wanted = [k for k in record if k != "s"]
    per = {k: {n: [] for n, b in blocks.items() if isinstance(getattr(b.neuron, k, None), Var)}
           for k in wanted}
    if any(per.values()):
        for _ in range(steps):
            session.run(1)
            for k, groups in per.items():
                for n, lst in groups.items():
                    lst.append(from_lava(getattr(blocks[n].neuron, k).get()).astype(np.int64))
    else:
        session.run(steps)
    res.states = {k: {n: np.stack(lst) for n, lst in groups.items()}
                  for k, groups in per.items() if groups}
    res.u = res.states.get("u", {})
    res.v = res.states.get("v", {})
    return res


def run_netx_graph(path: str | Path, steps: int, *, input_spikes: np.ndarray | None = None,
                   input_current: np.ndarray | None = None,
                   input_bias: np.ndarray | None = None, reset_interval: int | None = None,
                   record: Iterable[str] = ("s",), timeout: float | None = None,
                   num_layers: int | None = None,
                   input_shape: tuple[int, ...] | None = None) -> LavaResult:
    """A netx file that stock netx cannot build (``pool``, ``convT``, ``unpool``, ``concat``:
    ``mksgn.netx_io`` gives them mksgn's semantics) run in Lava ``fixed_pt`` all the same: the
    network ``netx_io.read`` makes of it, built from Lava processes by ``LavaNetwork`` (LIF,
    Dense/Sparse/Conv). Same arguments and result as ``run_netx``. CUBA neurons only (netx's
    other neuron models have no builder here); raises LavaError naming what is missing."""
    from mksgn import netx_io

    try:
        net = netx_io.read(path, input_shape=input_shape, num_layers=num_layers)
    except netx_io.NetxFormatError as e:
        raise LavaError(str(e)) from None
    for g in net.groups:
        if g.model is not None:
            raise LavaError(f"{path}: {net.meta['netx']}; and layer {g.name[5:]}'s "
                            f"{type(g.model).__name__} neurons have no Lava builder outside netx")
    if any(s.port for s in net.synapses):
        raise LavaError(f"{path}: {net.meta['netx']}; complex synapses need netx")
    first = net.groups[0]
    kw: dict = {}
    if input_spikes is not None:
        kw["source_spikes"] = {first.name: np.asarray(input_spikes)}
    if input_bias is not None:
        kw["biases"] = {first.name: np.asarray(input_bias)}
    if input_current is not None:
        kw["currents"] = {first.name: np.asarray(input_current)}
    record = tuple(record)
    with LavaNetwork(net, reset_interval=reset_interval, num_steps=steps,
                     timeout=timeout) as ln:
        if input_current is not None:
            ln.add_current_input(first.name)
        res = ln.run(record=tuple(set(record) | {"s"}), **kw)
    res.states = {k: getattr(res, k) for k in ("u", "v") if k in record}
    return res
