"""Neuron expertise: the AUROC of each neuron's pooled activation for telling toxic (1) from
non-toxic (0) items, exact for every column at once, or streamed with an error bound.

The exact routine is the Mann-Whitney U statistic with average ranks for ties (what
``sklearn.metrics.roc_auc_score`` computes), vectorised over column chunks. For float32 input each
column is sorted once as uint64 keys that carry the value's order-preserving bits and the label in
the lowest bit, which is several times faster than argsort plus gathers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.hashing import bytes_hash, content_hash
from safeglass.neurons.recording import Activations, SiteSlice, check_layout

EXPERTISE_TENSORS = "expertise.safetensors"
EXPERTISE_JSON = "expertise.json"
FORMAT = "safeglass-expertise/1"


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be a vector of {n} entries, got shape {y.shape}")
    if y.dtype == bool:
        return y
    uniq = set(np.unique(y).tolist())
    if not uniq <= {0, 1}:
        raise ValueError(f"labels must be 0/1 or booleans, got values {sorted(uniq)[:5]}")
    return y.astype(bool)


def _chunk_columns(n_rows: int, n_cols: int, matrix_bytes: int, bytes_per_cell: int,
                   max_bytes: int | None) -> int:
    # temporaries stay below the matrix itself; chunks of a few MiB stay in cache (measured fastest)
    budget = min(matrix_bytes, 4 << 20) if max_bytes is None else max_bytes
    return int(max(1, min(n_cols, budget // max(1, bytes_per_cell * n_rows))))


def _ordered_bits(block: np.ndarray) -> np.ndarray:
    """int32 keys of a float32 block that sort as the values do; -0.0 and +0.0 both map to 0."""
    bits = block.view(np.int32)
    sign = bits >> 31  # -1 for negative floats, else 0
    key = bits & np.int32(0x7FFFFFFF)
    key ^= sign
    key -= sign  # negatives: minus their magnitude (two's complement), so order follows value
    return key


def _u_from_keys(key: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney U per row of row-sorted keys (value bits above the lowest bit, label in it),
    counting ties as half, and the rows that had ties."""
    c, n = key.shape
    # float32 sums of integers are exact below 2**24
    ftype = np.float32 if n * (n - 1) // 2 < 2**24 else np.float64
    pos = (key & 1).astype(ftype)
    # with non-toxic first within ties, a toxic item at sorted position i has i - (toxic before it)
    # non-toxic items at or below its value; summed, the toxic ones before it add to P(P-1)/2
    u = (pos @ np.arange(n, dtype=ftype)).astype(np.float64) - n_pos * (n_pos - 1) / 2.0
    vals = key >> 1
    tied = vals[:, 1:] == vals[:, :-1]
    del vals
    rows = np.flatnonzero(tied.any(axis=1))
    if rows.size == 0:
        return u, rows
    # ties: a tie group with p toxic and q non-toxic counted p*q pairs fully; they count half
    new = np.ones((rows.size, n), dtype=bool)
    new[:, 1:] = ~tied[rows]
    del tied
    gid = np.cumsum(new.ravel()) - 1  # group ids, a new group at every row start
    n_groups = int(gid[-1]) + 1
    p = np.bincount(gid, weights=pos[rows].ravel(), minlength=n_groups)
    q = np.bincount(gid, minlength=n_groups) - p
    u[rows] -= 0.5 * np.add.reduceat(p * q, gid[::n])
    return u, rows


def _u_exact64(block: np.ndarray, y: np.ndarray, n_pos: int) -> np.ndarray:
    """U from int64 keys (all 32 value bits, label below): exact, twice the sorting cost."""
    key = _ordered_bits(block).astype(np.int64)
    key <<= 1
    key |= y.astype(np.int64)[:, None]
    key = np.ascontiguousarray(key.T)
    key.sort(axis=1)
    return _u_from_keys(key, n_pos)[0]


def _u_float32(block: np.ndarray, y: np.ndarray, n_pos: int) -> np.ndarray:
    """U per column of a [n, c] float32 block, sorting 32-bit keys (numpy sorts them twice as fast as
    64-bit ones): the value key's lowest bit gives way to the label. Columns whose lowest bit is
    always 0 (values from bf16 / fp16, for instance) lose nothing; in other columns, keys equal
    without that bit are either ties or values 1 ulp apart, and only those columns are redone with
    64-bit keys (a few percent of continuous float32 columns)."""
    key = _ordered_bits(block)
    lossless = ~(key & 1).any(axis=0)
    key &= np.int32(-2)
    key |= y.astype(np.int32)[:, None]
    key = np.ascontiguousarray(key.T)
    key.sort(axis=1)
    u, tied = _u_from_keys(key, n_pos)
    del key
    redo = tied[~lossless[tied]]
    if redo.size:
        u[redo] = _u_exact64(block[:, redo], y, n_pos)
    return u


def _rank_sums(sorted_vals: np.ndarray, pos_sorted: np.ndarray) -> np.ndarray:
    """Sum of average (1-based) ranks of the positives, per row of a row-wise sorted [c, n] block."""
    c, n = sorted_vals.shape
    idx = np.arange(n, dtype=np.int32)
    new = np.empty((c, n), dtype=bool)
    new[:, 0] = True
    np.not_equal(sorted_vals[:, 1:], sorted_vals[:, :-1], out=new[:, 1:])
    first = np.where(new, idx, 0)
    np.maximum.accumulate(first, axis=1, out=first)
    # the last index of each tie group: where the next value starts a new group
    last = np.where(np.concatenate([new[:, 1:], np.ones((c, 1), dtype=bool)], axis=1), idx, n - 1)
    del new
    last = np.minimum.accumulate(last[:, ::-1], axis=1)[:, ::-1]
    twice = first + last  # twice the 0-based average rank, an exact integer
    del first, last
    s = np.where(pos_sorted, twice, 0).sum(axis=1, dtype=np.int64)
    return s.astype(np.float64) / 2.0 + pos_sorted.sum(axis=1)


def auroc(acts: np.ndarray | Activations, labels: Any, *, max_chunk_bytes: int | None = None) -> np.ndarray:
    """Exact per-column AUROC (float64) of ``acts`` [n_items, n_neurons] against 0/1 ``labels``.

    Equal to ``roc_auc_score`` per column (average ranks for ties; a constant column gives 0.5). The
    columns go in chunks whose temporaries stay below the size of ``acts`` (or ``max_chunk_bytes``).
    """
    x = acts.values if isinstance(acts, Activations) else np.asarray(acts)
    if x.ndim != 2:
        raise ValueError(f"activations must be [n_items, n_neurons], got shape {x.shape}")
    n, m = x.shape
    y = _labels(labels, n)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} toxic and {n_neg} non-toxic items")
    if x.dtype == np.float16:
        x = x.astype(np.float32)  # exact: every half value is a float32 value
    fast = x.dtype == np.float32
    if not fast:
        x = x.astype(np.float64, copy=False)
    out = np.empty(m, dtype=np.float64)
    cell = 24 if fast else 56  # bytes of temporaries per cell: keys, labels, flags, (order, int32 ranks)
    step = _chunk_columns(n, m, x.nbytes, cell, max_chunk_bytes)
    for a in range(0, m, step):
        block = x[:, a:a + step]
        if np.isnan(block).any():
            col = a + int(np.isnan(block).any(axis=0).argmax())
            raise ValueError(f"activation column {col} has NaN values")
        if fast:
            u = _u_float32(block, y, n_pos)
        else:
            t = np.ascontiguousarray(block.T)
            order = np.argsort(t, axis=1, kind="stable")
            u = _rank_sums(np.take_along_axis(t, order, axis=1), y[order]) - n_pos * (n_pos + 1) / 2.0
        out[a:a + step] = u / (n_pos * n_neg)
    return out


class StreamingAUROC:
    """Per-neuron AUROC from fixed-bin histograms, for activations that do not fit in memory.

    Bin edges come from ``value_range`` (scalars or per-neuron arrays) or from the first batch's
    per-neuron min and max, widened by ``margin`` of the range on each side; later values outside the
    edges go to the end bins, which keeps the order between bins right. Only pairs of a toxic and a
    non-toxic value in the same bin are of unknown order, so the estimate (half of them counted as
    correctly ordered) is within ``0.5 * sum_b pos_b * neg_b / (P * N)`` of the exact AUROC.
    """

    def __init__(self, n_bins: int = 256, value_range: tuple[Any, Any] | None = None, margin: float = 0.05) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be positive")
        self.n_bins, self.margin = int(n_bins), float(margin)
        self._range = value_range
        self.lo: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.counts: np.ndarray | None = None  # [2, n_neurons, n_bins]: row 0 non-toxic, row 1 toxic

    def _init_edges(self, x: np.ndarray) -> None:
        m = x.shape[1]
        if self._range is not None:
            lo = np.broadcast_to(np.asarray(self._range[0], dtype=np.float64), (m,)).copy()
            hi = np.broadcast_to(np.asarray(self._range[1], dtype=np.float64), (m,)).copy()
            if np.any(hi <= lo):
                raise ValueError("value_range: the upper edge must be above the lower one")
        else:
            lo, hi = x.min(0).astype(np.float64), x.max(0).astype(np.float64)
            pad = (hi - lo) * self.margin
            lo, hi = lo - pad, hi + pad
            flat = hi <= lo  # a constant neuron in the first batch
            lo[flat], hi[flat] = lo[flat] - 0.5, hi[flat] + 0.5
        self.lo = lo
        self.scale = self.n_bins / (hi - lo)
        self.counts = np.zeros((2, m, self.n_bins), dtype=np.int64)

    def update(self, acts: np.ndarray | Activations, labels: Any) -> None:
        """Adds a batch [n_items, n_neurons] with its 0/1 labels."""
        x = acts.values if isinstance(acts, Activations) else np.asarray(acts)
        if x.ndim != 2:
            raise ValueError(f"activations must be [n_items, n_neurons], got shape {x.shape}")
        y = _labels(labels, x.shape[0])
        if np.isnan(x).any():
            raise ValueError("activations have NaN values")
        if self.counts is None:
            self._init_edges(x)
        elif x.shape[1] != self.counts.shape[1]:
            raise ValueError(f"batch has {x.shape[1]} neurons; earlier batches had {self.counts.shape[1]}")
        m, nb = x.shape[1], self.n_bins
        bins = np.clip(np.floor((x - self.lo) * self.scale), 0, nb - 1).astype(np.int64)
        bins += np.arange(m, dtype=np.int64) * nb  # flat (neuron, bin) index
        for cls in (0, 1):
            rows = bins[y == bool(cls)]
            if rows.size:
                self.counts[cls] += np.bincount(rows.ravel(), minlength=m * nb).reshape(m, nb)

    def _totals(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        if self.counts is None:
            raise ValueError("no batches yet")
        neg, pos = self.counts[0], self.counts[1]
        n_neg, n_pos = int(neg[0].sum()), int(pos[0].sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError(f"AUROC needs both classes; got {n_pos} toxic and {n_neg} non-toxic items")
        return pos, neg, n_pos, n_neg

    def estimate(self) -> np.ndarray:
        pos, neg, n_pos, n_neg = self._totals()
        below = np.cumsum(neg, axis=1) - neg  # non-toxic values in lower bins
        u = (pos * below).sum(1, dtype=np.float64) + 0.5 * (pos * neg).sum(1, dtype=np.float64)
        return u / (n_pos * n_neg)

    def error_bound(self) -> np.ndarray:
        """Per-neuron bound on |estimate - exact AUROC|."""
        pos, neg, n_pos, n_neg = self._totals()
        return 0.5 * (pos * neg).sum(1, dtype=np.float64) / (n_pos * n_neg)


# --- the expertise artifact ------------------------------------------------------------------------

@dataclass
class Expertise:
    """Per-neuron AUROC with the site layout and provenance; glasses are derived from it."""

    auroc: np.ndarray
    layout: tuple[SiteSlice, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.auroc = np.asarray(self.auroc, dtype=np.float64)
        self.layout = tuple(self.layout)
        check_layout(self.layout, self.auroc.shape[0])
        if np.isnan(self.auroc).any() or (self.auroc < 0).any() or (self.auroc > 1).any():
            raise ValueError("AUROC values must lie in [0, 1]")

    @classmethod
    def compute(cls, acts: Activations, labels: Any, provenance: dict[str, Any] | None = None) -> Expertise:
        """Exact AUROC of recorded activations; provenance records span, pooling and class counts."""
        y = _labels(labels, acts.n_items)
        prov = {"span": acts.span, "pooling": acts.pooling, "n_toxic": int(y.sum()),
                "n_non_toxic": int((~y).sum()), **acts.meta, **(provenance or {})}
        return cls(auroc(acts.values, y), acts.layout, prov)

    def site(self, name: str) -> np.ndarray:
        for s in self.layout:
            if s.name == name:
                return self.auroc[s.offset:s.stop]
        raise KeyError(f"no site {name!r}; sites: {', '.join(s.name for s in self.layout)}")

    @property
    def hash(self) -> str:
        return content_hash({"layout": [s.to_dict() for s in self.layout],
                             "auroc": bytes_hash(np.ascontiguousarray(self.auroc).tobytes())})

    def summary(self, bins: Sequence[float] = tuple(np.round(np.linspace(0, 1, 21), 2))) -> dict[str, Any]:
        """Experts per site and an AUROC histogram, as plain numbers."""
        hist, edges = np.histogram(self.auroc, bins=np.asarray(bins, dtype=np.float64))
        per_site = []
        for s in self.layout:
            a = self.auroc[s.offset:s.stop]
            per_site.append({"site": s.name, "component": s.component, "layer": s.layer, "neurons": s.width,
                             "experts": int((a > 0.5).sum()), "above_0.6": int((a > 0.6).sum()),
                             "above_0.7": int((a > 0.7).sum()), "max_auroc": float(a.max()),
                             "mean_auroc": float(a.mean())})
        top = np.argsort(-self.auroc, kind="stable")[:20]
        return {"neurons": int(self.auroc.shape[0]), "experts": int((self.auroc > 0.5).sum()),
                "per_site": per_site,
                "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in hist]},
                "top": [{**self.locate(int(j)), "auroc": float(self.auroc[j])} for j in top]}

    def locate(self, column: int) -> dict[str, Any]:
        """Site name and neuron index of a column."""
        for s in self.layout:
            if s.offset <= column < s.stop:
                return {"site": s.name, "neuron": column - s.offset}
        raise IndexError(f"column {column} is outside 0..{self.auroc.shape[0] - 1}")

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {s.name: np.ascontiguousarray(self.auroc[s.offset:s.stop]) for s in self.layout}
        save_file(tensors, str(d / EXPERTISE_TENSORS), metadata={"format": FORMAT, "hash": self.hash})
        doc = {"format": FORMAT, "hash": self.hash, "sites": [s.to_dict() for s in self.layout],
               "provenance": self.provenance}
        (d / EXPERTISE_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Expertise:
        from safetensors.numpy import load_file

        d = Path(directory)
        meta_path, tensor_path = d / EXPERTISE_JSON, d / EXPERTISE_TENSORS
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise FileNotFoundError(f"{d}: no {p.name} here; is this an expertise folder (`neurons find --out`)?")
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {doc.get('format')!r}, expected {FORMAT!r}")
        layout = tuple(SiteSlice.from_dict(s) for s in doc["sites"])
        tensors = load_file(str(tensor_path))
        missing = [s.name for s in layout if s.name not in tensors]
        if missing:
            raise ValueError(f"{tensor_path}: no values for site(s) {missing}")
        for s in layout:
            if tensors[s.name].shape != (s.width,):
                raise ValueError(f"{tensor_path}: site {s.name} has shape {tensors[s.name].shape}, "
                                 f"expected ({s.width},)")
        values = np.concatenate([tensors[s.name].astype(np.float64) for s in layout])
        exp = cls(values, layout, doc.get("provenance") or {})
        if doc.get("hash") and exp.hash != doc["hash"]:
            raise ValueError(f"{d}: content hash {exp.hash} does not match the recorded {doc['hash']}; files changed")
        return exp
