"""Continuous batching, one decoding step at a time: sequences join a running batch between
steps (their prompts prefilled together, then their KV cache merged in) and leave it as soon as
they end, so a short answer never waits for a long one and a newcomer never waits for a batch
to drain.

Plain PyTorch over a Hugging Face causal LM with a dynamic KV cache (`[rows, heads, positions,
dim]` per layer): rows are left-padded, masked, and given their own position ids, so a row's
tokens do not depend on its neighbours (up to the summation order of a padded batch, and the
batch-wide activation scale of dynamic int8). Nothing here knows of Ray or asyncio: the serving
engine (`serving.engine`) drives `admit` and `step` from its loop; `generation.generate` drives
them for a fixed list of prompts.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Job:
    """A sequence to decode: `max_new` ids at most, greedily when `temperature` is 0."""

    key: Hashable
    prompt: Sequence[int]
    max_new: int
    temperature: float = 0.0


@dataclass
class Progress:
    """What one call decoded: the new id of each row that emitted one, and the rows that ended
    (EOS, which is never emitted, or their `max_new`); ended rows have left the batch."""

    tokens: dict[Hashable, int] = field(default_factory=dict)
    ended: list[Hashable] = field(default_factory=list)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    found: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif value is not None:
            found.update(int(v) for v in value)
    return found


class DecodeBatch:
    """The running rows of one model: `admit` prefills newcomers into it, `step` decodes one
    id for every row, `drop` removes rows nobody waits for."""

    def __init__(self, model: Any, tokenizer: Any, seed: int | None = None) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        stops = sorted(eos_ids(model, tokenizer))
        self.stops = torch.tensor(stops, dtype=torch.long, device=self.device)
        self.pad = next((t for t in (tokenizer.pad_token_id, *stops) if t is not None), 0)
        self.generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        self.keys: list[Hashable] = []
        self.cache: Any = None
        self.mask = self._long((0, 0))  # 1 where the cache holds a real token
        self.last = self._long((0,))  # the id each row feeds next
        self.temps = torch.zeros(0, device=self.device)
        self.left = self._long((0,))  # ids each row may still emit

    def __len__(self) -> int:
        return len(self.keys)

    @torch.inference_mode()
    def admit(self, jobs: Sequence[Job]) -> Progress:
        """Prefill `jobs` together (one forward pass) and add the ones still running to the
        batch; each emits its first id here."""
        if any(not job.prompt for job in jobs):
            raise ValueError("every prompt needs at least one token")
        if any(job.key in self.keys for job in jobs):
            raise ValueError("a key is decoded already")
        idle = [job.key for job in jobs if job.max_new <= 0]  # nothing to decode: ended
        jobs = [job for job in jobs if job.max_new > 0]
        if not jobs:
            return Progress(ended=idle)
        width = max(len(job.prompt) for job in jobs)
        ids = self._long((len(jobs), width)).fill_(self.pad)
        mask = self._long((len(jobs), width))
        for row, job in enumerate(jobs):  # left padding: every row's last token is aligned
            ids[row, width - len(job.prompt) :] = torch.tensor(job.prompt, device=self.device)
            mask[row, width - len(job.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padding must not shift the positions
        out = self._forward(ids, mask, positions, None)
        temps = torch.tensor([j.temperature for j in jobs], device=self.device)
        token = self._sample(out.logits[:, -1, :], temps)
        self._join([j.key for j in jobs], out.cache, mask, token, temps, [j.max_new for j in jobs])
        progress = self._emit(token, first=len(self.keys) - len(jobs))
        progress.ended += idle
        return progress

    @torch.inference_mode()
    def step(self) -> Progress:
        """One new id for every running row."""
        if not self.keys:
            return Progress()
        positions = self.mask.sum(-1, keepdim=True)  # the real tokens before this one
        self.mask = torch.cat([self.mask, self._long((len(self), 1)).fill_(1)], dim=1)
        out = self._forward(self.last.unsqueeze(1), self.mask, positions, self.cache)
        self.cache = out.cache
        return self._emit(self._sample(out.logits[:, -1, :], self.temps), first=0)

    def drop(self, keys: Sequence[Hashable]) -> None:
        """Remove rows (their caller went away or ran out of time)."""
        gone = set(keys)
        self._keep([row for row, key in enumerate(self.keys) if key not in gone])

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any):
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def _sample(self, logits: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        greedy = logits.argmax(-1)
        if not bool((temps > 0).any()):
            return greedy
        scaled = logits / temps.clamp(min=1e-5).unsqueeze(1)
        sampled = torch.multinomial(scaled.softmax(-1), 1, generator=self.generator).squeeze(1)
        return torch.where(temps > 0, sampled, greedy)

    def _emit(self, token: torch.Tensor, first: int) -> Progress:
        """Rows from `first` on decoded `token`: emit it unless it is EOS, and let the rows
        that ended leave."""
        rows = range(first, len(self.keys))
        ended = torch.isin(token, self.stops) if len(self.stops) else torch.zeros_like(token) > 0
        progress = Progress()
        keep = list(range(first))
        for i, row in enumerate(rows):
            if bool(ended[i]):
                progress.ended.append(self.keys[row])
                continue
            progress.tokens[self.keys[row]] = int(token[i])
            self.left[row] -= 1
            self.last[row] = token[i]
            if int(self.left[row]) > 0:
                keep.append(row)
            else:
                progress.ended.append(self.keys[row])
        self._keep(keep)  # in row order: the rows before `first` did not decode here
        return progress

    def _join(self, keys, cache, mask, token, temps, max_new) -> None:
        if self.cache is None or not self.keys:
            self.cache, self.mask = cache, mask
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
                mine.values = torch.cat(
                    [_pad_left(mine.values, width), _pad_left(theirs.values, width)]
                )
            self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)])
        self.keys = [*self.keys, *keys]
        self.last = torch.cat([self.last, token])
        self.temps = torch.cat([self.temps, temps])
        self.left = torch.cat([self.left, torch.tensor(max_new, device=self.device)])

    def _keep(self, rows: list[int]) -> None:
        """Keep only `rows`, then cut the columns no row attends to any more (a long prompt
        that left must not widen every later step)."""
        if len(rows) == len(self.keys):
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.keys = [self.keys[r] for r in rows]
        self.mask, self.last = self.mask[index], self.last[index]
        self.temps, self.left = self.temps[index], self.left[index]
        if not rows:
            self.cache, self.mask = None, self._long((0, 0))
            return
        self.cache.batch_select_indices(index)
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        if start:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]

    def _long(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.long, device=self.device)


def _pad_left(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """`tensor` widened to `width` along `dim` with zeros on the left (masked positions)."""
    missing = width - tensor.shape[dim]
    if not missing:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
