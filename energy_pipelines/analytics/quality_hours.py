"""A device's hour of readings summarized, and summaries composed in time order (quality_fold.py).

An hour summary holds what the day's rules need from the hour and cannot learn from its
neighbours: its first and last received interval with their values, the runs at its edges (an
edge run may join a neighbour's), the runs, gaps and SoC falls wholly inside it, and its 16
largest interval energies. Composing a day's position with the next hour's summary gives what
folding the hour's readings onto it gives, so an hour summarized once (by the load that wrote
it, or from history) never needs its readings again.

Cells are (device, hour) pairs; the readings of all cells are summarized at once: one reading
an interval in (cell, interval) order (a load's rows) as they come, others through a cell x
interval matrix (numpy bincount, no sort).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from energy_pipelines.settings import QualityRules

# The largest interval energies kept per hour and per day: spikes are counted from them, exactly
# while fewer than all of them exceed the threshold (quality_db.py re-reads the day otherwise).
TOP_K = 16


@dataclass
class HourSummaries:
    """One entry per cell. Slots are intervals within the hour; `frozen`, `value_frozen`, the
    gaps and `soc_drops` count only what lies wholly inside the hour (not its edge runs, not
    the gaps before its first or after its last interval)."""

    cell: NDArray[np.int64]
    readings: NDArray[np.int64]
    received: NDArray[np.int64]
    first_slot: NDArray[np.int64]
    last_slot: NDArray[np.int64]
    first_kwh: NDArray[np.float64]
    first_value: NDArray[np.float64]
    last_kwh: NDArray[np.float64]
    last_value: NDArray[np.float64]
    gap_count: NDArray[np.int64]
    longest_gap: NDArray[np.int64]
    estimated_gaps: NDArray[np.int64]
    estimated_kwh: NDArray[np.float64]
    lead_run: NDArray[np.int64]  # intervals in the run holding the first interval
    trail_run: NDArray[np.int64]  # intervals in the run holding the last interval
    frozen: NDArray[np.int64]
    value_lead_run: NDArray[np.int64]
    value_trail_run: NDArray[np.int64]
    value_frozen: NDArray[np.int64]
    soc_drops: NDArray[np.int64]
    # The greatest common divisor of the steps between its received intervals (0: fewer than
    # two): above 1, every reading of the hour lies on a coarser grid than the cadence.
    step_gcd: NDArray[np.int64]
    top_kwh: NDArray[np.float64]  # (cells, TOP_K), largest first, -inf padded

    def take(self, at: NDArray) -> HourSummaries:
        return HourSummaries(**{f.name: getattr(self, f.name)[at] for f in fields(self)})

    @staticmethod
    def concat(parts: list[HourSummaries]) -> HourSummaries:
        return HourSummaries(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(parts[0])
            }
        )


SUMMARY_FIELDS = [f.name for f in fields(HourSummaries)]


def _latest(
    flat: NDArray[np.int64], ts: NDArray[np.int64], value: NDArray[np.float64], size: int
) -> NDArray[np.float64]:
    """Per matrix cell, the value of its latest reading; only cells with several readings pay
    for a sort."""
    count = np.bincount(flat, minlength=size)
    out = np.zeros(size)
    single = count[flat] == 1
    out[flat[single]] = value[single]
    if not single.all():
        many = ~single
        order = np.lexsort((ts[many], flat[many]))
        cells, values = flat[many][order], value[many][order]
        last = np.r_[cells[1:] != cells[:-1], True]
        out[cells[last]] = values[last]
    return out


@dataclass
class _Received:
    """The received intervals of every cell in (cell, slot) order."""

    rows: NDArray[np.int64]
    slots: NDArray[np.int64]
    kwh: NDArray[np.float64]
    value: NDArray[np.float64]
    cells: int

    def __post_init__(self) -> None:
        self.same = self.rows[1:] == self.rows[:-1]
        self.adjacent = self.same & (self.slots[1:] - self.slots[:-1] == 1)
        size = self.rows.size
        ends = np.flatnonzero(~self.same)
        self.first = np.r_[0, ends + 1] if size else ends
        self.last = np.r_[ends, size - 1] if size else ends

    def per_cell(self, at: NDArray[np.int64], weights: NDArray | None = None) -> NDArray:
        counts = np.bincount(at, weights=weights, minlength=self.cells)
        # Without weights (or without values) bincount answers integers.
        return counts.astype(np.int64 if weights is None else np.float64)


def _runs(
    got: _Received, equal: NDArray[np.bool_], nonzero: NDArray[np.bool_], min_len: int
) -> tuple[NDArray, NDArray, NDArray]:
    """Runs of consecutive intervals each `equal` to the one before: per cell, the length of
    its first and its last run, and the frozen runs between them (at least min_len intervals,
    `nonzero` at their start)."""
    empty = np.zeros(got.cells, np.int64)
    if got.rows.size == 0:
        return empty, empty.copy(), empty.copy()
    starts = np.flatnonzero(np.r_[True, ~(got.adjacent & equal)])
    length = np.diff(np.r_[starts, got.rows.size])
    first_run = np.searchsorted(starts, got.first)
    last_run = np.searchsorted(starts, got.last, side="right") - 1
    inner = np.ones(starts.size, bool)
    inner[first_run] = False
    inner[last_run] = False
    frozen = inner & (length >= min_len) & nonzero[starts]
    lead, trail = empty, empty.copy()
    lead[got.rows[got.first]] = length[first_run]
    trail[got.rows[got.last]] = length[last_run]
    return lead, trail, got.per_cell(got.rows[starts[frozen]])


def _top(received: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's TOP_K largest received energies (-inf: not received), largest first."""
    if received.shape[1] > TOP_K:
        received = -np.partition(-received, TOP_K - 1, axis=1)[:, :TOP_K]
    top = -np.sort(-received, axis=1)
    pad = TOP_K - top.shape[1]
    return np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf) if pad > 0 else top


def _received(
    cell: NDArray[np.int64],
    slot: NDArray[np.int64],
    ts: NDArray[np.int64],
    kwh: NDArray[np.float64],
    value: NDArray[np.float64],
    shape: tuple[int, int],
    is_vehicle: bool,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """The received intervals in (cell, slot) order: their cell, slot, energy and value."""
    cells, per_hour = shape
    flat = cell * per_hour + slot
    if flat.size and (flat[1:] > flat[:-1]).all():
        # One reading an interval, in order (a load's rows come in key order): the readings
        # are the intervals. Adding 0.0 turns -0.0 into 0.0, as the sums below do.
        return cell, slot, kwh + 0.0, value if is_vehicle else value + 0.0
    size = cells * per_hour
    count = np.bincount(flat, minlength=size)
    at = np.flatnonzero(count)
    # float64 even without readings (bincount of no weights answers integers).
    energy = np.bincount(flat, weights=kwh, minlength=size).astype(np.float64)[at]
    if is_vehicle:
        values = _latest(flat, ts, value, size)[at]
    else:
        values = (np.bincount(flat, weights=value, minlength=size) / np.maximum(count, 1))[at]
    return at // per_hour, at % per_hour, energy, values


def _edges(got: _Received, out: dict[str, NDArray]) -> None:
    """Each cell's first and last received interval and its values."""
    for edge, name in ((got.first, "first"), (got.last, "last")):
        rows = got.rows[edge]
        out[f"{name}_slot"][rows] = got.slots[edge]
        for kind, values in (("kwh", got.kwh), ("value", got.value)):
            out[f"{name}_{kind}"] = np.zeros(got.cells)
            out[f"{name}_{kind}"][rows] = values[edge]


def _gaps(got: _Received, rules: QualityRules, out: dict[str, NDArray]) -> None:
    """Gaps between two received intervals of the hour; estimates linear between their
    energies a and b: L missing intervals hold L * (a + b) / 2 together."""
    step = got.slots[1:] - got.slots[:-1]
    gap = got.same & (step > 1)
    length = step - 1
    after = got.rows[1:]
    out["gap_count"] = got.per_cell(after[gap])
    # gcd(0, x) = x: a 0 in place of each step across cells (and one at the end, which
    # reduceat may index) leaves every cell the gcd of its own steps.
    steps = np.r_[np.where(got.same, step, 0), 0]
    if got.first.size:
        out["step_gcd"][got.rows[got.first]] = np.gcd.reduceat(steps, got.first)
    np.maximum.at(out["longest_gap"], after[gap], length[gap])
    estimated = gap & (length <= rules.max_estimated_gap_intervals)
    gap_kwh = length * (got.kwh[:-1] + got.kwh[1:]) / 2
    out["estimated_gaps"] = got.per_cell(after[estimated])
    out["estimated_kwh"] = got.per_cell(after[estimated], gap_kwh[estimated])


def summarize_hours(
    cell: NDArray[np.int64],
    slot: NDArray[np.int64],
    ts: NDArray[np.int64],
    kwh: NDArray[np.float64],
    value: NDArray[np.float64],
    cells: int,
    per_hour: int,
    is_vehicle: bool,
    rules: QualityRules,
) -> HourSummaries:
    """The summaries of `cells` cells from their readings (cell in [0, cells), slot within the
    hour, ts in microseconds); a cell without readings has received == 0. Readings in one
    interval are one received interval: energy their sum, value the mean (meters' voltage) or
    the latest (vehicles' SoC)."""
    rows, slots, energy, values = _received(
        cell, slot, ts, kwh, value, (cells, per_hour), is_vehicle
    )
    got = _Received(rows, slots, energy, values, cells)
    out = {name: np.zeros(cells, np.int64) for name in SUMMARY_FIELDS}
    out["cell"] = np.arange(cells, dtype=np.int64)
    out["readings"] = np.bincount(cell, minlength=cells).astype(np.int64)
    out["received"] = got.per_cell(got.rows)
    _edges(got, out)
    _gaps(got, rules, out)
    # A stuck register repeats the whole reading. Equal energy alone is no sign: a charger at
    # constant power delivers the same energy every minute (on the seed's fleet that flagged
    # 4,157 of 5,000 meters and vehicles a day); its voltage and SoC still move.
    same_value = got.value[1:] == got.value[:-1]
    same_reading = (got.kwh[1:] == got.kwh[:-1]) & same_value
    n_min = rules.frozen_min_intervals
    out["lead_run"], out["trail_run"], out["frozen"] = _runs(got, same_reading, got.kwh != 0, n_min)
    if is_vehicle:
        # SoC below the previous interval's while DC was delivered in this one.
        drop = got.adjacent & (got.kwh[1:] > 0) & (got.value[1:] < got.value[:-1])
        out["soc_drops"] = got.per_cell(got.rows[1:][drop])
    else:
        runs = _runs(got, same_value, got.value != 0, n_min)
        out["value_lead_run"], out["value_trail_run"], out["value_frozen"] = runs
    received = np.full((cells, per_hour), -np.inf)
    received[rows, slots] = energy
    out["top_kwh"] = _top(received)
    return HourSummaries(**out)


@dataclass
class _Edge:
    """What the hour's first interval makes of the run the position ends in: `continues` it
    (adjacent and equal), or ends it (the run counts when `carried_counts`: non-zero); the hour's
    runs of that kind (lengths of its first and last, frozen runs between them)."""

    continues: NDArray[np.bool_]
    carried_counts: NDArray[np.bool_]
    first_counts: NDArray[np.bool_]
    lead: NDArray[np.int64]
    trail: NDArray[np.int64]
    inside: NDArray[np.int64]


def _compose_runs(
    state: dict[str, NDArray],
    device: NDArray[np.int64],
    names: tuple[str, str],
    edge: _Edge,
    received: NDArray[np.int64],
    n_min: int,
) -> None:
    """The position's open run (names[0]) ends unless the hour's first interval continues it;
    the run holding that interval ends inside the hour unless it spans the whole hour, and the
    hour's last run is the new open one. Ended runs of n_min or more count (names[1])."""
    run, frozen = names
    carried = state[run][device]
    joined = np.where(edge.continues, carried + edge.lead, edge.lead)
    spans = edge.lead == received
    ended = ~edge.continues & (carried >= n_min) & edge.carried_counts
    ended_inside = ~spans & (joined >= n_min) & edge.first_counts
    state[frozen][device] += ended.astype(np.int64) + ended_inside + edge.inside
    state[run][device] = np.where(spans, joined, edge.trail)


def compose_hour(
    state: dict[str, NDArray],
    device: NDArray[np.int64],
    hour: int,
    s: HourSummaries,
    per_hour: int,
    is_vehicle: bool,
    rules: QualityRules,
) -> None:
    """Fold the summaries `s` of one hour (one per device in `device`, every one with a
    received interval) onto the devices' positions in `state` (quality_fold's state arrays):
    what the hour adds at its edges, then what lies inside it. `top_kwh` is left to the caller
    (the largest energies do not depend on order)."""
    last = state["last_idx"][device]
    has = last >= 0  # a position without an interval yet has last_idx -1
    first_idx = hour * per_hour + s.first_slot
    step = first_idx - last
    adjacent = has & (step == 1)
    gap = has & (step > 1)
    length = step - 1
    last_kwh, last_value = state["last_kwh"][device], state["last_value"][device]
    state["gap_count"][device] += gap + s.gap_count
    state["longest_gap"][device] = np.maximum.reduce(
        [state["longest_gap"][device], np.where(gap, length, 0), s.longest_gap]
    )
    estimated = gap & (length <= rules.max_estimated_gap_intervals)
    gap_kwh = np.where(estimated, length * (last_kwh + s.first_kwh) / 2, 0.0)
    state["estimated_gaps"][device] += estimated + s.estimated_gaps
    state["estimated_kwh"][device] = state["estimated_kwh"][device] + gap_kwh + s.estimated_kwh
    same_value = adjacent & (last_value == s.first_value)
    n_min = rules.frozen_min_intervals
    readings = _Edge(
        same_value & (last_kwh == s.first_kwh),
        has & (last_kwh != 0),
        s.first_kwh != 0,
        s.lead_run,
        s.trail_run,
        s.frozen,
    )
    _compose_runs(state, device, ("reading_run", "frozen_runs"), readings, s.received, n_min)
    if is_vehicle:
        falls = adjacent & (s.first_kwh > 0) & (s.first_value < last_value)
        state["soc_drops"][device] += falls + s.soc_drops
    else:
        values = _Edge(
            same_value,
            has & (last_value != 0),
            s.first_value != 0,
            s.value_lead_run,
            s.value_trail_run,
            s.value_frozen,
        )
        _compose_runs(state, device, ("value_run", "frozen_value_runs"), values, s.received, n_min)
    state["step_gcd"][device] = np.gcd.reduce(
        [state["step_gcd"][device], np.where(has, step, 0), s.step_gcd]
    )
    state["received"][device] += s.received
    state["readings"][device] += s.readings
    state["first_idx"][device] = np.where(has, state["first_idx"][device], first_idx)
    state["last_idx"][device] = hour * per_hour + s.last_slot
    state["last_kwh"][device] = s.last_kwh
    state["last_value"][device] = s.last_value
    state["hour_max"][device, hour] = np.maximum(state["hour_max"][device, hour], s.top_kwh[:, 0])


def largest(*candidates: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per row, the TOP_K largest of the candidate matrices' values, largest first."""
    both = np.concatenate(candidates, axis=1)
    if both.shape[1] > TOP_K:
        both = -np.partition(-both, TOP_K - 1, axis=1)[:, :TOP_K]
    return -np.sort(-both, axis=1)
