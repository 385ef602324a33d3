"""The YAML search space and architecture files: loading, validation, round trips, sampling."""

from __future__ import annotations

import copy

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gas_nas.common.errors import SpaceError
from gas_nas.models.space import DEFAULT_SPACE, load_space, sample, sampled_params
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig, load_arch, save_arch

GAS_DOC = yaml.safe_load(DEFAULT_SPACE.read_text())


def _write(tmp_path, doc, name="space.yaml"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_default_space_has_the_paper_budget_and_six_cases():
    space = load_space()
    assert space.name == "gas"
    t = space.train
    assert (t.iterations, t.batch_size, t.d_steps, t.g_steps, t.optimizer, t.lr, t.z_dim) == (2000, 32, 1, 4, "rmsprop", 1e-3, 100)
    assert [c.paper_mb for c in space.cases] == [777, 199, 489, 393, 361, 297]
    assert {a.name for a in space.axes} >= {"conv", "inception", "dense_blocks", "base_filters", "depth", "norm", "activation", "downsample"}
    assert space.cases[0].spec == DiscriminatorSpec()  # the original is the all-defaults spec
    assert space.cases[3].spec.dense_blocks == 4  # the paper's 4 blocks, not the code's 3


def test_axis_defaults_are_the_gas_choices():
    defaults = load_space().defaults()
    gas = DiscriminatorSpec().to_dict()
    assert all(defaults[k] == gas[k] for k in defaults)


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda d: d["axes"].update(kernel=[3, 5]), "axes.kernel: unknown axis; allowed: conv"),
        (lambda d: d.update(colour="red"), "unknown key 'colour'"),
        (lambda d: d["axes"].update(conv={"choices": []}), "axes.conv.choices: expected a non-empty list"),
        (lambda d: d["axes"].update(base_filters={"choices": ["wide"]}), "axes.base_filters.choices: expected an integer"),
        (lambda d: d["axes"].update(depth={"low": 5, "high": 2}), "axes.depth: impossible range"),
        (lambda d: d["axes"].update(dense_blocks={"low": 0, "high": 9}), "axes.dense_blocks: must be between 0 and 4"),
        (lambda d: d["axes"].update(base_filters=[7]), "must be even"),
        (lambda d: d["train"].update(lr="fast"), "train.lr: expected a number"),
        (lambda d: d["train"].update(iterations=0), "train.iterations: must be between"),
        (lambda d: d["seeds"][0]["arch"].update(base_filters=128), "seeds[0].arch.base_filters: 128 is outside the space"),
        (lambda d: d["seeds"][1]["arch"].update(conv="fancy"), "seeds[1].arch.conv: expected one of standard"),
        (lambda d: d["seeds"][2].update(name=d["seeds"][0]["name"]), "duplicate case name"),
        (lambda d: d["search"].update(sampler="magic"), "search.sampler: expected one of"),
    ],
)
def test_bad_space_names_file_and_key_path(tmp_path, mutate, fragment):
    doc = copy.deepcopy(GAS_DOC)
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_bad_yaml_syntax_and_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="not valid YAML at line"):
        load_space(_write(tmp_path, "name: x\naxes: [unclosed: {\n  - a\n"))
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "nope.yaml")


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70), st.floats(allow_nan=True), st.sampled_from(["standard", "batch", "relu", "", "x"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["choices", "low", "high", "default", "arch", "name", "conv", "lr"]), inner, max_size=4)), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_documents_load_or_raise_space_error(tmp_path, data):
    """Random and mutated documents: the loader either accepts them or raises SpaceError, never anything else."""
    doc = copy.deepcopy(GAS_DOC)
    section = data.draw(st.sampled_from(["axes", "train", "quality", "search", "seeds", "name", None]))
    if section is None:
        doc = data.draw(yaml_values)
    elif section == "seeds":
        i = data.draw(st.integers(0, 5))
        doc["seeds"][i]["arch"][data.draw(st.sampled_from(list(DiscriminatorSpec().to_dict())))] = data.draw(yaml_scalars)
    elif isinstance(doc[section], dict):
        key = data.draw(st.sampled_from(list(doc[section]) + ["bogus"]))
        doc[section][key] = data.draw(yaml_values)
    else:
        doc[section] = data.draw(yaml_values)
    path = _write(tmp_path, yaml.safe_dump(doc))
    try:
        space = load_space(path)
    except SpaceError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(space.cases) <= 6


def test_spec_round_trips_through_architecture_yaml(tmp_path):
    spec = DiscriminatorSpec(conv="depthwise_separable", inception=True, dense_blocks=2, depth=2, base_filters=16, norm="spectral", activation="leaky_relu", downsample="strided", growth_rate=8, output="linear")
    train = TrainConfig.from_dict({"recipe": "dcgan", "iterations": 10})
    path = save_arch(tmp_path / "a.yaml", spec, train, {"study": "s", "trial": 3})
    loaded, loaded_train, meta = load_arch(path)
    assert loaded == spec and loaded_train == train and meta == {"study": "s", "trial": 3}
    assert DiscriminatorSpec.from_dict(spec.to_dict()) == spec


def test_dcgan_recipe_sets_adam_but_explicit_keys_win():
    t = TrainConfig.from_dict({"recipe": "dcgan"})
    assert (t.optimizer, t.lr, t.beta1) == ("adam", 2e-4, 0.5)
    assert TrainConfig.from_dict({"recipe": "dcgan", "lr": 1e-4}).lr == 1e-4


def test_bad_architecture_file(tmp_path):
    path = _write(tmp_path, {"format": "gas-nas/arch/v1", "discriminator": {"depth": "deep"}}, "arch.yaml")
    with pytest.raises(SpaceError, match=r"arch.yaml: discriminator.depth: expected an integer"):
        load_arch(path)
    with pytest.raises(SpaceError, match="format"):
        load_arch(_write(tmp_path, {"discriminator": {}}, "noformat.yaml"))


def test_dense_blocks_force_depth():
    assert DiscriminatorSpec.from_dict({"dense_blocks": 3}).depth == 3
    with pytest.raises(SpaceError, match="depth must be 3"):
        DiscriminatorSpec(dense_blocks=3, depth=4)


def test_sampling_stays_inside_the_space_and_enqueued_cases_replay_exactly():
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for case in space.cases:
        study.enqueue_trial(sampled_params(space, case.spec))
    specs = []
    for _ in range(len(space.cases) + 20):
        trial = study.ask()
        specs.append(sample(trial, space))
        study.tell(trial, 0.0)
    assert specs[: len(space.cases)] == [c.spec for c in space.cases]
    for spec in specs:
        for key, value in sampled_params(space, spec).items():
            assert space.axis(key).contains(value)
        assert spec.depth == spec.dense_blocks or spec.dense_blocks == 0
