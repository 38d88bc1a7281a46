"""Every choice list lives in kgan.names, and each registry accepts exactly its names: the module
that uses a list holds kgan.names' tuple itself (no second literal), every listed name is
accepted, and an unlisted one is refused with the list in the message."""

import keras
import pytest

from kgan import augment, data, distribute, evaluate, losses, names, networks, penalties
from kgan.errors import UsageError


def test_the_modules_hold_the_names_tuples_not_copies():
    assert distribute.STRATEGIES is names.STRATEGIES
    assert distribute.PRECISIONS is names.PRECISIONS
    assert networks.ARCHS is names.ARCHS
    assert data.NAMES is names.DATASETS
    assert data.MIXTURES is names.MIXTURES
    assert data.NUM_CLASSES is names.NUM_CLASSES
    assert data.IMAGE_SIZES is names.IMAGE_SIZES
    assert losses.MINKOWSKI_ACTIVATIONS is names.MINKOWSKI_ACTIVATIONS
    assert evaluate.MODE_DATASETS is names.MODE_DATASETS
    assert set(evaluate.FEATURE_METRICS) == set(names.METRICS) - {"modes"}


@pytest.mark.parametrize(
    "registry, listed",
    [
        (losses.LOSS_REGISTRY, names.LOSSES),
        (penalties.PENALTY_REGISTRY, names.PENALTIES),
        (augment.AUGMENT_REGISTRY, names.AUGMENTS),
        (evaluate.METRIC_REGISTRY, names.METRICS),
    ],
    ids=["losses", "penalties", "augmentations", "metrics"],
)
def test_each_registry_lists_exactly_the_names(registry, listed):
    assert sorted(registry.names()) == sorted(listed)  # the order of the lists is kgan.names'
    assert all(name in registry for name in listed)
    with pytest.raises(ValueError, match=f"unknown {registry.kind} 'nope'"):
        registry.lookup("nope")


@pytest.mark.parametrize("module, listed, base", [(losses, names.LOSSES, losses.Loss),
                                                 (penalties, names.PENALTIES, penalties.Penalty),
                                                 (augment, names.AUGMENTS, augment.Augment)],
                         ids=["losses", "penalties", "augmentations"])
def test_each_get_makes_every_listed_name_and_refuses_others(module, listed, base):
    for name in listed:
        assert isinstance(module.get(name), base)
    with pytest.raises(ValueError, match="Could not interpret"):
        module.get("nope")


def test_augment_from_flag_takes_the_augment_names():
    assert [type(augment.from_flag(name)) for name in names.AUGMENTS] == [augment.Augment, augment.AdaptiveAugment]
    with pytest.raises(ValueError, match="use diffaugment or ada"):
        augment.from_flag("nope")


def test_networks_take_the_arch_names():
    for arch in names.IMAGE_ARCHS:
        assert networks.attention_resolutions((32, 32, 3), arch)
    with pytest.raises(ValueError, match="PacGAN's MLP pair for 2-D points"):
        networks.attention_resolutions((32, 32, 3), "pacgan")
    with pytest.raises(ValueError, match="choose one of dcgan, resnet, pacgan"):
        networks.attention_resolutions((32, 32, 3), "nope")


def test_metrics_parse_the_metric_names():
    for name in names.METRICS:
        dataset = "ring8" if name == "modes" else "digits"
        assert evaluate.parse_metrics(name, dataset) == (name,)
    with pytest.raises(UsageError, match="unknown metric nope"):
        evaluate.parse_metrics("nope", "digits")


def test_strategies_take_the_strategy_names():
    # devices=0 is refused right after the name is accepted: no strategy is made.
    for name in names.STRATEGIES:
        with pytest.raises(UsageError, match="--devices must be >= 1"):
            distribute.get_strategy(name, devices=0)
    with pytest.raises(UsageError, match="unknown strategy 'nope'"):
        distribute.get_strategy("nope", devices=0)


def test_precisions_take_the_precision_names():
    previous = keras.config.dtype_policy()
    try:
        for name in names.PRECISIONS:
            chosen, _ = distribute.set_precision(name, data_shape=(8, 8, 1))
            assert chosen in names.PRECISIONS and chosen != "auto"
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(UsageError, match="unknown precision 'nope'"):
        distribute.set_precision("nope")


def test_datasets_take_the_dataset_names():
    assert all(data.validate_name(name) == name for name in names.DATASETS)
    assert set(names.MODE_DATASETS) <= set(names.DATASETS) and set(names.NUM_CLASSES) <= set(names.DATASETS)
    with pytest.raises(UsageError, match="unknown dataset 'nope'"):
        data.validate_name("nope")
