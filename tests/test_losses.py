import math

import pytest
import torch

from confseg.losses import SoftBCEDiceLoss

LN3 = math.log(3.0)
# One image, one class, 2x2 pixels; sigmoid gives p = [0.5, 0.75, 0.25, 0.75].
LOGITS = [0.0, LN3, -LN3, LN3]
P = [0.5, 0.75, 0.25, 0.75]


def t4(values: list[float], requires_grad: bool = False) -> torch.Tensor:
    return (
        torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2).requires_grad_(requires_grad)
    )


def bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def hand_loss(t: list[float], w: list[float], s: float) -> tuple[float, float]:
    """Plain-Python reference: (bce, dice) for one image and one class."""
    b = sum(wi * bce(pi, ti) for pi, ti, wi in zip(P, t, w, strict=True)) / sum(w)
    inter = sum(wi * pi * ti for pi, ti, wi in zip(P, t, w, strict=True))
    p_sum = sum(wi * pi for pi, wi in zip(P, w, strict=True))
    t_sum = sum(wi * ti for ti, wi in zip(t, w, strict=True))
    return b, 1 - (2 * inter + s) / (p_sum + t_sum + s)


def test_hard_target_hand_computed() -> None:
    parts = SoftBCEDiceLoss(smooth=1.0).components(t4(LOGITS), t4([1, 1, 0, 0]))
    expected_bce = (math.log(2) + 2 * math.log(4 / 3) + math.log(4)) / 4
    # I = 0.5 + 0.75 = 1.25, P = 2.25, T = 2: 1 - (2.5 + 1) / (4.25 + 1) = 1/3
    assert parts["bce"].item() == pytest.approx(expected_bce, rel=1e-6)
    assert parts["dice"].item() == pytest.approx(1 / 3, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(expected_bce + 1 / 3, rel=1e-6)
    assert hand_loss([1, 1, 0, 0], [1, 1, 1, 1], 1.0) == pytest.approx((expected_bce, 1 / 3))


def test_soft_target_hand_computed() -> None:
    parts = SoftBCEDiceLoss(smooth=0.0).components(t4(LOGITS), t4([0.6, 0.6, 0, 0]))
    expected_bce = (
        math.log(2) - (0.6 * math.log(0.75) + 0.4 * math.log(0.25)) - math.log(0.75) + math.log(4)
    ) / 4
    # I = 0.6*0.5 + 0.6*0.75 = 0.75, P = 2.25, T = 1.2: 1 - 1.5 / 3.45
    assert parts["bce"].item() == pytest.approx(expected_bce, rel=1e-6)
    assert parts["dice"].item() == pytest.approx(1 - 1.5 / 3.45, rel=1e-6)


def test_loss_factors() -> None:
    args = (t4(LOGITS), t4([0.6, 0.6, 0, 0]))
    parts = SoftBCEDiceLoss().components(*args)
    loss = SoftBCEDiceLoss(bce_weight=0.5, dice_weight=2.0)(*args)
    assert loss.item() == pytest.approx(0.5 * parts["bce"].item() + 2 * parts["dice"].item())


def test_ignore_band_has_no_effect_and_zero_gradient() -> None:
    target = t4([1, float("nan"), 0, 0])  # the ignored pixel may hold anything
    weight = t4([1, 0, 1, 1])
    loss_fn = SoftBCEDiceLoss(smooth=1.0)
    z = t4(LOGITS, requires_grad=True)
    loss = loss_fn(z, target, weight)
    loss.backward()
    exp_bce = (math.log(2) + math.log(4 / 3) + math.log(4)) / 3
    # I = 0.5, P = 0.5 + 0.25 + 0.75 = 1.5, T = 1: 1 - 2 / 3.5 = 3/7
    assert loss.item() == pytest.approx(exp_bce + 3 / 7, rel=1e-6)
    assert z.grad is not None
    assert z.grad[0, 0, 0, 1].item() == 0.0
    assert torch.all(z.grad.flatten()[[0, 2, 3]] != 0)
    changed = t4([0.0, 25.0, -LN3, LN3])
    assert loss_fn(changed, target, weight).item() == loss.item()


def test_weighted_strategy_weights() -> None:
    # weighted strategy on c = [0.6, 1.0, 0, 0]: target 1 where marked, weight c there, 1 elsewhere
    target, weight = [1.0, 1.0, 0.0, 0.0], [0.6, 1.0, 1.0, 1.0]
    parts = SoftBCEDiceLoss(smooth=1.0).components(t4(LOGITS), t4(target), t4(weight))
    exp_bce = (0.6 * math.log(2) + 2 * math.log(4 / 3) + math.log(4)) / 3.6
    # I = 0.3 + 0.75 = 1.05, P = 2.05, T = 1.6: 1 - 3.1 / 4.65
    assert parts["bce"].item() == pytest.approx(exp_bce, rel=1e-6)
    assert parts["dice"].item() == pytest.approx(1 - 3.1 / 4.65, rel=1e-6)
    assert hand_loss(target, weight, 1.0) == pytest.approx((exp_bce, 1 - 3.1 / 4.65))


def test_bce_gradient_matches_formula() -> None:
    # d/dz [Σ w ℓ / Σ w] = w (p - t) / Σ w
    target, weight = t4([0.6, 1, 0, 0.2]), t4([0.5, 1, 0, 2])
    z = t4(LOGITS, requires_grad=True)
    SoftBCEDiceLoss(dice_weight=0.0)(z, target, weight).backward()
    expected = weight * (torch.tensor(P).reshape(1, 1, 2, 2) - target) / weight.sum()
    assert z.grad is not None
    torch.testing.assert_close(z.grad, expected)


def batch_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 3, 3, generator=gen)
    target = torch.rand(2, 2, 3, 3, generator=gen)
    return logits, target


def test_fully_ignored_image_equals_normal_image_alone() -> None:
    logits, target = batch_inputs()
    weight = torch.ones(2, 1, 3, 3)
    weight[1] = 0
    loss_fn = SoftBCEDiceLoss()
    both = loss_fn.components(logits, target, weight)
    alone = loss_fn.components(logits[:1], target[:1], weight[:1])
    for key in ("loss", "bce", "dice"):
        assert both[key].item() == pytest.approx(alone[key].item(), rel=1e-6)
    assert both["dice"].item() > 0


def test_ignored_class_is_left_out_of_dice_mean() -> None:
    logits, target = batch_inputs()
    weight = torch.ones(2, 2, 3, 3)
    weight[0, 1] = 0  # class 1 of image 0 is unlabelled
    loss_fn = SoftBCEDiceLoss()
    dice = loss_fn.components(logits, target, weight)["dice"].item()
    pairs = [
        loss_fn.components(logits[n : n + 1, k : k + 1], target[n : n + 1, k : k + 1])["dice"]
        for n, k in [(0, 0), (1, 0), (1, 1)]
    ]
    assert dice == pytest.approx(sum(p.item() for p in pairs) / 3, rel=1e-6)


def test_fully_ignored_batch_gives_zero_and_finite_grads() -> None:
    logits, target = batch_inputs()
    z = logits.clone().requires_grad_(True)
    for smooth in (0.0, 1.0):
        z.grad = None
        parts = SoftBCEDiceLoss(smooth=smooth).components(z, target, torch.zeros(2, 1, 3, 3))
        parts["loss"].backward()
        assert parts["loss"].item() == 0.0
        assert parts["bce"].item() == 0.0 and parts["dice"].item() == 0.0
        assert z.grad is not None
        assert torch.all(z.grad == 0)


def test_batch_dice_pools_over_images() -> None:
    logits, target = batch_inputs()
    got = SoftBCEDiceLoss(batch_dice=True, smooth=0.0).components(logits, target)["dice"]
    p = torch.sigmoid(logits)
    inter = (p * target).sum((0, 2, 3))
    expected = (1 - 2 * inter / (p.sum((0, 2, 3)) + target.sum((0, 2, 3)))).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bad_shapes_and_options() -> None:
    logits, target = batch_inputs()
    with pytest.raises(ValueError, match="same"):
        SoftBCEDiceLoss()(logits, target[:, :1])
    with pytest.raises(ValueError, match="broadcastable"):
        SoftBCEDiceLoss()(logits, target, torch.ones(2, 1, 2, 2))
    with pytest.raises(ValueError, match=">= 0"):
        SoftBCEDiceLoss(smooth=-1.0)


def test_semimetric_dice_hand_computed_and_equal_on_hard_targets() -> None:
    soft = t4([0.6, 0.6, 0, 0])
    got = SoftBCEDiceLoss(smooth=0.0, dice="semimetric").components(t4(LOGITS), soft)["dice"]
    # |p - t| = 0.1, 0.15, 0.25, 0.75: I = (2.25 + 1.2 - 1.25) / 2 = 1.1; 1 - 2.2 / 3.45
    assert got.item() == pytest.approx(1 - 2.2 / 3.45, rel=1e-6)
    hard, w = t4([1, 1, 0, 0]), t4([1, 0, 1, 1])
    logits = t4(LOGITS, requires_grad=True)
    prod = SoftBCEDiceLoss(dice="product")(logits, hard, w)
    (g_prod,) = torch.autograd.grad(prod, logits)
    semi = SoftBCEDiceLoss(dice="semimetric")(logits, hard, w)
    (g_semi,) = torch.autograd.grad(semi, logits)
    assert semi.item() == pytest.approx(prod.item(), rel=1e-6)
    assert torch.allclose(g_semi, g_prod, atol=1e-7)


def test_semimetric_dice_is_smallest_at_the_soft_target() -> None:
    """The product form prefers a sharpened prediction to the target itself; semimetric not."""
    target = t4([0.3, 0.6, 0.9, 0.1])
    at_target = torch.logit(target)
    sharper = at_target * 3

    def dice(form: str, logits: torch.Tensor) -> float:
        return SoftBCEDiceLoss(smooth=0.0, dice=form).components(logits, target)["dice"].item()

    assert dice("semimetric", at_target) == pytest.approx(0.0, abs=1e-6)
    assert dice("semimetric", sharper) > 0.01
    assert dice("product", sharper) < dice("product", at_target)


def test_dice_forms_match_the_config() -> None:
    from confseg import config, losses

    assert config.DICE_FORMS == losses.DICE_FORMS
    with pytest.raises(ValueError, match="semimetric"):
        SoftBCEDiceLoss(dice="jaccard")
