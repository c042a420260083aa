import pytest
import torch

from edgetune.data.scenes import (
    CHUNK,
    CLEAR,
    MAX_CLASSES,
    MAX_FINE_CLASSES,
    Domain,
    SceneSpec,
    apply_domain,
    class_attributes,
    domain_stream,
    render_scenes,
)


@pytest.mark.parametrize("fine", [False, True])
def test_render_is_deterministic_shaped_and_balanced(fine):
    spec = SceneSpec(num_classes=10, image_size=32, fine_grained=fine)
    x, y = render_scenes(spec, CLEAR, 200, seed=3)
    x2, y2 = render_scenes(spec, CLEAR, 200, seed=3)
    x3, _ = render_scenes(spec, CLEAR, 200, seed=4)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, x3)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.bincount(y, minlength=10).tolist() == [20] * 10


def test_render_spans_chunks_and_accepts_labels():
    spec = SceneSpec(num_classes=4, image_size=16)
    labels = torch.arange(CHUNK + 3) % 4
    x, y = render_scenes(spec, CLEAR, CHUNK + 3, seed=0, labels=labels)
    assert x.shape == (CHUNK + 3, 3, 16, 16) and torch.equal(y, labels)
    assert x[CHUNK:].std() > 0.05  # the second chunk is rendered, not left empty
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        render_scenes(spec, CLEAR, 5, labels=torch.tensor([0, 1, 9, 0, 0]))


def test_class_attributes_are_distinct_up_to_the_limits():
    coarse = class_attributes(SceneSpec(num_classes=MAX_CLASSES))
    fine = class_attributes(SceneSpec(num_classes=MAX_FINE_CLASSES, fine_grained=True))
    assert len({tuple(r) for r in coarse.tolist()}) == MAX_CLASSES == 256
    assert len({tuple(r) for r in fine.tolist()}) == MAX_FINE_CLASSES == 128
    # Few classes still differ in every attribute (shape, colour, texture) from their neighbour.
    few = class_attributes(SceneSpec(num_classes=4))
    assert (few[1:] != few[:-1]).all()


def test_classes_are_separable_by_their_mean_image():
    """A nearest-class-mean classifier on clear scenes beats chance by far (the labels carry signal)."""
    spec = SceneSpec(num_classes=8, image_size=32)
    x, y = render_scenes(spec, CLEAR, 1600, seed=0)
    xt, yt = render_scenes(spec, CLEAR, 400, seed=1)
    feats = lambda im: torch.cat([im.mean((2, 3)), im.std((2, 3))], 1)  # noqa: E731
    means = torch.stack([feats(x[y == c]).mean(0) for c in range(8)])
    pred = torch.cdist(feats(xt), means).argmin(1)
    assert (pred == yt).float().mean() > 0.3  # chance is 0.125; colour statistics alone get about 0.44


def test_domains_shift_the_image_statistics():
    spec = SceneSpec(num_classes=10, image_size=32)
    clear, _ = render_scenes(spec, CLEAR, 256, seed=0)
    fog, _ = render_scenes(spec, Domain("fog", fog=1.0), 256, seed=0)
    dark, _ = render_scenes(spec, Domain("dark", brightness=-1.0), 256, seed=0)
    assert fog.std() < 0.6 * clear.std()  # fog washes out contrast
    assert abs(fog.mean() - 0.78) < 0.5 * abs(clear.mean() - 0.78)  # towards the fog colour
    assert dark.mean() < 0.4 * clear.mean()


def test_apply_domain_on_real_images():
    images = torch.rand(5, 3, 24, 24)
    out = apply_domain(images, CLEAR, seed=0)
    assert out.shape == images.shape and (out - images).abs().max() <= 0.05 + 1e-6  # only sensor noise
    assert torch.equal(
        apply_domain(images, Domain("f", fog=0.5), seed=1), apply_domain(images, Domain("f", fog=0.5), 1)
    )
    with pytest.raises(ValueError, match=r"square \(B, 3, S, S\) images, got shape \(3, 24, 24\)"):
        apply_domain(images[0], CLEAR)


def test_domain_stream():
    stream = domain_stream(16, seed=0)
    assert len(stream) == 16 and len({d.name for d in stream}) == 16
    assert all(0.3 <= d.severity <= 1.0 for d in stream)
    assert [d.name for d in domain_stream(16, seed=0)] == [d.name for d in stream]
    kinds = {d.name.split("-")[0] for d in stream}
    assert kinds == {"fog", "rain", "snow", "dark", "bright", "contrast", "cast", "clutter"}


def test_validation_messages():
    with pytest.raises(ValueError, match=r"num_classes=300 is out of range for coarse scenes; use 2..256"):
        SceneSpec(num_classes=300)
    with pytest.raises(ValueError, match=r"Domain 'x': fog=1.5 must lie in \[0, 1\]"):
        Domain("x", fog=1.5)
    with pytest.raises(ValueError, match="background='moon'"):
        Domain("x", background="moon")
