"""Edge scenes: a procedural, class-conditional image generator with domain shifts.

It stands in for CIFAR-100 / Stanford Cars (ACME) and for a roadside camera's stream of weather, lighting and
traffic-density domains (BlockTrainer), so every section runs with no download. Everything is vectorized torch
and deterministic by seed: the same (spec, domain, n, seed) gives the same tensors on every machine.

A class is a combination of object attributes:
* coarse mode (default) — shape × colour × texture, drawn from a fixed table (up to 8 · 8 · 4 = 256 classes);
* fine-grained mode — every class is the same "vehicle" (a rounded body), and classes differ only in small
  details: the colour of a small marker, which corner it sits in, and the number of stripes on the body.

Each image adds nuisance (position, scale, rotation, colour jitter, background, clutter objects, sensor noise)
and a `Domain` applies weather (fog, rain, snow), lighting (brightness, contrast, colour cast), object density
(clutter) and a background style, each with a severity in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "star", "bar")
TEXTURES = ("solid", "stripes", "checker", "dots")
BACKGROUNDS = ("plain", "sky", "grass", "urban")
# Eight well-separated object colours (RGB in [0, 1]).
PALETTE = torch.tensor(
    [
        [0.90, 0.15, 0.15],
        [0.15, 0.70, 0.20],
        [0.20, 0.35, 0.90],
        [0.95, 0.85, 0.15],
        [0.85, 0.20, 0.85],
        [0.10, 0.80, 0.85],
        [0.95, 0.55, 0.10],
        [0.55, 0.35, 0.15],
    ]
)
MAX_CLASSES = len(SHAPES) * len(PALETTE) * len(TEXTURES)
MAX_FINE_CLASSES = len(PALETTE) * 4 * 4  # marker colour × corner × stripe count
# Bump when a change alters the rendered pixels: cached stages trained on scenes include it in their key.
SCENES_VERSION = 2
CHUNK = 2048  # images rendered at once; fixed so results do not depend on the caller's batch size
MAX_CLUTTER = 6


@dataclass(frozen=True)
class SceneSpec:
    """What is rendered: how many classes, at which resolution, and whether the task is fine-grained."""

    num_classes: int = 10
    image_size: int = 32
    fine_grained: bool = False

    def __post_init__(self):
        limit = MAX_FINE_CLASSES if self.fine_grained else MAX_CLASSES
        if not 2 <= self.num_classes <= limit:
            mode = "fine-grained" if self.fine_grained else "coarse"
            raise ValueError(f"num_classes={self.num_classes} is out of range for {mode} scenes; use 2..{limit}")
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size={self.image_size} is out of range; use 16..512 pixels")


@dataclass(frozen=True)
class Domain:
    """A domain: severities in [0, 1] of each factor (brightness in [-1, 1]: dark to bright).

    `clutter` sets the object density (0 = at most one small distractor, 1 = six); `background` picks a style.
    """

    name: str = "clear"
    fog: float = 0.0
    rain: float = 0.0
    snow: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    cast: float = 0.0
    clutter: float = 0.0
    background: str = "plain"

    def __post_init__(self):
        for factor in ("fog", "rain", "snow", "contrast", "cast", "clutter"):
            value = getattr(self, factor)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Domain {self.name!r}: {factor}={value} must lie in [0, 1]")
        if not -1.0 <= self.brightness <= 1.0:
            raise ValueError(f"Domain {self.name!r}: brightness={self.brightness} must lie in [-1, 1]")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"Domain {self.name!r}: background={self.background!r}; expected one of {BACKGROUNDS}")

    @property
    def severity(self) -> float:
        """The strongest factor's severity, a single number to sort domains by."""
        return max(self.fog, self.rain, self.snow, abs(self.brightness), self.contrast, self.cast, self.clutter)


CLEAR = Domain()


def domain_stream(n: int, seed: int = 0) -> list[Domain]:
    """A stream of `n` shifted domains cycling weather, lighting and density, each at a random severity.

    Each domain mixes one main factor (severity 0.3–0.9) with a milder second one and a background style,
    like a roadside camera going from sunny to fog to night to rush hour.
    """
    if n < 1:
        raise ValueError(f"domain_stream needs n >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    kinds = ("fog", "rain", "snow", "dark", "bright", "contrast", "cast", "clutter")
    domains = []
    for i in range(n):
        u = torch.rand(4, generator=g).tolist()
        main = kinds[i % len(kinds)]
        second = kinds[(i * 3 + 1 + int(u[2] * 3)) % len(kinds)]
        factors = _factor(main, 0.3 + 0.6 * u[0])
        for key, value in _factor(second, 0.3 * u[1]).items():
            factors[key] = factors.get(key, 0.0) + value if key == "brightness" else max(factors.get(key, 0.0), value)
        factors["brightness"] = max(-1.0, min(1.0, factors.get("brightness", 0.0)))
        background = BACKGROUNDS[int(u[3] * len(BACKGROUNDS))]
        name = f"{main}-{factors.get(main, abs(factors.get('brightness', 0.0))):.1f}+{second}/{background}"
        domains.append(Domain(name=name, background=background, **factors))
    return domains


def _factor(kind: str, severity: float) -> dict[str, float]:
    if kind == "dark":
        return {"brightness": -severity}
    if kind == "bright":
        return {"brightness": severity}
    return {kind: severity}


def class_attributes(spec: SceneSpec) -> torch.Tensor:
    """(num_classes, 3) long: per class (shape, colour, texture) — or (marker colour, corner, stripes) if fine.

    A bijection of the class index onto the attribute grid in which neighbouring classes differ in every
    attribute, so that a few classes already use every kind of cue; it depends only on the spec, never on a seed.
    """
    sizes = (len(PALETTE), 4, 4) if spec.fine_grained else (len(SHAPES), len(PALETTE), len(TEXTURES))
    c = torch.arange(spec.num_classes)
    a, b, t = c % sizes[0], (c // sizes[0]) % sizes[1], c // (sizes[0] * sizes[1])
    return torch.stack([a, (a + b) % sizes[1], (t + a + b) % sizes[2]], dim=1)


def render_scenes(
    spec: SceneSpec, domain: Domain, n: int, seed: int = 0, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render `n` images: returns (images (n, 3, S, S) float32 in [0, 1], labels (n,) long).

    Labels are balanced (a shuffled `arange(n) % num_classes`) unless given.
    """
    if n < 0:
        raise ValueError(f"render_scenes needs n >= 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        labels = torch.arange(n)[torch.randperm(n, generator=g)] % spec.num_classes
    elif labels.shape != (n,) or labels.min() < 0 or labels.max() >= spec.num_classes:
        raise ValueError(f"labels must have shape ({n},) with values in [0, {spec.num_classes}); got {labels.shape}")
    attrs = class_attributes(spec)[labels]
    out = torch.empty(n, 3, spec.image_size, spec.image_size)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        out[start:stop] = _render_chunk(spec, domain, attrs[start:stop], g)
    return out, labels


def apply_domain(images: torch.Tensor, domain: Domain, seed: int = 0) -> torch.Tensor:
    """Apply a domain's lighting and weather to any (B, 3, H, W) images in [0, 1] (real data in the paper profile).

    Returns a new tensor; the background and clutter factors need a rendered scene and are ignored here.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"apply_domain expects square (B, 3, S, S) images, got shape {tuple(images.shape)}")
    g = torch.Generator().manual_seed(seed)
    u, v = _grid(images.shape[-1])
    out = images.detach().to("cpu", torch.float32).clone()
    for start in range(0, len(out), CHUNK):
        out[start : start + CHUNK] = _apply_domain(out[start : start + CHUNK], domain, u, v, g)
    return out


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = (torch.arange(size) + 0.5) / size * 2 - 1
    return coords.view(1, 1, size), coords.view(1, size, 1)  # u: (1, 1, S) x-axis; v: (1, S, 1) y-axis


def _render_chunk(spec: SceneSpec, domain: Domain, attrs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, s = attrs.shape[0], spec.image_size
    u, v = _grid(s)
    image = _background(domain.background, b, s, u, v, g)  # (B, 3, S, S)
    _draw_clutter(image, domain.clutter, u, v, g)
    # The object: pose jitter, then its class-defined shape/texture/colour (or fine-grained details).
    cx, cy = (torch.rand(2, b, 1, 1, generator=g) - 0.5) * 0.5
    scale = 0.45 + 0.2 * torch.rand(b, 1, 1, generator=g)
    angle = (torch.rand(b, 1, 1, generator=g) - 0.5) * (0.6 if spec.fine_grained else 1.2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    x = ((u - cx) * cos + (v - cy) * sin) / scale  # (B, S, S) object frame
    y = (-(u - cx) * sin + (v - cy) * cos) / scale
    jitter = 1 + 0.15 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    if spec.fine_grained:
        _draw_vehicle(image, x, y, attrs, jitter, g)
    else:
        mask = _shape_mask(attrs[:, 0], x, y, s)
        shade = _texture(attrs[:, 2], x, y)
        colour = (PALETTE[attrs[:, 1]].view(b, 3, 1, 1) * jitter).clamp(0, 1)
        _paint(image, mask, colour * shade.unsqueeze(1))
    return _apply_domain(image, domain, u, v, g)


def _background(style: str, b: int, s: int, u, v, g: torch.Generator) -> torch.Tensor:
    base = 0.35 + 0.3 * torch.rand(b, 3, 1, 1, generator=g)
    if style == "plain":
        return base.expand(b, 3, s, s).clone()
    if style == "sky":  # vertical gradient: light sky over darker ground
        top = torch.tensor([0.55, 0.70, 0.90]).view(1, 3, 1, 1)
        mix = (v.unsqueeze(1) + 1) / 2  # (1, 1, S, 1)
        return (top * (1 - mix) + base * mix).expand(b, 3, s, s).clone()
    if style == "grass":  # green low-frequency noise
        noise = torch.rand(b, 1, s // 4, s // 4, generator=g)
        noise = torch.nn.functional.interpolate(noise, size=(s, s), mode="bilinear", align_corners=False)
        return torch.tensor([0.25, 0.50, 0.20]).view(1, 3, 1, 1) * (0.7 + 0.6 * noise)
    # urban: grey blocks with a grid of dark lines
    lines = ((torch.sin(u * 9 * math.pi) > 0.93) | (torch.sin(v * 7 * math.pi) > 0.93)).float()
    grey = base.mean(dim=1, keepdim=True)
    return (grey * (1 - 0.5 * lines.unsqueeze(1))).expand(b, 3, s, s).clone()


def _draw_clutter(image: torch.Tensor, clutter: float, u, v, g: torch.Generator) -> None:
    """Distractor objects: small discs and squares of random colours; how many grows with `clutter`."""
    b = image.shape[0]
    params = torch.rand(MAX_CLUTTER, 8, b, 1, 1, generator=g)
    p_present = torch.tensor([0.3] + [clutter] * (MAX_CLUTTER - 1)).view(MAX_CLUTTER, 1, 1, 1)
    for k in range(MAX_CLUTTER):
        idx = (params[k, 0, :, 0, 0] < p_present[k, 0, 0, 0]).nonzero(as_tuple=True)[0]  # images that get it
        if idx.numel() == 0:
            continue
        _, px, py, size, square, *rgb = params[k, :, idx]
        dx, dy = (u - (px * 1.8 - 0.9)).abs(), (v - (py * 1.8 - 0.9)).abs()
        radius = 0.08 + 0.1 * size
        inside = torch.where(square > 0.5, torch.maximum(dx, dy), torch.sqrt(dx**2 + dy**2)) < radius
        image[idx] = torch.where(inside.unsqueeze(1), torch.stack(rgb, dim=1), image[idx])


def _shape_mask(shape: torch.Tensor, x: torch.Tensor, y: torch.Tensor, s: int) -> torch.Tensor:
    """(B, S, S) soft mask of each image's shape in its object frame (x, y); one pass per shape kind present."""
    r = torch.sqrt(x**2 + y**2)
    dist = torch.empty_like(x)  # signed-ish distance, inside < 1
    for k, name in enumerate(SHAPES):
        idx = (shape == k).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        xi, yi, ri = x[idx], y[idx], r[idx]
        if name == "disc":
            d = ri
        elif name == "square":
            d = torch.maximum(xi.abs(), yi.abs()) / 0.8
        elif name == "triangle":
            d = torch.maximum(yi * -1.0 + 0.3, (yi * 0.5 + xi.abs() * 0.87) / 0.8 + 0.1) * 1.2
        elif name == "ring":
            d = (ri - 0.75).abs() / 0.25
        elif name == "cross":
            d = torch.minimum(torch.maximum(xi.abs() / 0.3, yi.abs()), torch.maximum(xi.abs(), yi.abs() / 0.3))
        elif name == "diamond":
            d = xi.abs() + yi.abs()
        elif name == "star":
            d = ri / (0.65 + 0.35 * torch.cos(5 * torch.atan2(yi, xi)))
        else:  # bar
            d = torch.maximum(xi.abs(), yi.abs() / 0.35)
        dist[idx] = d
    return ((1 - dist) * s * 0.25 + 0.5).clamp(0, 1)  # about one pixel of anti-aliasing


def _texture(texture: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, S, S) shade in [0.45, 1] applying each image's texture in the object frame."""
    stripes = torch.sin(x * 3 * math.pi) > 0
    checker = (torch.sin(x * 2.5 * math.pi) > 0) ^ (torch.sin(y * 2.5 * math.pi) > 0)
    dots = (torch.sin(x * 3 * math.pi) * torch.sin(y * 3 * math.pi)) > 0.5
    pattern = torch.stack([torch.zeros_like(stripes), stripes, checker, dots])  # (4, B, S, S)
    chosen = pattern.gather(0, texture.view(1, -1, 1, 1).expand(1, *x.shape))[0]
    return 1 - 0.55 * chosen.float()


def _draw_vehicle(image, x, y, attrs, jitter, g: torch.Generator) -> None:
    """Fine-grained mode: the same body for every class; marker colour, corner and stripe count carry the label."""
    b = image.shape[0]
    body = ((1 - torch.maximum(x.abs() / 1.0, y.abs() / 0.55)) * 8).clamp(0, 1)
    body_colour = (0.55 + 0.3 * torch.rand(b, 1, 1, 1, generator=g)).expand(b, 3, 1, 1) * jitter
    stripes = attrs[:, 2].view(b, 1, 1) + 1  # 1..4 stripes across the body
    stripe = (torch.cos(x * math.pi * stripes) > 0.6) & (y.abs() < 0.15)
    shade = 1 - 0.5 * stripe.float()
    _paint(image, body, body_colour.clamp(0, 1) * shade.unsqueeze(1))
    corner = attrs[:, 1]
    mx = torch.where(corner % 2 == 0, -0.7, 0.7).view(b, 1, 1)
    my = torch.where(corner < 2, -0.35, 0.35).view(b, 1, 1)
    marker = ((1 - torch.sqrt((x - mx) ** 2 + (y - my) ** 2) / 0.18) * 6).clamp(0, 1)
    _paint(image, marker, PALETTE[attrs[:, 0]].view(b, 3, 1, 1))


def _paint(image: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> None:
    """Alpha-composite `colour` (B, 3, 1|S, 1|S) over `image` (B, 3, S, S) where `mask` (B, S, S) is set."""
    image.lerp_(colour.expand_as(image), mask.unsqueeze(1))


def _apply_domain(image: torch.Tensor, d: Domain, u, v, g: torch.Generator) -> torch.Tensor:
    """Lighting, then weather, then sensor noise; in place on the chunk's (B, 3, S, S) image."""
    b, _, s, _ = image.shape
    if d.brightness < 0:  # towards night
        image.mul_(1 + 0.8 * d.brightness)
    elif d.brightness > 0:  # over-exposure: towards white
        image.lerp_(torch.ones(()), 0.7 * d.brightness)
    if d.contrast:
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image.lerp_(mean.expand_as(image), 0.8 * d.contrast)
    if d.cast:  # sodium-lamp orange
        image.lerp_(torch.tensor([0.9, 0.55, 0.1]).view(1, 3, 1, 1).expand_as(image), 0.6 * d.cast)
    if d.rain:  # bright diagonal streaks over a darkened scene
        phase = torch.rand(b, 1, 1, generator=g) * 2 * math.pi
        streak = (torch.sin((u * 2.5 + v) * 14 + phase) > 1 - 0.25 * d.rain).unsqueeze(1).float()
        image.mul_(1 - 0.25 * d.rain).lerp_(torch.full((), 0.75), 0.5 * streak)
    if d.snow:  # white flakes and a milky veil
        flakes = (torch.rand(b, 1, s, s, generator=g) < 0.12 * d.snow).float()
        image.lerp_(torch.ones(()).expand_as(image), flakes).lerp_(torch.full((), 0.85), 0.3 * d.snow)
    if d.fog:  # denser further up the image, i.e. further from the camera
        density = d.fog * (0.55 + 0.3 * (1 - v.unsqueeze(1)) / 2)  # (1, 1, S, 1)
        image.lerp_(torch.full((), 0.78).expand_as(image), density.expand_as(image))
    noise = torch.rand(b, 1, s, s, generator=g).sub_(0.5).mul_(0.1)  # luminance sensor noise, uniform, std 0.029
    return image.add_(noise).clamp_(0, 1)
