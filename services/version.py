"""cnm's version, as every binary prints it (`cnmctl --version`, `cnmd --version`,
`cnmd status`)."""

from __future__ import annotations

import platform
from importlib import metadata

import grpc


def version() -> str:
    try:
        return metadata.version("cnm")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(prog: str) -> str:
    """`cnmctl version 0.1.0 (python 3.11.2, grpc 1.66.1)`, shaped like docker's."""
    return (
        f"{prog} version {version()} (python {platform.python_version()}, grpc {grpc.__version__})"
    )
