"""The JSON Schema of results.json (schema_version "2"; "1" files still validate) and a validator.

The schema ships inside the package so that users' scripts and our own tests check
the same contract. jsonschema is only a development dependency, so when it is not
installed a small built-in validator covering the keywords the schema uses takes over.
"""

from __future__ import annotations

import json
import logging
import math
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "IMAGE_SCHEMA_VERSION",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "created_now",
    "header",
    "load_schema",
    "validate_results",
]

logger = logging.getLogger(__name__)

#: results.json's schema version: the one constant every audit writes.
SCHEMA_VERSION = "2"
#: normalize.json's and augment_check.json's schema version.
IMAGE_SCHEMA_VERSION = "1"
#: Versions `fairaudit report` renders: "1" (before the statistics revision) and "2".
READABLE_VERSIONS = ("1", "2")
_SCHEMA_FILE = "results.schema.json"


@lru_cache(maxsize=1)
def _schema_text() -> str:
    """Read the schema once; importlib.resources works from a wheel or a zip."""
    return resources.files(__name__).joinpath(_SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """Return the results.json JSON Schema (draft 2020-12) as a fresh dict."""
    return json.loads(_schema_text())


def validate_results(results: dict[str, Any]) -> None:
    """Check a results dict against schema v1; raise ValueError naming the first bad path.

    NaN and infinity are rejected explicitly: JSON Schema's "number" accepts them, but
    results.json must carry null with a reason instead (they are not valid JSON).
    """
    if not isinstance(results, dict):
        raise ValueError(f"results: expected an object, got {type(results).__name__}")
    bad = _find_non_finite(results, "$")
    if bad is not None:
        raise ValueError(
            f"results invalid at {bad}: NaN or infinity is not allowed; use null with a 'reason' instead"
        )
    schema = load_schema()
    try:
        import jsonschema
    except ImportError:
        logger.debug("jsonschema not installed; using the built-in validator")
        error = _MiniValidator(schema).first_error(results)
        if error is not None:
            path, message = error
            raise ValueError(f"results invalid at {path}: {message}") from None
        return
    validator = jsonschema.Draft202012Validator(schema)
    best = jsonschema.exceptions.best_match(validator.iter_errors(results))
    if best is not None:
        path = _format_path(best.absolute_path)
        raise ValueError(f"results invalid at {path}: {best.message}")


def _format_path(parts: Any) -> str:
    """Render a JSON path like $.attributes[0].groups[1].n for error messages."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _find_non_finite(value: Any, path: str) -> str | None:
    """Return the path of the first NaN/inf float, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            sub = _format_path([key]).removeprefix("$")
            found = _find_non_finite(item, path + sub)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


class _MiniValidator:
    """Just the draft 2020-12 keywords results.schema.json uses, for installs without jsonschema."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def first_error(self, instance: Any) -> tuple[str, str] | None:
        return self._check(self.root, instance, [])

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"schema: unsupported $ref {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def _check(self, schema: Any, inst: Any, path: list[Any]) -> tuple[str, str] | None:
        if schema is True or schema is None:
            return None
        if schema is False:
            return _format_path(path), "no value is allowed here"
        where = _format_path(path)
        if "$ref" in schema:
            err = self._check(self._resolve(schema["$ref"]), inst, path)
            if err is not None:
                return err
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_TYPES[t](inst) for t in types):
                return where, f"{inst!r} is not of type {', '.join(map(repr, types))}"
        if "const" in schema and inst != schema["const"]:
            return where, f"{schema['const']!r} was expected"
        if "enum" in schema and inst not in schema["enum"]:
            return where, f"{inst!r} is not one of {schema['enum']!r}"
        if _TYPES["number"](inst):
            if "minimum" in schema and inst < schema["minimum"]:
                return where, f"{inst!r} is less than the minimum of {schema['minimum']!r}"
            if "maximum" in schema and inst > schema["maximum"]:
                return where, f"{inst!r} is greater than the maximum of {schema['maximum']!r}"
            if "exclusiveMinimum" in schema and inst <= schema["exclusiveMinimum"]:
                return where, f"{inst!r} must be greater than {schema['exclusiveMinimum']!r}"
            if "exclusiveMaximum" in schema and inst >= schema["exclusiveMaximum"]:
                return where, f"{inst!r} must be less than {schema['exclusiveMaximum']!r}"
        if isinstance(inst, dict):
            for key in schema.get("required", []):
                if key not in inst:
                    return where, f"{key!r} is a required property"
            props = schema.get("properties", {})
            for key, value in inst.items():
                sub = props.get(key, schema.get("additionalProperties", True))
                err = self._check(sub, value, [*path, key])
                if err is not None:
                    return err
        if isinstance(inst, list):
            if "minItems" in schema and len(inst) < schema["minItems"]:
                return where, f"expected at least {schema['minItems']} items"
            if "maxItems" in schema and len(inst) > schema["maxItems"]:
                return where, f"expected at most {schema['maxItems']} items"
            if "items" in schema:
                for index, value in enumerate(inst):
                    err = self._check(schema["items"], value, [*path, index])
                    if err is not None:
                        return err
        if "oneOf" in schema:
            results = [self._check(sub, inst, path) for sub in schema["oneOf"]]
            ok = [r for r in results if r is None]
            if len(ok) != 1:
                errors = [r for r in results if r is not None]
                if not ok and errors:
                    # The deepest error is the most useful one to show.
                    return max(errors, key=lambda e: len(e[0]))
                return where, "value matches more than one allowed form"
        if "anyOf" in schema:
            results = [self._check(sub, inst, path) for sub in schema["anyOf"]]
            if all(r is not None for r in results):
                return max(results, key=lambda e: len(e[0]))  # type: ignore[arg-type,return-value]
        if "if" in schema and self._check(schema["if"], inst, path) is None:
            err = self._check(schema.get("then", True), inst, path)
            if err is not None:
                return err
        return None


def created_now() -> str:
    """The `created` timestamp of an output: UTC, to the second."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(command: str, *, schema_version: str = SCHEMA_VERSION, kind: str | None = None) -> dict[str, Any]:
    """The first keys of every JSON output (results.json, normalize.json, augment_check.json),
    built in this one place."""
    from fairaudit._version import __version__

    out: dict[str, Any] = {"schema_version": schema_version}
    if kind is not None:
        out["kind"] = kind
    out.update({"fairaudit_version": __version__, "created": created_now(), "command": command})
    return out
