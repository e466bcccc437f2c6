"""Reading fields of provider objects (pydantic models, dicts, plain objects) cheaply.

``getattr(model, name, None)`` on a pydantic v2 model is slow whenever ``name`` is not a set
field: attribute lookup fails, pydantic's ``__getattr__`` runs and, for an absent name, raises
an ``AttributeError`` that ``getattr`` then swallows (~7k instructions a probe; reading one
OpenAI usage object probes four absent names). A model keeps its fields in ``__dict__`` and its
extra fields (litellm's, OpenAI-compatible servers' additions) in ``__pydantic_extra__``: two
dict lookups answer without raising. Names the class itself defines (properties) still go
through ``getattr``. :func:`fields_of` goes further for records read field after field (usage,
responses): one mapping of all their fields, when the class defines none of the names read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_EMPTY: Mapping[str, Any] = {}

_MISSING: Any = object()
_PYDANTIC, _MAPPING, _OTHER = 1, 2, 3
#: class → how its instances are read; classes are few (the providers' response types).
_KINDS: dict[type, int] = {}
#: pydantic class → the names its class namespaces define (properties, methods, ...)
_CLASS_NAMES: dict[type, frozenset[str]] = {}


def _classify(cls: type) -> int:
    if issubclass(cls, Mapping):
        kind = _MAPPING
    elif "__pydantic_fields__" in dir(cls) and hasattr(cls, "__pydantic_extra__"):  # v2 only
        kind = _PYDANTIC
        _CLASS_NAMES[cls] = frozenset(n for k in cls.__mro__ for n in vars(k))
    else:
        kind = _OTHER
    _KINDS[cls] = kind
    return kind


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, else the attribute ``name`` of ``obj``; None when absent."""
    cls = type(obj)
    if cls is dict:
        return obj.get(name)
    kind = _KINDS.get(cls) or _classify(cls)
    if kind == _PYDANTIC:
        value = obj.__dict__.get(name, _MISSING)
        if value is _MISSING:
            extra = obj.__pydantic_extra__
            if extra and name in extra:
                value = extra[name]
            elif name not in _CLASS_NAMES[cls] and name[0] != "_":
                value = None  # what getattr would give, without the exception
            else:
                value = getattr(obj, name, None)
        return value
    if kind == _MAPPING:
        return obj.get(name)
    return getattr(obj, name, None)


class _AttributeView:
    """``.get(name)`` of an object whose fields are not one plain mapping."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def get(self, name: str, default: Any = None) -> Any:
        value = field(self._obj, name)
        return default if value is None else value


#: (class, names) → whether that pydantic class defines none of the names (so its fields and
#: extras answer for all of them)
_PLAIN: dict[tuple[type, frozenset[str]], bool] = {}


def fields_of(obj: Any, names: frozenset[str]) -> Mapping[str, Any]:
    """The fields of ``obj`` as a read-only mapping, for reading any of ``names`` (a module
    constant) with ``.get``; empty for None. Mappings are returned as they are."""
    cls = type(obj)
    if cls is dict:
        return obj  # type: ignore[no-any-return]
    if obj is None:
        return _EMPTY
    plain = _PLAIN.get((cls, names))
    if plain is None:
        kind = _KINDS.get(cls) or _classify(cls)
        if kind == _MAPPING:
            return obj  # type: ignore[no-any-return]
        plain = _PLAIN[cls, names] = kind == _PYDANTIC and not names & _CLASS_NAMES[cls]
    if plain:
        extra = obj.__pydantic_extra__
        return {**obj.__dict__, **extra} if extra else obj.__dict__  # type: ignore[no-any-return]
    return _AttributeView(obj)  # type: ignore[return-value]
