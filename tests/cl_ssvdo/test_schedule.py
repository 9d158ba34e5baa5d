"""Budget schedules: forms, per-group resolution, counts, and the validation errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo import budget
from cl_ssvdo.schedule import BudgetSchedule, GroupSetting, ScheduleError

# The ci model's feed-forward layers: 2 blocks x 2 macaron FFNs x (up 96->384, down 384->96).
LAYERS = [
    (f"enc.layers.{i}.ffn_module{j}.1.ffn.{k}", *shape)
    for i in range(2)
    for j in (1, 2)
    for k, shape in ((0, (384, 96)), (3, (96, 384)))
]
GROUPS = {"up": "*ffn.0", "down": "*ffn.3"}


def test_constant_explicit_counts_and_outer_clipping() -> None:
    s = BudgetSchedule.constant(
        {"up": {"inner_ratio": 0.5, "outer_rank": 8}, "down": {"inner_ratio": 0.25}}, GROUPS
    )
    for exp in (0, 5, 100):
        res = s.resolve(exp, LAYERS)
        for r in res:
            up = r.name.endswith("ffn.0")
            assert r.group == ("up" if up else "down")
            assert r.inner_rank == (48 if up else 24)
            assert r.outer_rank == (8 if up else 0)
            assert r.trainable == budget.ssvdo_params(
                r.out_features, r.in_features, r.inner_ratio, r.outer_rank
            )
    # outer rank beyond the room (min(r, m - n) = 96) is clipped; down-projections have none
    s = BudgetSchedule.constant({"inner_ratio": 0.0, "outer_rank": 500})
    res = s.resolve(0, LAYERS)
    assert {r.outer_rank for r in res if r.name.endswith("ffn.0")} == {96}
    assert {r.outer_rank for r in res if r.name.endswith("ffn.3")} == {0}
    assert all(r.outer_rank == 0 for r in s.resolve(0, LAYERS, outer=False))


def test_per_experience_list_and_stream_length() -> None:
    s = BudgetSchedule.per_experience(
        [{"inner_ratio": 0.5, "outer_rank": 4}, {"inner_ratio": 0.25}]
    )
    assert s.length == 2
    assert [r.inner_rank for r in s.resolve(1, LAYERS)][:1] == [24]
    s.validate(2, LAYERS)
    with pytest.raises(
        ScheduleError, match="the schedule has 2 entries but the stream has 3 experiences"
    ):
        s.validate(3, LAYERS)
    with pytest.raises(ScheduleError, match="stream has 3"):
        s.resolve(2, LAYERS)


def test_decaying_inner_ratio_and_budget() -> None:
    s = BudgetSchedule.decaying({"inner_ratio": 0.5, "outer_rank": 8}, factor=0.5)
    assert [s.resolve(i, LAYERS)[0].inner_rank for i in range(4)] == [48, 24, 12, 6]
    assert {s.resolve(i, LAYERS)[0].outer_rank for i in range(4)} == {8}  # only p decays
    s = BudgetSchedule.decaying({"inner_ratio": 0.5, "outer_rank": 8}, factor={"outer_rank": 0.5})
    assert [s.resolve(i, LAYERS)[0].outer_rank for i in range(4)] == [8, 4, 2, 1]
    b = BudgetSchedule.decaying({"budget": 20000, "inner_share": 0.4}, factor=0.5)
    totals = [b.total(i, LAYERS) for i in range(3)]
    assert (
        all(t <= 20000 * 0.5**i for i, t in enumerate(totals)) and totals[0] > totals[1] > totals[2]
    )
    # a budget decaying below the smallest outer step fails, naming the experience
    with pytest.raises(
        ScheduleError,
        match=r"experiences\[6\]\.all\.budget: the outer part 187 .* below the smallest outer setting",
    ):
        b.validate(7, LAYERS)


def test_budget_form_uses_the_allocator() -> None:
    s = BudgetSchedule.constant(
        {"up": {"budget": 6000, "inner_share": 0.5}, "down": {"budget": 3000, "inner_share": 1.0}},
        GROUPS,
    )
    res = s.resolve(0, LAYERS)
    up = [r for r in res if r.group == "up"]
    down = [r for r in res if r.group == "down"]
    alloc = budget.allocate([(384, 96)] * 4, 6000, 0.5)
    assert [(r.inner_ratio, r.outer_rank) for r in up] == alloc
    assert sum(r.trainable for r in up) <= 6000 and sum(r.trainable for r in down) <= 3000
    assert all(r.outer_rank == 0 for r in down)
    # outer=False (SSVD) gives the whole budget to the inner part
    inner_only = s.resolve(0, LAYERS, outer=False)
    assert all(r.outer_rank == 0 for r in inner_only)
    assert sum(r.trainable for r in inner_only if r.group == "up") > sum(
        r.inner_rank * (r.inner_rank + 1) // 2 for r in up
    )


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(min_value=300, max_value=200_000), share=st.floats(min_value=0.0, max_value=1.0)
)
def test_budget_never_exceeded(b: int, share: float) -> None:
    s = BudgetSchedule.constant({"budget": b, "inner_share": share})
    try:
        total = s.total(0, LAYERS)
    except ScheduleError as err:  # only the documented reason: outer part below one outer step
        assert "below the smallest outer setting" in str(err)
        assert (1 - share) * b < 289
        return
    assert 0 < total <= b


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "groups": GROUPS,
                "constant": {"up": {"inner_ratio": 0.5}, "middle": {"inner_ratio": 0.5}},
            },
            "unknown group 'middle'",
        ),
        (
            {"groups": GROUPS, "constant": {"up": {"inner_ratio": 0.5}}},
            r"no setting for group\(s\) \['down'\]",
        ),
        (
            {"groups": GROUPS, "constant": {"inner_ratio": 0.5}},
            "a bare setting needs a single group",
        ),
        (
            {"constant": {"inner_ratio": 1.5}},
            r"schedule.experiences\[0\].all.inner_ratio: must be a number in \[0, 1\]",
        ),
        ({"constant": {"inner_ratio": 0.5, "budget": 10}}, "not both"),
        ({"constant": {"budget": 10}}, "needs both budget and inner_share"),
        ({"constant": {"budget": 0, "inner_share": 1.0}}, r"budget: must be an int >= 1"),
        ({"constant": {"inner_ratio": 0.5, "outer_rank": -1}}, "outer_rank: must be an int >= 0"),
        ({"constant": {"inner_ratio": 0.5, "rank": 2}}, r"unknown field\(s\) \['rank'\]"),
        ({"per_experience": []}, "at least one experience"),
        (
            {"constant": {"inner_ratio": 0.5}, "per_experience": [{"inner_ratio": 0.5}]},
            "exactly one of",
        ),
        (
            {"decaying": {"start": {"inner_ratio": 0.5}, "factor": -1}},
            "factor must be a number > 0",
        ),
        (
            {"decaying": {"start": {"inner_ratio": 0.5}, "factor": {"rank": 0.5}}},
            r"decay.rank: unknown field",
        ),
        ({"constant": {"inner_ratio": 0.5}, "budget": 3}, r"unknown key\(s\) \['budget'\]"),
    ],
)
def test_config_errors_name_the_field(data, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        BudgetSchedule.from_dict(data)


def test_group_coverage_errors() -> None:
    s = BudgetSchedule.constant({"up": {"inner_ratio": 0.5}}, {"up": "*ffn.0"})
    with pytest.raises(
        ScheduleError, match=r"target layer 'enc.layers.0.ffn_module1.1.ffn.3' is in no group"
    ):
        s.resolve(0, LAYERS)
    s = BudgetSchedule.constant(
        {"a": {"inner_ratio": 0.5}, "b": {"inner_ratio": 0.5}}, {"a": "*ffn.*", "b": "*ffn.0"}
    )
    with pytest.raises(ScheduleError, match=r"is in several groups \['a', 'b'\]"):
        s.resolve(0, LAYERS)
    s = BudgetSchedule.constant(
        {"low": {"inner_ratio": 0.5}, "high": {"inner_ratio": 0.1}, "none": {"inner_ratio": 0.1}},
        {"low": "enc.layers.0.*", "high": "enc.layers.1.*", "none": "enc.layers.7.*"},
    )
    with pytest.raises(
        ScheduleError, match=r"groups.none: patterns \['enc.layers.7.\*'\] match none"
    ):
        s.resolve(0, LAYERS)


def test_lower_vs_upper_blocks_and_round_trip() -> None:
    data = {
        "groups": {"lower": ["enc.layers.0.*"], "upper": ["enc.layers.1.*"]},
        "per_experience": [
            {
                "lower": {"inner_ratio": 0.5, "outer_rank": 2},
                "upper": {"budget": 5000, "inner_share": 0.5},
            },
            {
                "lower": {"inner_ratio": 0.125, "outer_rank": 0},
                "upper": {"inner_ratio": 0.5, "outer_rank": 4},
            },
        ],
    }
    s = BudgetSchedule.from_dict(data)
    assert BudgetSchedule.from_dict(s.to_dict()).to_dict() == s.to_dict()
    res = s.resolve(0, LAYERS)
    assert {r.group for r in res[:4]} == {"lower"} and {r.group for r in res[4:]} == {"upper"}
    assert sum(r.trainable for r in res[4:]) <= 5000
    d = BudgetSchedule.decaying({"inner_ratio": 0.5}, factor=0.5)
    assert BudgetSchedule.from_dict(d.to_dict()).settings_for(2) == d.settings_for(2)
    assert GroupSetting.parse({"inner_ratio": 1}, "x") == GroupSetting(
        inner_ratio=1.0, outer_rank=0
    )


def test_subspace_per_group_and_experience() -> None:
    data = {
        "groups": GROUPS,
        "per_experience": [
            {
                "up": {"inner_ratio": 0.25, "outer_rank": 4, "subspace": "tail"},
                "down": {"inner_ratio": 0.25},
            },
            {
                "up": {"budget": 6000, "inner_share": 0.5, "subspace": "auto"},
                "down": {"inner_ratio": 0.25, "subspace": "top"},
            },
        ],
    }
    s = BudgetSchedule.from_dict(data)
    first, second = s.resolve(0, LAYERS), s.resolve(1, LAYERS)
    assert {(r.group, r.subspace) for r in first} == {("up", "tail"), ("down", None)}
    assert {(r.group, r.subspace) for r in second} == {("up", "auto"), ("down", "top")}
    # the subspace does not change the counts, and survives a round trip through to_dict
    plain = BudgetSchedule.constant(
        {"up": {"inner_ratio": 0.25, "outer_rank": 4}, "down": {"inner_ratio": 0.25}}, GROUPS
    )
    assert [r.trainable for r in first] == [r.trainable for r in plain.resolve(0, LAYERS)]
    assert BudgetSchedule.from_dict(s.to_dict()).to_dict() == s.to_dict()
    assert s.to_dict()["per_experience"][0]["up"]["subspace"] == "tail"
    # a decaying schedule keeps the subspace at every experience (it is not a scalable field)
    d = BudgetSchedule.decaying({"inner_ratio": 0.5, "subspace": "tail"}, factor=0.5)
    assert [d.resolve(i, LAYERS)[0].subspace for i in range(3)] == ["tail"] * 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"constant": {"inner_ratio": 0.5, "subspace": "middle"}},
            r"all.subspace: must be one of \['top', 'tail', 'auto'\]",
        ),
        (
            {
                "decaying": {
                    "start": {"inner_ratio": 0.5, "subspace": "tail"},
                    "factor": {"subspace": 0.5},
                }
            },
            r"decay.subspace: unknown field",
        ),
        ({"constant": {"subspace": "tail"}}, "needs inner_ratio"),
    ],
)
def test_subspace_errors_name_the_field(data, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        BudgetSchedule.from_dict(data)


def test_inner_outer_share_moves_over_experiences() -> None:
    """The budget's inner/outer split can change per experience (per_experience) or drift
    (decaying with an inner_share factor): the outer part of the count follows it."""
    layers = [row for row in LAYERS if row[0].endswith("ffn.0")]

    def outer_params(s: BudgetSchedule, i: int) -> int:
        return sum(r.outer_rank * (r.out_features - r.in_features) for r in s.resolve(i, layers))

    moving = BudgetSchedule.per_experience(
        [{"budget": 20000, "inner_share": share} for share in (0.2, 0.5, 1.0)]
    )
    outer = [outer_params(moving, i) for i in range(3)]
    assert outer[0] > outer[1] > outer[2] == 0
    assert all(moving.total(i, layers) <= 20000 for i in range(3))
    drifting = BudgetSchedule.decaying(
        {"budget": 20000, "inner_share": 0.25}, factor={"inner_share": 2.0}
    )
    assert [drifting.settings_for(i)["all"].inner_share for i in range(4)] == [0.25, 0.5, 1.0, 1.0]
    outer = [outer_params(drifting, i) for i in range(4)]
    assert outer[0] > outer[1] > outer[2] == outer[3] == 0


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 96), st.integers(1, 96)), min_size=1, max_size=4),
    p=st.floats(0.0, 1.0),
    outer=st.integers(0, 40),
)
def test_group_setting_resolves_like_a_one_group_schedule(shapes, p: float, outer: int) -> None:
    """``schedule_setting.resolve_group`` (one group's setting on its layers) is what the
    schedule resolves to, layer by layer, with the counts of ``cl_ssvdo.budget``."""
    from cl_ssvdo import schedule_setting

    layers = [(f"l{i}", m, n) for i, (m, n) in enumerate(shapes)]
    setting = schedule_setting.GroupSetting.parse({"inner_ratio": p, "outer_rank": outer}, "g")
    direct = schedule_setting.resolve_group(setting, layers, True, "g", "all")
    assert direct == BudgetSchedule.constant(setting.to_dict()).resolve(0, layers)
    for r, (_, m, n) in zip(direct, layers, strict=True):
        assert r.outer_rank == budget.effective_outer_rank(m, n, outer) <= max(m - n, 0)
        assert r.trainable == budget.ssvdo_params(m, n, p, r.outer_rank)
    # The schedule module re-exports the setting types: one class, not a copy.
    assert ScheduleError is schedule_setting.ScheduleError
    assert GroupSetting is schedule_setting.GroupSetting


def test_groups_take_the_one_target_syntax_globs_and_peft_suffixes() -> None:
    """A group pattern is matched like adapter targets: ``"ffn.0"`` (peft's suffix rule)
    selects the same layers as the glob ``"*.ffn.0"``, and neither selects ``ffn.3`` (which the
    suffix pattern ``"ffn.3"`` groups)."""
    names = ["enc.layers.0.ffn.0", "enc.layers.0.ffn.3", "enc.layers.1.ffn.0"]
    layers = [(n, 64, 16) for n in names]
    for pattern in ("ffn.0", "*.ffn.0"):
        schedule = BudgetSchedule.from_dict(
            {
                "groups": {"up": pattern, "rest": "ffn.3"},
                "constant": {
                    "up": {"inner_ratio": 0.5, "outer_rank": 2},
                    "rest": {"inner_ratio": 0.25, "outer_rank": 0},
                },
            }
        )
        settings = {s.name: s for s in schedule.resolve(0, layers)}
        assert [settings[n].group for n in names] == ["up", "rest", "up"]
