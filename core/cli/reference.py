"""``credenza config reference`` and ``credenza config schema``: every setting, from the
declarations the code reads them through (:mod:`credenza.settings`)."""

from __future__ import annotations

import json
from typing import Any

import click

from credenza.config import CoreSettings, ServerSettings
from credenza.loader import installed_plugins
from credenza.settings import describe, json_schema

DISTRIBUTION = "credenza"


def declared_tables(builtin_only: bool = False) -> list[tuple[str, type | None, str]]:
    """(table, its settings class or None, what it is) for the core, the server, each built-in
    API family and each installed plugin (only credenza's own with ``builtin_only``)."""
    from credenza.wsgi.app import BUILTIN_ROUTE_MODULES  # the server's, only when asked

    tables: list[tuple[str, type | None, str]] = [
        ("credenza", CoreSettings, "The core"),
        ("server", ServerSettings, "credenza serve"),
    ]
    families = dict.fromkeys(route.family for module in BUILTIN_ROUTE_MODULES
                             for route in module.ROUTES)
    tables.extend((f"api.{family.name}", family.settings, family.description)
                  for family in families if family.settings is not None)
    for info in installed_plugins():
        if builtin_only and info.distribution != DISTRIBUTION:
            continue
        where = f"{info.distribution} {info.version}" if info.distribution else info.target
        tables.append((f"plugins.{info.name}", info.settings, f"plugin {info.name} ({where})"))
    return tables


def _cell(row: dict[str, Any]) -> tuple[str, str]:
    kind = row["type"]
    if "choices" in row:
        kind += ": " + ", ".join(f"`{choice}`" for choice in row["choices"])
    if "min" in row or "max" in row:
        kind += f" {row.get('min', '')}..{row.get('max', '')}"
    default = row["default"]
    shown = "" if default is None else f"`{json.dumps(default)}`" \
        if not isinstance(default, str) else f"`{default}`" if default != "required" \
        else "required"
    return kind, shown


def markdown(tables: list[tuple[str, type | None, str]]) -> str:
    """The reference as Markdown: a table of keys per configuration table."""
    parts = []
    for name, cls, what in tables:
        parts.append(f"## `[{name}]`\n\n{what}.\n")
        if cls is None:
            parts.append("No settings declared.\n")
            continue
        lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
        for row in describe(cls):
            kind, default = _cell(row)
            lines.append(f"| `{row['key']}` | {kind} | {default} | {row['meaning']} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def schema(tables: list[tuple[str, type | None, str]]) -> dict[str, Any]:
    """A JSON Schema (2020-12) of the whole configuration file."""
    properties: dict[str, Any] = {}
    api: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    for name, cls, what in tables:
        table = json_schema(cls) if cls is not None else {"type": "object"}
        table["description"] = what
        group, _, member = name.partition(".")
        {"api": api, "plugins": plugins}.get(group, properties)[member or group] = table
    properties["api"] = {"type": "object", "properties": api, "additionalProperties": False}
    # a plugin installed later declares its own table: others are allowed
    properties["plugins"] = {"type": "object", "properties": plugins}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "credenza configuration", "type": "object", "properties": properties,
            "additionalProperties": False}


@click.command("reference")
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md",
              show_default=True)
def reference_command(name: str | None, fmt: str) -> None:
    """Every setting: key, type, default, allowed values, meaning. NAME picks one table
    (server, api.ica, plugins.ldap or just ldap)."""
    tables = declared_tables()
    if name is not None:
        wanted = {name, f"plugins.{name}", f"api.{name}"}
        tables = [table for table in tables if table[0] in wanted]
        if not tables:
            known = ", ".join(table[0] for table in declared_tables())
            raise click.BadParameter(f"no table {name!r} (known: {known})", param_hint="NAME")
    if fmt == "json":
        click.echo(json.dumps([{"table": table, "meaning": what,
                                "settings": describe(cls) if cls else []}
                               for table, cls, what in tables], indent=2))
    else:
        click.echo(markdown(tables), nl=False)


@click.command("schema")
@click.option("--builtin-only", is_flag=True, help="Only credenza's own plugins.")
def schema_command(builtin_only: bool) -> None:
    """A JSON Schema of the configuration file, for editors (docs/credenza.schema.json)."""
    click.echo(json.dumps(schema(declared_tables(builtin_only)), indent=2))
