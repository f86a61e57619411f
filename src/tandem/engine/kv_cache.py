"""The running batch's KV cache: left-padded, with in-place appends.

Model of the problem: every running sequence has its own length, but one decode forward needs
one rectangular cache. Rows are right-aligned (left padding) and an attention mask [B, T] marks
real tokens, so every decode step appends one column for all rows at once. Positions are passed
per row by the runner, so padding never shifts a sequence's rotary positions.

- ``SlabLayer``: a transformers cache layer whose keys/values are views of a buffer with spare
  columns, so appending a token writes in place instead of concatenating the whole cache
  (that concatenation was half of a decode step at batch 32 on CPU).
- ``RunningBatch``: the cache plus mask; ``select`` (drop finished rows, trim columns that are
  padding in every row), ``merge`` (admit newly prefilled rows), ``row_kv`` / ``from_rows``
  (one sequence's unpadded KV, for export and import).

Full-attention decoder models only (the loader refuses sliding-window / hybrid layer types).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

LayerKV = tuple[torch.Tensor, torch.Tensor]
SPARE_TOKENS = 64


class SlabLayer(DynamicLayer):
    """A ``DynamicLayer`` whose appends write into preallocated spare columns."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int | None = None) -> None:
        """A layer holding ``keys``/``values`` [B, H, T, D] (copied into new buffers with spare
        columns); with ``length``, the tensors *are* the buffers (adopted, not copied) and
        their first ``length`` columns hold the cache."""
        super().__init__()
        if length is None:
            self._fill(keys, values, SPARE_TOKENS)
        else:
            self._adopt(keys, values, length)

    def _adopt(self, key_buf: torch.Tensor, value_buf: torch.Tensor, length: int) -> None:
        self._key_buf, self._value_buf, self._end = key_buf, value_buf, length
        self.keys = key_buf[:, :, :length]
        self.values = value_buf[:, :, :length]
        self.dtype, self.device = key_buf.dtype, key_buf.device
        self.is_initialized = True

    def _fill(self, keys: torch.Tensor, values: torch.Tensor, spare: int) -> None:
        batch, heads, length, dim = keys.shape
        self._key_buf = keys.new_zeros((batch, heads, length + spare, dim))
        self._value_buf = values.new_zeros((batch, heads, length + spare, values.shape[-1]))
        self._key_buf[:, :, :length] = keys
        self._value_buf[:, :, :length] = values
        self._end = length
        self.keys = self._key_buf[:, :, :length]
        self.values = self._value_buf[:, :, :length]
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``key_states``/``value_states`` [B, H, n, D]; return the whole cache (views)."""
        n = key_states.shape[-2]
        if self._end + n > self._key_buf.shape[-2]:
            self._fill(*self.current(), max(SPARE_TOKENS, n))
        self._key_buf[:, :, self._end : self._end + n] = key_states
        self._value_buf[:, :, self._end : self._end + n] = value_states
        self._end += n
        self.keys = self._key_buf[:, :, : self._end]
        self.values = self._value_buf[:, :, : self._end]
        return self.keys, self.values

    def current(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values [B, H, T, D] (views of the buffers)."""
        return self._key_buf[:, :, : self._end], self._value_buf[:, :, : self._end]


class RunningBatch:
    """KV cache and attention mask of the rows that decode together (row order = runner's order)."""

    def __init__(
        self, layers: Sequence[LayerKV], attention_mask: torch.Tensor, *, adopt: bool = False
    ) -> None:
        """``adopt``: ``layers`` are buffers with spare columns, used as they are (their first
        ``attention_mask.shape[1]`` columns hold the cache); else they are copied."""
        width = int(attention_mask.shape[1])
        self._layers = [SlabLayer(k, v, width if adopt else None) for k, v in layers]
        self.cache = Cache(layers=list(self._layers))
        self.attention_mask = attention_mask

    @property
    def num_rows(self) -> int:
        return int(self.attention_mask.shape[0])

    @property
    def width_tokens(self) -> int:
        return int(self.attention_mask.shape[1])

    def layer_kv(self) -> list[LayerKV]:
        return [layer.current() for layer in self._layers]

    def mask_with_new_column(self) -> torch.Tensor:
        """The mask for a decode forward: the current one plus a column of ones."""
        ones = self.attention_mask.new_ones((self.num_rows, 1))
        return torch.cat([self.attention_mask, ones], dim=1)

    def commit_decode(self, mask_with_new_column: torch.Tensor) -> None:
        """Record that a decode forward appended one column to every layer."""
        self.attention_mask = mask_with_new_column

    def select(self, rows: Sequence[int]) -> RunningBatch | None:
        """The batch with only ``rows`` (in that order); ``None`` if empty."""
        if not rows:
            return None
        index = torch.tensor(list(rows), device=self.attention_mask.device)
        mask = self.attention_mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0].item()) if used.numel() else mask.shape[1]
        # One copy: the kept rows of the whole buffers (spare columns included), adopted.
        layers = [
            (
                layer._key_buf[:, :, start:].index_select(0, index),
                layer._value_buf[:, :, start:].index_select(0, index),
            )
            for layer in self._layers
        ]
        return RunningBatch(layers, mask[:, start:], adopt=True)

    def row_kv(self, row: int, start: int = 0) -> list[LayerKV]:
        """Row ``row``'s KV without padding, from its token ``start`` on: per layer
        ([H, T_row - start, D], [H, T_row - start, D]) copies."""
        columns = self.attention_mask[row].nonzero().squeeze(-1)[start:]
        return [
            (k[row][:, columns].clone(), v[row][:, columns].clone()) for k, v in self.layer_kv()
        ]

    @staticmethod
    def from_rows(rows: Sequence[Sequence[LayerKV]]) -> RunningBatch:
        """Left-pad per-sequence KV (as from ``row_kv``) into one batch."""
        parts = [
            ([(k.unsqueeze(0), v.unsqueeze(0)) for k, v in layers], _ones_mask(layers))
            for layers in rows
        ]
        return _assemble(parts)

    @staticmethod
    def merge(first: RunningBatch | None, second: RunningBatch) -> RunningBatch:
        """``first``'s rows followed by ``second``'s, padded on the left to a common width."""
        if first is None:
            return second
        return _assemble(
            [(first.layer_kv(), first.attention_mask), (second.layer_kv(), second.attention_mask)]
        )


def _ones_mask(layers: Sequence[LayerKV]) -> torch.Tensor:
    keys = layers[0][0]
    return torch.ones((1, keys.shape[1]), dtype=torch.long, device=keys.device)


def _assemble(parts: Sequence[tuple[Sequence[LayerKV], torch.Tensor]]) -> RunningBatch:
    width = max(mask.shape[1] for _, mask in parts)
    num_rows = sum(mask.shape[0] for _, mask in parts)
    first_layers, first_mask = parts[0]
    mask = first_mask.new_zeros((num_rows, width))
    layers: list[LayerKV] = []
    # One copy: each part straight into buffers with spare columns, which the batch adopts.
    columns = width + SPARE_TOKENS
    for layer_index, (key0, value0) in enumerate(first_layers):
        keys = key0.new_zeros((num_rows, key0.shape[1], columns, key0.shape[3]))
        values = value0.new_zeros((num_rows, value0.shape[1], columns, value0.shape[3]))
        row = 0
        for part_layers, part_mask in parts:
            rows, length = part_mask.shape
            k, v = part_layers[layer_index]
            keys[row : row + rows, :, width - length : width] = k
            values[row : row + rows, :, width - length : width] = v
            if layer_index == 0:
                mask[row : row + rows, width - length :] = part_mask
            row += rows
        layers.append((keys, values))
    return RunningBatch(layers, mask, adopt=True)
