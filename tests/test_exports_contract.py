"""Components built for Wassette-style hosts, served unmodified: every
exported function is a tool, its input schema derived from the WIT types,
JSON arguments converted to WIT values and results back, a `result` whose
error case comes back is an error result, and the manifest's limits and
grants hold as for any tool. One component is Rust (tools/plain-exports),
one JavaScript (tools/js-plain-exports); neither uses the Stockade SDK.
"""

from __future__ import annotations

import pytest

from conftest import text_of

pytestmark = pytest.mark.anyio

SHAPES = "example_plain-exports_shapes_0_1_0_"


async def test_every_exported_function_is_a_tool_with_a_schema_from_its_wit(deployment):
    deployment.add_tool("plain", "plain_exports")
    async with deployment.client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(listed) == ["add", SHAPES + "area", SHAPES + "bounds", SHAPES + "describe", "repeat"]
    add = listed["add"].input_schema
    assert add["properties"]["a"] == {"type": "integer", "minimum": 0, "maximum": 255}
    assert add["required"] == ["a", "b"] and add["additionalProperties"] is False
    repeat = listed["repeat"].input_schema["properties"]
    assert repeat["c"] == {"type": "string", "minLength": 1, "maxLength": 1}
    assert repeat["times"]["maximum"] == 65535
    area = listed[SHAPES + "area"].input_schema
    assert area["required"] == ["shape"]  # an option may be left out
    assert area["properties"]["unit"]["anyOf"][1] == {"type": "string", "enum": ["square-metres", "square-feet"]}
    cases = [c["properties"]["tag"]["const"] for c in area["properties"]["shape"]["oneOf"]]
    assert cases == ["circle", "rectangle", "polygon", "empty"]
    describe = listed[SHAPES + "describe"].input_schema["properties"]["detail"]
    assert describe["properties"] == {"area": {"type": "boolean"}, "perimeter": {"type": "boolean"}}
    assert listed["add"].output_schema["required"] == ["result"]


async def test_values_convert_both_ways_and_an_error_result_is_an_error(deployment):
    deployment.add_tool("plain", "plain_exports")
    async with deployment.client() as client:
        added = await client.call_tool("add", {"a": 2, "b": 3})
        overflow = await client.call_tool("add", {"a": 200, "b": 100})
        rectangle = await client.call_tool(SHAPES + "area", {"shape": {"tag": "rectangle", "val": [2, 3]}})
        feet = await client.call_tool(
            SHAPES + "area", {"shape": {"tag": "circle", "val": 1}, "unit": "square-feet"}
        )
        bounds = await client.call_tool(SHAPES + "bounds", {"points": [{"x": 1, "y": 2}, {"x": -1, "y": 5}]})
        nothing = await client.call_tool(SHAPES + "bounds", {"points": []})
        described = await client.call_tool(
            SHAPES + "describe", {"shape": {"tag": "rectangle", "val": [2, 3]}, "detail": {"perimeter": True}}
        )
        empty = await client.call_tool(SHAPES + "describe", {"shape": {"tag": "empty"}, "detail": {}})
        repeated = await client.call_tool("repeat", {"c": "é", "times": 3})
    assert not added.is_error and added.structured_content == {"result": {"ok": 5}} and text_of(added) == "5"
    assert overflow.is_error and text_of(overflow) == "200 + 100 does not fit in a u8"
    assert overflow.structured_content is None
    assert rectangle.structured_content == {"result": 6.0}
    assert round(feet.structured_content["result"], 3) == 33.816
    assert bounds.structured_content == {"result": [{"x": -1.0, "y": 2.0}, {"x": 1.0, "y": 5.0}]}
    assert nothing.structured_content == {"result": None}
    assert described.structured_content == {"result": {"ok": "rectangle, perimeter 10.00"}}
    assert empty.is_error and text_of(empty) == "an empty shape has nothing to describe"
    assert repeated.structured_content == {"result": "ééé"}


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("add", {"a": 256, "b": 1}, "/a"),
        ("add", {"a": 1}, "b"),
        ("add", {"a": 1, "b": 2, "c": 3}, "c"),
        ("repeat", {"c": "ab", "times": 1}, "/c"),
        (SHAPES + "area", {"shape": {"tag": "hexagon"}}, "/shape"),
        (SHAPES + "area", {"shape": {"tag": "circle", "val": 1}, "unit": "acres"}, "/unit"),
        (SHAPES + "bounds", {"points": [{"x": 1, "y": 2}, {"x": 1, "z": 2}]}, "/points/1"),
        (SHAPES + "describe", {"shape": {"tag": "empty"}, "detail": {"colour": True}}, "/detail"),
    ],
)
async def test_arguments_that_do_not_fit_the_wit_are_refused_by_field(deployment, tool, arguments, named):
    deployment.add_tool("plain", "plain_exports")
    async with deployment.client() as client:
        refused = await client.call_tool(tool, arguments)
        after = await client.call_tool("add", {"a": 1, "b": 1})
    assert refused.is_error
    assert text_of(refused).startswith("invalid arguments:")
    assert named in text_of(refused)
    assert not after.is_error


async def test_a_javascript_component_for_wassette_runs_under_the_egress_policy(deployment, http_server):
    deployment.add_tool(
        "jsplain",
        "js_plain_exports",
        egress={"allow": [{"url": http_server.url, "private": True}]},
        limits={"fuel": 2_000_000_000, "memory": "64MiB"},
    )
    async with deployment.client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        counted = await client.call_tool("count", {"text": "one two\nthree"})
        fetched = await client.call_tool("fetch-text", {"url": http_server.url + "/hello", "max-chars": 5})
        denied = await client.call_tool("fetch-text", {"url": "http://127.0.0.1:9/"})
        after = await client.call_tool("count", {"text": ""})
    assert listed["fetch-text"].input_schema["required"] == ["url"]
    assert counted.structured_content == {"result": {"characters": 13, "words": 3, "lines": 2}}
    assert fetched.structured_content == {"result": {"ok": "hello"}}
    assert [s["path"] for s in http_server.seen] == ["/hello"]
    assert denied.is_error
    assert "egress denied: http://127.0.0.1:9 is not on the allowlist" in text_of(denied)
    assert after.structured_content == {"result": {"characters": 0, "words": 0, "lines": 0}}


async def test_limits_hold_for_an_exports_component(deployment):
    deployment.add_tool("plain", "plain_exports", limits={"max_output": "1KiB"})
    async with deployment.client() as client:
        flood = await client.call_tool("repeat", {"c": "x", "times": 60000})
        after = await client.call_tool("repeat", {"c": "x", "times": 3})
    assert flood.is_error and text_of(flood) == "limit exceeded: max_output (1024 bytes)"
    assert not after.is_error


def test_check_names_the_exported_tools(deployment):
    deployment.add_tool("plain", "plain_exports")
    checked = deployment.check()
    assert checked.returncode == 0, checked.stderr
    assert "add" in checked.stdout and SHAPES + "bounds" in checked.stdout
