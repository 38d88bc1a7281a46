"""One registry mechanism for everything kgan looks up by name (losses, penalties,
augmentations, metrics): `Registry.register` records a class or function under its names,
`lookup` finds it, `get` turns an identifier (a name, a `serialize` dict, or an instance) into
an object, and `serialize` / `deserialize` round-trip an object through its `get_config`
(the `{"class_name", "config"}` layout of `keras.saving`). TF-free.

    LOSSES = Registry("loss", base=Loss)

    @LOSSES.register("minimax")
    class Minimax(Loss): ...

    LOSSES.get("minimax")                      # Minimax()
    LOSSES.get(LOSSES.serialize(Minimax()))    # an equal Minimax
"""


class Registry:
    """Named classes (or functions) of one kind.

    Args:
        kind: what is registered, for error messages ("loss", "penalty", "metric").
        base: the class every registered class derives from; `get` returns its instances as
            they are. None: registered objects are plain callables (e.g. metric functions).
    """

    def __init__(self, kind, base=None):
        self.kind = kind
        self.base = base
        self._by_name = {}  # every accepted name (short names and class names) -> object
        self._names = []  # the short names, in registration order

    def register(self, *names):
        """Decorator: registers the object under `names` (its short names, listed by `names()`)
        and, for a class, its class name. Returns the object unchanged."""

        def decorate(obj):
            for name in (*names, getattr(obj, "__name__", None)):
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
        """An object from an identifier: an instance of `base` (returned as is), a name (the
        class made with its defaults) or a `serialize` dict; None if `allow_none`."""
        if identifier is None and allow_none:
            return None
        if self.base is not None and isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        raise ValueError(f"could not interpret {self.kind} identifier {identifier!r}")

    def serialize(self, obj):
        """`{"class_name": ..., "config": obj.get_config()}`, or None for None."""
        if obj is None:
            return None
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """The object `serialize` described (`cls.from_config(config["config"])`)."""
        if not isinstance(config, dict) or config.get("class_name") not in self._by_name:
            raise ValueError(f"could not interpret {self.kind} identifier {config!r}")
        cls = self._by_name[config["class_name"]]
        values = config.get("config") or {}
        return cls.from_config(values) if hasattr(cls, "from_config") else cls(**values)
