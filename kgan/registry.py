"""One registry mechanism for everything kgan looks up by name (losses, penalties,
augmentations, metrics): `Registry.register` records a class or function under its names,
`lookup` finds it, `get` turns an identifier (None, a name, a `serialize` dict, a class or an
instance) into an object with Keras' `get` semantics, and `serialize` / `deserialize`
round-trip an object through its `get_config`; `Configurable` is the config base of the small
registered classes. TF-free: `keras` is imported only when a `keras_saving` registry serialises.

A `keras_saving` registry (losses, penalties, augmentations) holds classes that are also
registered with `keras.saving.register_keras_serializable(package="kgan")`, and delegates
(de)serialisation to `keras.saving`: one format, `{"module", "class_name", "config",
"registered_name"}`, whether the object is saved on its own or inside a Keras model's config;
the short `{"class_name": ..., "config": ...}` dict is read as well.

    LOSS_REGISTRY = Registry("loss", base=Loss, keras_saving=True)

    @LOSS_REGISTRY.register("minimax")
    @keras.saving.register_keras_serializable(package="kgan")
    class Minimax(Loss): ...

    LOSS_REGISTRY.get("minimax")                             # Minimax()
    LOSS_REGISTRY.get(LOSS_REGISTRY.serialize(Minimax()))    # an equal Minimax
"""


class Registry:
    """Named classes (or functions) of one kind.

    Args:
        kind: what is registered, for error messages ("loss", "penalty", "metric").
        base: the class every registered class derives from (optional): `get` returns its
            instances, and those of the registered classes, as they are.
        keras_saving: `serialize` / `deserialize` through `keras.saving` (the registered
            classes must be Keras-serialisable); else the `{"class_name", "config"}` dict.
    """

    def __init__(self, kind, base=None, keras_saving=False):
        self.kind = kind
        self.base = base
        self.keras_saving = keras_saving
        self._by_name = {}  # every accepted name (short names, aliases, class names) -> object
        self._names = []  # the short names, in registration order

    def register(self, *names, aliases=()):
        """Decorator: registers the object under `names` (its short names, listed by `names()`),
        `aliases` (accepted, not listed) and, for a class, its class name. Returns the object
        unchanged."""

        def decorate(obj):
            for name in (*names, *aliases, getattr(obj, "__name__", None)):
                if name is None:
                    continue
                if name in self._by_name and self._by_name[name] is not obj:
                    raise ValueError(f"{self.kind} {name!r} is already registered")
                self._by_name[name] = obj
            self._names.extend(n for n in names if n not in self._names)
            return obj

        return decorate

    def names(self):
        """The short names, in registration order."""
        return tuple(self._names)

    def __contains__(self, name):
        return name in self._by_name

    def lookup(self, name):
        """The class or function registered under `name`; ValueError naming the choices."""
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self._names)}") from None

    def get(self, identifier, allow_none=False):
        """An object from an identifier, as Keras' `get` functions: an instance of `base` or of
        a registered class is returned as is; a name or a registered class is made with its
        defaults; a `serialize` dict is deserialised; None is returned if `allow_none`.

        Raises:
            ValueError: `Could not interpret <kind> identifier: ...` for anything else.
        """
        if identifier is None and allow_none:
            return None
        classes = tuple(obj for obj in self._by_name.values() if isinstance(obj, type))
        if isinstance(identifier, (self.base or (), *classes)):
            return identifier
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str) and identifier in self._by_name:
            return self._by_name[identifier]()
        if isinstance(identifier, type) and identifier in classes:
            return identifier()
        raise self._uninterpretable(identifier)

    def serialize(self, obj):
        """The config dict of `obj` (`keras.saving`'s with `keras_saving`, else
        `{"class_name": ..., "config": obj.get_config()}`), or None for None."""
        if obj is None:
            return None
        if self.keras_saving:
            import keras

            return keras.saving.serialize_keras_object(obj)
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """The object `serialize` described; ValueError unless it names a registered class."""
        class_name = config.get("class_name") if isinstance(config, dict) else None
        if not isinstance(class_name, str) or class_name.rpartition(">")[2] not in self._by_name:
            raise self._uninterpretable(config)
        cls = self._by_name[class_name.rpartition(">")[2]]
        if self.keras_saving:
            import keras

            return keras.saving.deserialize_keras_object(config, custom_objects={class_name: cls})
        values = config.get("config") or {}
        return cls.from_config(values) if hasattr(cls, "from_config") else cls(**values)

    def _uninterpretable(self, identifier):
        return ValueError(f"Could not interpret {self.kind} identifier: {identifier!r} "
                          f"(names: {', '.join(self._names)})")


class Configurable:
    """Base of the small registered classes (losses, penalties): `__init__` stores its
    arguments, `get_config()` returns exactly them (override it), `from_config(config)` is
    `cls(**config)`, and the repr shows them."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
