"""Write Stockade tools in Python.

A tool module declares its tools on a ``Toolbox`` and exports it as the
``Tool`` class that componentize-py looks for::

    from stockade_sdk import Toolbox, InvalidInput

    tools = Toolbox()

    @tools.tool(read_only=True)
    def shout(text: str) -> str:
        "Upper-cases text."
        return text.upper()

    Tool = tools.export()

The input schema comes from the type hints (``str``, ``int``, ``float``,
``bool``, ``list[T]``, ``dict[str, T]``, ``Optional[T]``, ``Literal[...]``,
``Annotated[T, "description"]``) unless ``input_schema=`` gives one. A ``str``
result is text; anything else JSON-encodable is JSON content (and the
structured result when the tool declares ``output_schema=``). Raise
``InvalidInput``, ``Denied`` or ``Failed`` to return an error the client
sees; any other exception is reported as ``Failed`` with its message.

``cargo xtask build`` builds every ``tools/*/app.py`` with componentize-py.
"""

import inspect
import json
from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world.exports import Tool as _ToolExport
from wit_world.imports import host
from wit_world.imports import stockade_tool_types as types

from stockade_sdk.schema import input_schema_of

__all__ = [
    "Toolbox",
    "Output",
    "InvalidInput",
    "Denied",
    "Failed",
    "caller",
    "log",
]


class ToolError(Exception):
    """An error the tool returns to the client, with its message."""


class InvalidInput(ToolError):
    """The arguments were unusable; the message names the field."""


class Denied(ToolError):
    """The tool refused, or the host refused it something."""


class Failed(ToolError):
    """Anything else."""


class Output:
    """A result with several items: text, JSON, images, sounds."""

    def __init__(self) -> None:
        self.items: list = []
        self.structured: Optional[str] = None

    def text(self, text: str) -> "Output":
        """Adds a text item."""
        self.items.append(types.Content_Text(text))
        return self

    def json(self, value: Any) -> "Output":
        """Adds a JSON item."""
        self.items.append(types.Content_Json(json.dumps(value)))
        return self

    def image(self, data: bytes, mime_type: str) -> "Output":
        """Adds an image; the host checks the bytes are of that type."""
        self.items.append(types.Content_Image(types.Media(data, mime_type)))
        return self

    def audio(self, data: bytes, mime_type: str) -> "Output":
        """Adds a sound; the host checks the bytes are of that type."""
        self.items.append(types.Content_Audio(types.Media(data, mime_type)))
        return self

    def structure(self, value: Any) -> "Output":
        """Sets the structured result (must match the output schema)."""
        self.structured = json.dumps(value)
        return self


class _Declared:
    """One declared tool: its descriptor and its function."""

    def __init__(self, function: Callable, descriptor, has_output_schema: bool):
        self.function = function
        self.signature = inspect.signature(function)
        self.descriptor = descriptor
        self.has_output_schema = has_output_schema


class Toolbox:
    """The tools of one component."""

    def __init__(self) -> None:
        self._tools: dict = {}

    def tool(
        self,
        name: Optional[str] = None,
        *,
        description: Optional[str] = None,
        title: Optional[str] = None,
        input_schema: Optional[dict] = None,
        output_schema: Optional[dict] = None,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
    ) -> Callable:
        """Declares the decorated function as a tool."""

        def declare(function: Callable) -> Callable:
            tool_name = name or function.__name__
            text = description or (function.__doc__ or "").strip()
            if not text:
                raise ValueError(f"tool `{tool_name}` needs a description (a docstring)")
            if tool_name in self._tools:
                raise ValueError(f"tool `{tool_name}` is declared twice")
            schema = input_schema or input_schema_of(function)
            descriptor = types.Descriptor(
                tool_name,
                title,
                text,
                json.dumps(schema),
                json.dumps(output_schema) if output_schema else None,
                types.Hints(read_only, destructive, idempotent, open_world),
            )
            self._tools[tool_name] = _Declared(function, descriptor, output_schema is not None)
            return function

        return declare

    def export(self) -> type:
        """The class componentize-py instantiates for `stockade:tool/tool`."""
        toolbox = self

        class Tool(_ToolExport):
            def list(self):
                return [t.descriptor for t in toolbox._tools.values()]

            def call(self, name: str, arguments: str):
                return toolbox._call(name, arguments)

        return Tool

    def _call(self, name: str, arguments: str):
        declared = self._tools.get(name)
        if declared is None:
            raise Err(types.ToolError_InvalidInput(f"no tool named `{name}`"))
        try:
            args = json.loads(arguments)
        except ValueError as err:
            raise Err(types.ToolError_InvalidInput(f"arguments are not JSON: {err}"))
        if not isinstance(args, dict):
            raise Err(types.ToolError_InvalidInput("arguments must be a JSON object"))
        try:
            bound = declared.signature.bind(**args)
        except TypeError as err:
            raise Err(types.ToolError_InvalidInput(str(err)))
        try:
            result = declared.function(*bound.args, **bound.kwargs)
        except InvalidInput as err:
            raise Err(types.ToolError_InvalidInput(str(err)))
        except Denied as err:
            raise Err(types.ToolError_Denied(str(err)))
        except Exception as err:  # the tool's own failure, reported, never raised
            raise Err(types.ToolError_Failed(f"{type(err).__name__}: {err}"))
        return _output(result, declared.has_output_schema)


def _output(result: Any, structured: bool):
    if isinstance(result, Output):
        return types.Output(result.items, result.structured)
    if isinstance(result, str):
        return types.Output([types.Content_Text(result)], None)
    text = json.dumps(result)
    return types.Output([types.Content_Json(text)], text if structured else None)


class Caller:
    """Whoever made this call, as the host authenticated it."""

    def __init__(self, client: str, user: Optional[str], groups: list) -> None:
        self.client = client
        self.user = user
        self.groups = groups


def caller() -> Caller:
    """The verified caller of the current call."""
    identity = host.caller()
    return Caller(identity.client, identity.user, list(identity.groups))


_LEVELS = {
    "trace": host.Level.TRACE,
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "error": host.Level.ERROR,
}


def log(level: str, message: str) -> None:
    """Writes a line to the host's log: level is trace, debug, info, warn or error."""
    host.log(_LEVELS[level], message)
