"""The labelled image tensor every stage passes around."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    """Images as float32 ``[N, C, H, W]`` in [0, 1] and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str = ""
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be a vector with one label per image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def class_indices(self, label: int) -> torch.Tensor:
        return torch.nonzero(self.labels == label, as_tuple=False).flatten()

    def channel_stats(self, floor: float = 1e-6) -> tuple[list[float], list[float]]:
        """Per-channel mean and std (std floored so a constant channel cannot divide by 0)."""
        x = self.images.detach().float()
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(floor).tolist()

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.num_classes, self.name)

    def fingerprint(self) -> str:
        """Content hash of pixels and labels: the cache key of anything computed from this set."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(str((tuple(self.images.shape), self.num_classes)).encode())
            h.update(self.images.detach().cpu().contiguous().float().numpy().tobytes())
            h.update(self.labels.detach().cpu().contiguous().long().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint
