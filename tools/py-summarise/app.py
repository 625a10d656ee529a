"""Summarise tabular data: a Stockade tool written in Python.

`summarise_csv` and `summarise_json` are pure computation; `fetch_summary`
fetches a CSV document through the host's egress policy; `whoami` shows the
caller the host authenticated.
"""

import csv
import io
import json
import statistics
from typing import Annotated, Optional

from stockade_sdk import Denied, InvalidInput, Toolbox, caller, http, log

tools = Toolbox()

SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {
        "rows": {"type": "integer"},
        "columns": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["rows", "columns"],
}


def summarise_rows(header: list, rows: list) -> dict:
    """Per column: how many values, how many distinct, and for numeric
    columns min, max and mean."""
    columns = []
    for index, name in enumerate(header):
        values = [row[index] for row in rows if index < len(row) and row[index] != ""]
        column = {"name": name, "count": len(values), "distinct": len(set(map(str, values)))}
        numbers = []
        for value in values:
            try:
                numbers.append(float(value))
            except (TypeError, ValueError):
                numbers = None
                break
        if numbers:
            column["min"] = min(numbers)
            column["max"] = max(numbers)
            column["mean"] = round(statistics.fmean(numbers), 6)
        columns.append(column)
    return {"rows": len(rows), "columns": columns}


def parse_csv(text: str, delimiter: str) -> dict:
    if len(delimiter) != 1:
        raise InvalidInput("field `delimiter`: must be one character")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    table = list(reader)
    if not table:
        raise InvalidInput("field `csv`: no header row")
    return summarise_rows(table[0], table[1:])


@tools.tool(read_only=True, idempotent=True, output_schema=SUMMARY_SCHEMA)
def summarise_csv(
    csv: Annotated[str, "CSV text; the first row names the columns"],
    delimiter: Annotated[str, "The field separator"] = ",",
) -> dict:
    """Summarises CSV text: rows, and per column the count, distinct values
    and, for numeric columns, min, max and mean."""
    return parse_csv(csv, delimiter)


@tools.tool(read_only=True, idempotent=True, output_schema=SUMMARY_SCHEMA)
def summarise_json(
    records: Annotated[str, "A JSON array of objects, as text"],
) -> dict:
    """Summarises a JSON array of flat objects the same way as CSV."""
    try:
        data = json.loads(records)
    except ValueError as err:
        raise InvalidInput(f"field `records`: not JSON: {err}")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInput("field `records`: must be an array of objects")
    header = []
    for record in data:
        for key in record:
            if key not in header:
                header.append(key)
    rows = [[record.get(key, "") for key in header] for record in data]
    return summarise_rows(header, rows)


@tools.tool(read_only=True, open_world=True, output_schema=SUMMARY_SCHEMA)
def fetch_summary(
    url: Annotated[str, "An http(s) URL of a CSV document the manifest allows"],
    delimiter: str = ",",
) -> dict:
    """Fetches a CSV document (through the egress policy) and summarises it."""
    try:
        response = http.get(url)
    except http.HttpError as err:
        if err.denied:
            raise Denied(str(err))
        raise
    if response.status != 200:
        raise InvalidInput(f"field `url`: the server answered {response.status}")
    log("info", f"fetched {len(response.body)} bytes")
    return parse_csv(response.text(), delimiter)


@tools.tool(read_only=True)
def whoami(greeting: Optional[str] = None) -> str:
    """Says who the host says is calling."""
    who = caller()
    groups = ", ".join(who.groups) or "none"
    return f"{greeting or 'hello'} {who.client} (user {who.user or '-'}, groups {groups})"


Tool = tools.export()
