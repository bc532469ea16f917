"""Generate docs/configuration.md from the settings classes in scorer/config.py.

    python hack/configuration_docs.py > docs/configuration.md   # regenerate
    python hack/configuration_docs.py --check                   # exit 1 if it is stale

One table per settings class (the fields it declares itself): the environment variable and its
flag, the type with its limits, the default and the field's description. The classes, their
docstrings and the fields' descriptions are the source; edit them, not the generated file.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from datetime import timedelta
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this tree's scorer, not an installed one

from scorer import config  # noqa: E402 - after the path above

OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = "python hack/configuration_docs.py > docs/configuration.md"

_HEADER = f"""\
# Configuration

<!-- Generated from the settings classes in scorer/config.py by hack/configuration_docs.py:
     edit those, then run `{COMMAND}`.
     tests/unit/test_configuration_docs.py fails when this file is stale. -->

Every setting is an environment variable, or the flag under it; a flag wins over its variable.
A command reads one settings class, which includes the classes it builds on, and fails with
exit 2 (kind `config`) naming each variable that is missing, malformed or contradicts another,
before anything else starts. Values are never echoed in that message.
`python -m scorer <command> --help` lists the same, grouped, for that command.

Identifiers (schema, table and column names) are plain identifiers (`[A-Za-z_][A-Za-z0-9_]*`,
at most 63 characters): they are validated and quoted, never pasted into SQL.
"""

_LIBRARY_VARIABLES = (
    (
        "`MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`",
        "MLflow",
        "credentials for the registry",
    ),
    (
        "`MLFLOW_TRACKING_SERVER_CERT_PATH`",
        "MLflow",
        "the CA bundle that signed the registry's certificate",
    ),
    (
        "`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`,"
        " `MLFLOW_HTTP_REQUEST_TIMEOUT`",
        "MLflow",
        "its HTTP retries; the scorer sets 3, 1 and 60 s when they are unset, so an"
        " unreachable registry fails over in seconds",
    ),
    (
        "`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`",
        "libpq",
        "TLS to PostgreSQL where the URL says nothing (see [Production](production.md))",
    ),
    (
        "`OPENLINEAGE_URL`, `OPENLINEAGE_API_KEY`, `OPENLINEAGE_ENDPOINT`,"
        " `OPENLINEAGE__TRANSPORT__*`, `OPENLINEAGE_CONFIG`",
        "the OpenLineage client",
        "where lineage events go (off when none is set; see [Lineage](lineage.md))",
    ),
    ("`OPENLINEAGE_DISABLED`", "the scorer and the client", "`true` turns the events off"),
    ("`OPENLINEAGE_NAMESPACE`", "the scorer", "the events' job namespace, default `scorer`"),
)
"""Variables the settings classes do not read: (variables, read by, what)."""


def footer() -> str:
    """The variables read by the libraries (and OpenLineage's, which the scorer reads too)."""
    lines = [
        "## Read by the libraries",
        "",
        "Not settings of the scorer: the libraries it uses read these themselves.",
        "",
        "| variable | read by | what |",
        "|---|---|---|",
        *(f"| {names} | {reader} | {what} |" for names, reader, what in _LIBRARY_VARIABLES),
    ]
    return "\n".join(lines) + "\n"


def settings_classes() -> list[type[BaseSettings]]:
    """The settings classes of scorer.config, in the order the module defines them."""
    return [
        value
        for value in vars(config).values()
        if inspect.isclass(value)
        and issubclass(value, BaseSettings)
        and value.__module__ == config.__name__
    ]


def own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields ``cls`` declares itself (not those of the classes it builds on)."""
    inherited: set[str] = set()
    for base in cls.__bases__:
        if issubclass(base, BaseSettings):
            inherited |= set(base.model_fields)
    return {name: info for name, info in cls.model_fields.items() if name not in inherited}


def variables(cls: type[BaseSettings], name: str, info: FieldInfo) -> list[str]:
    """The environment variables a field is read from, first the one to use."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if str(choice).isupper()]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


def type_text(annotation: object) -> str:
    """A type as a reader of the docs says it, with the limits an ``Annotated`` carries."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in args if arg is not type(None))
    if origin is typing.Annotated:
        return ", ".join([type_text(args[0]), *limits(list(args[1:]))])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    names: dict[object, str] = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "boolean",
        SecretStr: "text (secret)",
        timedelta: "duration",
    }
    return names[annotation]


def field_type(info: FieldInfo) -> str:
    """A field's type with the limits kept on the field itself (``ge=``, ``le=``, ...)."""
    return ", ".join([type_text(info.annotation), *limits(list(info.metadata))])


def limits(metadata: list[object]) -> list[str]:
    """Bounds and lengths as ``≥ 1``, ``≤ 64``; nested field infos are unpacked."""
    out: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += limits(list(item.metadata))
        elif isinstance(item, Ge):
            out.append(f"≥ {number(item.ge)}")
        elif isinstance(item, Gt):
            out.append(f"> {number(item.gt)}")
        elif isinstance(item, Le):
            out.append(f"≤ {number(item.le)}")
        elif isinstance(item, Lt):
            out.append(f"< {number(item.lt)}")
        elif isinstance(item, MinLen):
            out.append("not empty" if item.min_length == 1 else f"≥ {item.min_length} characters")
    return out


def number(value: object) -> str:
    """A bound as the docs show it: ``5,000,000``, ``0.25``, ``0``."""
    if isinstance(value, int | float) and float(value).is_integer():
        return f"{int(value):,}"
    return str(value)


def default_text(info: FieldInfo) -> str:
    """The default as the docs show it: required, unset, computed or the value."""
    if info.default_factory is not None:
        return "computed"
    if info.is_required():
        return "**required**"
    if info.default is None or info.default is PydanticUndefined:
        return "unset"
    if isinstance(info.default, bool):
        return f"`{str(info.default).lower()}`"
    if isinstance(info.default, float):
        return f"`{info.default:g}`"
    return f"`{info.default}`"


def cell(text: str) -> str:
    """Text that fits a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def docstring(cls: type) -> str:
    """A class docstring as Markdown: double backquotes become single ones."""
    return inspect.cleandoc(cls.__doc__ or "").replace("``", "`")


def section(cls: type[BaseSettings]) -> str:
    """One class: its docstring, what it builds on, and a table of its own fields."""
    bases = [
        b.__name__ for b in cls.__mro__[1:] if b is not BaseSettings and issubclass(b, BaseSettings)
    ]
    lines = [f"## {cls.__name__}", "", docstring(cls), ""]
    if bases:
        names = ", ".join(f"[{b}](#{b.lower()})" for b in bases)
        lines += [f"Also reads the settings of {names}.", ""]
    lines += ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, info in own_fields(cls).items():
        names = " or ".join(f"`{n}`" for n in variables(cls, name, info))
        where = f"{names}<br>`{config.flag_name(name)}`"
        if not info.description:
            raise SystemExit(f"{cls.__name__}.{name} has no description (Field(description=...))")
        lines.append(
            f"| {where} | {cell(field_type(info))} | {default_text(info)}"
            f" | {cell(info.description)} |"
        )
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole of docs/configuration.md."""
    parts = [_HEADER, *(section(cls) for cls in settings_classes()), footer()]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Print the generated text, or with ``--check`` compare it with docs/configuration.md."""
    text = render()
    if argv == ["--check"]:
        if OUTPUT.read_text() == text:
            return 0
        print(f"docs/configuration.md is stale: run {COMMAND}", file=sys.stderr)
        return 1
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
