"""The paper's learning-rate schedules (Sections 3.1.1, 3.1.2) and the sqrt(10) plateau rule."""

import math

import pytest

from dcnn_dd.train.schedules import PAPER_SCHEDULES, Piecewise, Plateau


def test_cifar_schedules_match_section_3_1_1():
    epochs, gr = PAPER_SCHEDULES["cifar"]["gnet_r"]
    assert epochs == 200
    assert [gr(e) for e in (0, 79, 80, 139, 140, 160, 179, 180, 199)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-6, 5e-7, 5e-7])
    epochs, sn = PAPER_SCHEDULES["cifar"]["snets"]
    assert epochs == 120 and [sn(e) for e in (59, 60, 80, 100)] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6])
    epochs, gt = PAPER_SCHEDULES["cifar"]["gnet_t"]
    assert epochs == 80 and [gt(e) for e in (0, 20, 40, 60)] == pytest.approx([1e-4, 1e-5, 1e-6, 5e-7])
    # "the numbers of epochs of training of the strategies are the same": 120 + 80 = 200,
    # and the learning rate is the same for the last 80 epochs up to the 1e-4 start
    assert PAPER_SCHEDULES["cifar"]["snets"][0] + PAPER_SCHEDULES["cifar"]["gnet_t"][0] == 200


def test_food101_schedules_match_section_3_1_2():
    s = PAPER_SCHEDULES["food101"]
    assert s["snets"][0] + s["gnet_t"][0] == s["gnet_r"][0] == 200
    assert [s["gnet_r"][1](e) for e in (119, 120, 180)] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert [s["snets"][1](e) for e in (79, 80)] == pytest.approx([1e-3, 1e-4])
    assert [s["gnet_t"][1](e) for e in (59, 60, 80)] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_piecewise_json_roundtrip_and_errors():
    p = Piecewise(1e-3, ((3, 0.5), (7, 0.1)))
    assert Piecewise.from_json(p.to_json()) == p
    assert Piecewise.from_json(2e-3) == Piecewise(2e-3)
    with pytest.raises(ValueError, match="increasing"):
        Piecewise(1e-3, ((7, 0.1), (3, 0.5)))
    with pytest.raises(ValueError, match="positive"):
        Piecewise(0.0)


def test_plateau_divides_by_sqrt10_after_patience_epochs_without_improvement():
    p = Plateau(patience=5)
    for acc in (0.5, 0.6):
        p = p.update(acc)
    assert p.scale == 1.0 and p.best == 0.6
    for i in range(4):
        p = p.update(0.6)  # equal is no improvement
        assert p.scale == 1.0 and p.wait == i + 1
    p = p.update(0.55)
    assert p.scale == pytest.approx(1 / math.sqrt(10)) and p.wait == 0
    p = p.update(0.61)  # improvement resets the count, keeps the scale
    assert p.best == 0.61 and p.wait == 0 and p.scale == pytest.approx(10 ** -0.5)
    for _ in range(10):
        p = p.update(0.0)
    assert p.scale == pytest.approx(10 ** -1.5)
    assert Plateau.from_json(p.to_json()) == p
    assert Plateau.from_json(Plateau().to_json()) == Plateau()


def test_scaled_schedule_keeps_the_papers_shape():
    from dcnn_dd.train.schedules import PAPER_SCHEDULES, scaled_schedule

    assert scaled_schedule("cifar", "gnet_r", 1.0) == PAPER_SCHEDULES["cifar"]["gnet_r"]
    n, s = scaled_schedule("cifar", "gnet_r", 0.05)
    assert n == 10 and s.milestones == ((4, 0.1), (7, 0.1), (8, 0.1), (9, 0.5))
    assert s(3) == 1e-3 and abs(s(9) - 1e-3 * 1e-3 * 0.5) < 1e-12
    n, s = scaled_schedule("food101", "gnet_t", 0.1)
    assert n == 10 and [e for e, _ in s.milestones] == [6, 8] and s.base == 1e-3
    with pytest.raises(ValueError):
        scaled_schedule("cifar", "snets", 0)
