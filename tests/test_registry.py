"""kgan.registry.Registry: names, aliases and class names; Keras' `get` semantics; (de)serialising
by `get_config` or through keras.saving."""

import pytest

from kgan import losses
from kgan.registry import Registry


class Thing:
    def __init__(self, size=1):
        self.size = size

    def get_config(self):
        return {"size": self.size}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _registry():
    registry = Registry("thing", base=Thing)
    registry.register("small", aliases=("s",))(Thing)
    return registry


def test_names_aliases_and_class_names_are_accepted_and_only_names_listed():
    registry = _registry()
    assert registry.names() == ("small",)
    assert registry.lookup("small") is registry.lookup("s") is registry.lookup("Thing") is Thing
    with pytest.raises(ValueError, match="unknown thing 'big': choose one of small"):
        registry.lookup("big")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("small")(type("Other", (), {}))


def test_get_has_keras_semantics():
    registry = _registry()
    thing = Thing(3)
    assert registry.get(thing) is thing
    assert registry.get("s").size == 1 and registry.get(Thing).size == 1
    assert registry.get({"class_name": "Thing", "config": {"size": 2}}).size == 2
    assert registry.get(None, allow_none=True) is None
    for bad in (None, "big", 3, {"class_name": "Other"}, object()):
        with pytest.raises(ValueError, match="Could not interpret thing identifier"):
            registry.get(bad)


def test_serialize_round_trips_with_get_config_or_keras_saving():
    registry = _registry()
    assert registry.serialize(Thing(4)) == {"class_name": "Thing", "config": {"size": 4}}
    assert registry.deserialize(registry.serialize(Thing(4))).size == 4
    assert registry.serialize(None) is None
    loss = losses.Minkowski(p=2.0)
    config = losses.LOSS_REGISTRY.serialize(loss)
    assert config["registered_name"] == "kgan>Minkowski"  # keras.saving's format
    assert losses.LOSS_REGISTRY.deserialize(config) == loss
    assert losses.LOSS_REGISTRY.deserialize({"class_name": "Minkowski", "config": {"p": 2.0}}) == loss
