"""Communication accounting: every tensor that crosses a tier boundary goes through `Network.send`, which counts
its bytes as it is sent.

ACME (ICDCS 2025) claims that its data transmission is 6% of a centralized system's, but its code has no networking
and counts no bytes (docs/acme.md#communication-accounting). Here the three tiers are simulated in one process.
Bytes are counted at the moment of sending, from the payload actually handed over, and are not estimated
afterwards. A centralized system would instead upload every device's raw training data (`centralized_bytes`).

Tiers are named "cloud", "edge" and "device:<k>". Traffic towards the devices is "down" and traffic towards the
cloud is "up". There are no lateral links: device to device, or a tier to itself, is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from typing import Any

import pandas as pd
import torch

LEVELS = {"cloud": 0, "edge": 1, "device": 2}  # deeper = closer to the data; "down" moves to a higher level
SCALAR_BYTES = 8  # a Python int/float/bool is sent as one 64-bit value


def device_tier(k: int) -> str:
    """The tier name of device k."""
    return f"device:{k}"


def tier_kind(tier: str) -> str:
    """ "cloud", "edge" or "device" (every "device:<k>" is grouped under "device")."""
    kind, _, index = tier.partition(":")
    if kind not in LEVELS or (kind == "device") != index.isdigit():
        raise ValueError(f"unknown tier {tier!r}; expected 'cloud', 'edge' or 'device:<k>' with k a non-negative int")
    return kind


def direction(src: str, dst: str) -> str:
    """ "down" towards the devices, "up" towards the cloud."""
    step = LEVELS[tier_kind(dst)] - LEVELS[tier_kind(src)]
    if step == 0:
        raise ValueError(f"{src} -> {dst} is a lateral link, which ACME's cloud-edge-device hierarchy does not have")
    return "down" if step > 0 else "up"


def payload_bytes(payload: Any) -> int:
    """Bytes on the wire: numel × element_size per tensor, 8 per Python scalar, summed through dicts and lists."""
    if isinstance(payload, torch.Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, bool | int | float):
        return SCALAR_BYTES
    if isinstance(payload, Mapping):
        return sum(payload_bytes(v) for v in payload.values())
    if isinstance(payload, list | tuple):
        return sum(payload_bytes(v) for v in payload)
    raise TypeError(f"cannot send a {type(payload).__name__}; send tensors, numbers, or dicts/lists of them")


def received_copy(payload: Any) -> Any:
    """What the receiver gets: a detached copy of every tensor (same dtype and torch device), same container types."""
    if isinstance(payload, torch.Tensor):
        return payload.detach().clone()
    if isinstance(payload, Mapping):
        return type(payload)((k, received_copy(v)) for k, v in payload.items())
    if isinstance(payload, list | tuple):
        return type(payload)(received_copy(v) for v in payload)
    return payload  # numbers are immutable


@dataclass(frozen=True)
class Transfer:
    """One record of the ledger."""

    src: str
    dst: str
    direction: str
    what: str
    bytes: int


class Network:
    """The one accounting layer between tiers. `send` records the transfer and returns the receiver's copy.

    The copy is detached and cloned, so the receiver never aliases the sender's memory: if the sender later changes
    its tensor in place (an optimizer step, a pruning mask), what was received stays as it was when it was sent,
    just as it would after a real transmission. All tiers run in one process, so the copy stays on the same torch
    device as the original.
    """

    def __init__(self) -> None:
        self._records: list[Transfer] = []

    def send(self, payload: Any, src: str, dst: str, what: str) -> Any:
        """Count `payload` as it is sent from `src` to `dst`, and return the copy that `dst` receives."""
        record = Transfer(src, dst, direction(src, dst), what, payload_bytes(payload))
        self._records.append(record)
        return received_copy(payload)

    def ledger(self) -> pd.DataFrame:
        """One row per transfer, in the order sent: src, dst, direction, what, bytes."""
        columns = [f.name for f in Transfer.__dataclass_fields__.values()]
        return pd.DataFrame([astuple(r) for r in self._records], columns=columns)

    def totals(self) -> pd.DataFrame:
        """Bytes per (src tier, dst tier, direction), with all devices grouped as "device"."""
        ledger = self.ledger()
        ledger["src"] = ledger["src"].map(tier_kind)
        ledger["dst"] = ledger["dst"].map(tier_kind)
        return ledger.groupby(["src", "dst", "direction"], as_index=False)["bytes"].sum()

    def bytes(self, direction: str | None = None, what: str | None = None) -> int:
        """Total bytes sent, optionally only in one direction ("up"/"down") or only of one kind of payload."""
        return sum(
            r.bytes
            for r in self._records
            if (direction is None or r.direction == direction) and (what is None or r.what == what)
        )


def centralized_bytes(
    device_datasets: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    pixel_bytes: int | None = 1,
    label_bytes: int | None = None,
) -> int:
    """Bytes a centralized system would upload: every device's raw training images and labels.

    `device_datasets` gives one (images, labels) pair per device. Each device uploads its own copy, so samples that
    two devices share (ACME draws the clients independently, so they overlap) are counted once per device.

    Convention: by default an image counts one byte per pixel value (`pixel_bytes=1`), i.e. images.numel() bytes.
    This is raw 8-bit RGB with no JPEG compression, whatever dtype the tensor has in memory (e.g. float32 after
    normalization). Labels count at their stored dtype (`label_bytes=None`, so 8 bytes for int64). Passing None for
    `pixel_bytes` counts images at their stored dtype too. Images count at the resolution they are stored at.
    Pass the devices' native images, e.g. 32×32 for CIFAR, and not the 224×224 backbone input: resizing
    multiplies the count by 49.
    """
    total = 0
    for images, labels in device_datasets:
        total += images.numel() * (images.element_size() if pixel_bytes is None else pixel_bytes)
        total += labels.numel() * (labels.element_size() if label_bytes is None else label_bytes)
    return total
