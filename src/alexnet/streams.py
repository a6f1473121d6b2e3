"""Random streams: one per purpose, each derived from the run's `seed`.

A run draws random numbers for four things: the initial weights, the order of the training images, each
image's crop, flip and colour noise, and the dropout masks. Drawing them all from torch's one global generator
couples them: an arm that draws one number more anywhere (LRN off changes nothing; dropout off draws no masks)
sees other images in another order from then on, and a resumed run sees other batches than the run it
continues. Here each purpose has its own stream, seeded from (seed, purpose, ...):

- init: `torch.manual_seed` of the init stream while the net is built (`pipeline.build`);
- order: the permutation of epoch e is a function of (seed, e) alone (`EpochSampler`);
- augment: image i's crop, flip and colour noise in epoch e are a function of (seed, e, i) alone
  (`data.base.Transformed`), whatever worker draws them and whenever;
- dropout: a generator owned by the net's dropout layers, saved in every checkpoint (`callbacks.RandomStreams`).

So two arms with the same seed see the same images in the same order with the same crops, and a run resumed
from any checkpoint continues exactly. torch has no such facility (its DataLoader seeds workers from the global
generator), hence this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def stream_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit seed for `stream` (and `keys`, e.g. epoch and index), independent of every other stream's."""
    digest = hashlib.blake2b(repr((int(seed), stream, *map(int, keys))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, stream: str, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *keys))


def restore_state(
    g: torch.Generator, state: torch.Tensor, saved_on: str | None, seed: int, stream: str, *keys: int
) -> bool:
    """Set `g` to a saved state of its stream; returns whether it could. A generator's state belongs to its device
    type (CPU: Mersenne Twister, 5056 bytes; CUDA: Philox seed and offset, 16 bytes) and cannot be set into
    another's, so a run resumed on another device type (a checkpoint written on a CPU, resumed on a GPU) cannot draw
    the masks the interrupted run would have drawn: `g` is re-seeded from (seed, stream, keys, the saved state)
    instead, the same for every resumption from that checkpoint. `saved_on`: the device type the state came from
    (None for checkpoints that did not record it: then told apart by the state's size)."""
    if saved_on is not None:
        same = saved_on == g.device.type
    else:
        same = state.numel() == g.get_state().numel()
    if same:
        g.set_state(state.cpu())  # a generator takes its state as a CPU byte tensor, whatever its device
        return True
    digest = hashlib.blake2b(state.cpu().numpy().tobytes(), digest_size=8).digest()
    g.manual_seed(stream_seed(seed, stream, *keys, int.from_bytes(digest, "little") >> 1))
    return False


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) keys: a permutation of the `n` images that depends on (seed, epoch) only, so that
    the dataset can draw each image's augmentation from (seed, epoch, index). Lightning calls `set_epoch` before
    every epoch (a data-parallel wrapper calls `__iter__` once per epoch instead, hence the auto-advance).
    `skip` drops the first images of the next epoch iterated: a run resumed mid-epoch continues where it stopped.
    `block`: shuffle blocks of that many consecutive images instead of single images (sequential reads).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, block: int | None = None) -> None:
        self.n, self.seed, self.shuffle, self.block = n, seed, shuffle, block
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = generator(self.seed, "order", epoch)
        if not self.block:
            return torch.randperm(self.n, generator=g)
        # shuffled blocks of `block` consecutive images, each block in shuffled order: a store written in a shuffled
        # order (data/jpeg.py) is then read in long runs, with every batch still a mix of classes
        starts = torch.randperm(-(-self.n // self.block), generator=g) * self.block
        return torch.cat([s + torch.randperm(min(self.block, self.n - s), generator=g) for s in starts.tolist()])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.epoch, self.skip = epoch + 1, 0
        for i in self.order(epoch)[skip:].tolist():
            yield epoch, i

    def __len__(self) -> int:
        return self.n
