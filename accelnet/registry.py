"""One rule for turning a user's identifier into an object (Keras's `get`): an instance
passes through, a name builds the registered class with defaults, a
{"class_name", "config"} dict (what `serialize` writes) builds that class with its
config. Unknown names raise UnknownNameError listing the valid ones."""
from .errors import InvalidArgumentError, unknown_name


def serialize(obj):
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def resolve(kind, identifier, base, by_name, by_class):
    """`identifier` -> instance of `base` (None when it cannot be interpreted at all)."""
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        cls = by_name.get(identifier.lower())
        if cls is None:
            raise unknown_name(kind, identifier, by_name)
        return cls()
    if isinstance(identifier, dict):
        cls = by_class.get(identifier.get("class_name"))
        if cls is None:
            raise unknown_name(kind, identifier.get("class_name"), by_class)
        config = identifier.get("config") or {}
        if not isinstance(config, dict):
            raise InvalidArgumentError(f"The config of {kind} {cls.__name__} must be a dict, got {config!r}.")
        return cls(**config)
    return None
