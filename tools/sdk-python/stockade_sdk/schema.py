"""JSON Schema of a tool's arguments, from its function's type hints."""

import inspect
import types
import typing
from typing import Any, Callable, Literal, Union

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def input_schema_of(function: Callable) -> dict:
    """The object schema of `function`'s parameters: every parameter without
    a default is required, and no other property is allowed."""
    hints = typing.get_type_hints(function, include_extras=True)
    properties = {}
    required = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool `{function.__name__}`: *{name} has no schema; name every argument")
        if name not in hints:
            raise TypeError(f"tool `{function.__name__}`: argument `{name}` needs a type hint")
        schema, optional = schema_of(hints[name], f"{function.__name__}.{name}")
        if parameter.default is not parameter.empty:
            if parameter.default is not None:
                schema["default"] = parameter.default
        elif not optional:
            required.append(name)
        properties[name] = schema
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def schema_of(hint: Any, where: str) -> tuple:
    """The schema of one type hint, and whether it admits None."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema, optional = schema_of(args[0], where)
        for extra in args[1:]:
            if isinstance(extra, str):
                schema["description"] = extra
        return schema, optional
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            schema, _ = schema_of(rest[0], where)
            return schema, len(rest) < len(args)
        raise TypeError(f"{where}: unions other than Optional[T] have no schema here; pass input_schema=")
    if origin is Literal:
        return {"enum": list(args)}, False
    if origin in (list, typing.List):
        item = schema_of(args[0], where)[0] if args else {}
        return {"type": "array", "items": item}, False
    if origin in (dict, typing.Dict):
        if args and args[0] is not str:
            raise TypeError(f"{where}: JSON object keys are strings")
        values = schema_of(args[1], where)[0] if args else {}
        return {"type": "object", "additionalProperties": values}, False
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}, False
    if hint is list:
        return {"type": "array"}, False
    if hint is dict:
        return {"type": "object"}, False
    if hint is Any:
        return {}, False
    raise TypeError(f"{where}: type {hint!r} has no schema here; pass input_schema=")
