"""Light records, for the modules a guarded process imports: ``dataclasses`` without its cost.

``import dataclasses`` costs a process ~1.4 MB RSS (it loads ``inspect``,
``ast``, ``dis`` and ``tokenize``), and the runtime inside a user's app
must stay small. :func:`record` and :func:`frozen` give a class what
``@dataclass(slots=True)`` and ``@dataclass(frozen=True, slots=True)`` give
it: ``__slots__``; an ``__init__`` taking the annotated fields in order,
with their defaults and ``field(default_factory=...)``; ``__repr__``;
``__eq__`` (same class, equal fields); ``__match_args__``; pickling and
copying; and for :func:`frozen` a ``__hash__`` over the fields and no
assignment (:class:`FrozenError`, an ``AttributeError`` like
``dataclasses.FrozenInstanceError``). :func:`replace` and :func:`asdict`
(shallow) stand in for their ``dataclasses`` namesakes. mypy checks
records as dataclasses (``dataclass_transform``).

Not supported (refused with ``TypeError`` where it can be seen): a record
inheriting from a record, ``ClassVar`` fields, ordering, ``__post_init__``,
and methods that call ``super()`` without arguments.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs ~0.5 MB; mypy reads the guarded imports
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_kw: object) -> Callable[[T], T]:
        return lambda f: f


__all__ = ["FrozenError", "asdict", "field", "fields", "frozen", "record", "replace"]

_FIELDS = "__record_fields__"


class FrozenError(AttributeError):
    """Raised on assigning to, or deleting, a field of a :func:`frozen` record."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made afresh for each instance (``default_factory()``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


def fields(cls_or_obj: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in order."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    names = getattr(cls, _FIELDS, None)
    if names is None:
        raise TypeError(f"{cls.__name__} is not a record")
    return names  # type: ignore[no-any-return]


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of record ``obj`` with ``changes`` (field names to new values)."""
    kwargs = {name: getattr(obj, name) for name in fields(obj)}
    kwargs.update(changes)
    return type(obj)(**kwargs)


def asdict(obj: object) -> dict[str, Any]:
    """The fields of record ``obj`` as a dict (shallow: values are not copied or converted)."""
    return {name: getattr(obj, name) for name in fields(obj)}


def _getstate(self: object) -> tuple[object, ...]:
    return tuple(getattr(self, name) for name in getattr(type(self), _FIELDS))


def _setstate(self: object, state: tuple[object, ...]) -> None:
    for name, value in zip(getattr(type(self), _FIELDS), state, strict=True):
        object.__setattr__(self, name, value)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _build(cls: type[T], is_frozen: bool) -> type[T]:
    for base in cls.__mro__[1:]:
        if _FIELDS in base.__dict__:
            raise TypeError(f"{cls.__name__}: a record cannot inherit from record {base.__name__}")
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: records have no __post_init__")
    annotations = cls.__annotations__  # the class's own (3.10+); inspect would cost ~1 MB
    names = tuple(annotations)
    ns = {k: v for k, v in cls.__dict__.items() if k not in names}
    for key in ("__dict__", "__weakref__"):
        ns.pop(key, None)
    for value in ns.values():
        code = getattr(value, "__code__", None)
        if code is not None and "__class__" in code.co_freevars:
            raise TypeError(f"{cls.__name__}: use super(Class, self) in a record's methods")
    params, body = [], []
    env: dict[str, object] = {"_MISSING": _FACTORY_MISSING, "_set": object.__setattr__}
    seen_default = False
    for name in names:
        annotation = annotations[name]
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            raise TypeError(f"{cls.__name__}.{name}: records have no ClassVar fields")
        if name not in cls.__dict__:
            if seen_default:
                raise TypeError(f"{cls.__name__}: field {name!r} without a default after one with")
            params.append(name)
            value = name
        elif isinstance(cls.__dict__[name], _Factory):
            seen_default = True
            env[f"_f_{name}"] = cls.__dict__[name].make
            params.append(f"{name}=_MISSING")
            value = f"_f_{name}() if {name} is _MISSING else {name}"
        else:
            seen_default = True
            env[f"_d_{name}"] = cls.__dict__[name]
            params.append(f"{name}=_d_{name}")
            value = name
        body.append(f"  _set(self, {name!r}, {value})" if is_frozen else f"  self.{name} = {value}")
    values = "".join(f"self.{n}, " for n in names)
    others = "".join(f"other.{n}, " for n in names)
    fmt = ", ".join(f"{n}={{self.{n}!r}}" for n in names)
    source = (
        f"def __init__(self, {', '.join(params)}) -> None:\n{chr(10).join(body) or '  pass'}\n"
        f"def __repr__(self):\n  return f'{{type(self).__qualname__}}({fmt})'\n"
        "def __eq__(self, other):\n"
        "  if other.__class__ is not self.__class__:\n    return NotImplemented\n"
        f"  return ({values}) == ({others})\n"
        f"def __hash__(self):\n  return hash(({values}))\n"
    )
    exec(source, env)  # as dataclasses does: a plain __init__ is the fastest to call
    # A class body that defines __eq__ gets __hash__ = None from Python: not an explicit hash.
    own_hash = ns.get("__hash__") is not None or ("__eq__" not in ns and "__hash__" in ns)
    for method in ("__init__", "__repr__", "__eq__"):
        function = env[method]
        function.__qualname__ = f"{cls.__qualname__}.{method}"  # type: ignore[attr-defined]
        ns.setdefault(method, function)  # what the class defines itself wins, as in dataclasses
    if not own_hash:  # frozen: hashed by value; mutable and compared by value: unhashable
        ns["__hash__"] = env["__hash__"] if is_frozen else None
    if is_frozen:
        ns["__setattr__"] = _frozen_setattr
        ns["__delattr__"] = _frozen_delattr
    ns["__getstate__"] = _getstate
    ns["__setstate__"] = _setstate
    ns["__slots__"] = names
    ns["__match_args__"] = names
    ns[_FIELDS] = names
    ns["__qualname__"] = cls.__qualname__
    meta: Callable[..., type[T]] = type(cls)  # a new class: __slots__ is read at creation
    return meta(cls.__name__, cls.__bases__, ns)


_FACTORY_MISSING = object()


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a slotted, mutable record (``@dataclass(slots=True)``)."""
    return _build(cls, False)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a slotted, frozen, hashable record (``@dataclass(frozen=True, slots=True)``)."""
    return _build(cls, True)
