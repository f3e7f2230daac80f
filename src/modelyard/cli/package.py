"""``modelyard build`` / ``verify`` / ``dockerfile`` / ``import-mlflow``: model packages.

See docs/packages.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from modelyard.errors import ModelyardError

__all__ = ["register"]

_OUT_HELP = "the package file, or a directory to write <name>-<version>.modelyard in (default: here)"


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A mistake in the user's files or options: one line on stderr and exit 1, never a traceback."""
    try:
        yield
    except ModelyardError as exc:
        where = f" [{exc.field}]" if exc.field and exc.field not in exc.message else ""
        typer.echo(f"modelyard: {exc.message}{where}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError, ImportError) as exc:
        typer.echo(f"modelyard: {exc}", err=True)
        raise typer.Exit(1) from None


def _labels(values: list[str] | None) -> dict[str, str]:
    labels = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--label")
        labels[key] = text
    return labels


def build(
    source: Annotated[Path, typer.Argument(help="model directory, or one .onnx/.joblib/.pkl/.pt/.pt2 file")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help=_OUT_HELP)] = None,
    name: Annotated[
        str | None, typer.Option(help="package name (default: modelyard.yaml, else the folder)")
    ] = None,
    version: Annotated[str | None, typer.Option("--version", help="package version (default: 1)")] = None,
    entry: Annotated[str | None, typer.Option(help="the model class: model.py:ClassName")] = None,
    model_file: Annotated[str | None, typer.Option(help="the model file to serve, relative to DIR")] = None,
    requirement: Annotated[
        list[str] | None, typer.Option("--requirement", "-r", help="a Python requirement (repeatable)")
    ] = None,
    author: Annotated[str | None, typer.Option(help="default: the OS user")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    created_at: Annotated[
        str | None, typer.Option(help="ISO 8601 build time, for reproducible builds (default: now)")
    ] = None,
) -> None:
    """Build one versioned package file from a model directory or a model file."""
    from modelyard.package import build_package, package_digest

    with _user_errors():
        path = build_package(
            source, out, name=name, version=version, entry=entry, model_file=model_file,
            requirements=requirement, author=author, description=description, labels=_labels(label),
            created_at=created_at,
        )  # fmt: skip
        typer.echo(f"{path}  sha256:{package_digest(path)}")


def verify(package: Annotated[Path, typer.Argument(help="a .modelyard package file")]) -> None:
    """Check every file of a package against its manifest's checksums; exit 1 naming the first bad file."""
    from modelyard.package import verify_package

    with _user_errors():
        manifest = verify_package(package)
        typer.echo(f"ok: {manifest.name} version {manifest.version}, {len(manifest.files)} files verified")


def dockerfile(
    package: Annotated[Path, typer.Argument(help="a .modelyard package file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the build context directory to write")],
) -> None:
    """Write a Docker/OCI build context (Dockerfile, requirements.txt, .dockerignore, the package)."""
    from modelyard.package.docker import write_build_context

    with _user_errors():
        context = write_build_context(package, out)
        typer.echo(f"build context written to {context}: docker build -t IMAGE {context}")


def import_mlflow(
    directory: Annotated[Path, typer.Argument(help="an MLflow model directory (with an MLmodel file)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help=_OUT_HELP)] = None,
    name: Annotated[str | None, typer.Option(help="package name (default: the directory's name)")] = None,
    version: Annotated[str | None, typer.Option("--version", help="package version (default: 1)")] = None,
    created_at: Annotated[str | None, typer.Option(help="ISO 8601 build time (default: now)")] = None,
) -> None:
    """Turn an MLflow model directory into a package (sklearn/onnx flavors need no mlflow)."""
    from modelyard.package import package_digest
    from modelyard.package.mlflow import import_mlflow as build_from_mlflow

    with _user_errors():
        path = build_from_mlflow(directory, out, name=name, version=version, created_at=created_at)
        typer.echo(f"{path}  sha256:{package_digest(path)}")


def register(app: typer.Typer) -> None:
    """Add the package commands to the root CLI."""
    app.command()(build)
    app.command()(verify)
    app.command()(dockerfile)
    app.command("import-mlflow")(import_mlflow)
