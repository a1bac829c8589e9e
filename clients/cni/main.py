"""The `cnm-cni` executable: a CNI plugin when CNI_COMMAND is set.

    CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/proc/42/ns/net CNI_IFNAME=eth0 \\
        cnm-cni < conf.json

Runtimes find a plugin by its `type` in their CNI bin directory, so the
binary must be there under the name `cnm`: `cnm-cni install --bin-dir
/opt/cni/bin` writes a two-line wrapper that execs this console script.
Success prints the result (ADD, VERSION) and exits 0; failure prints a CNI
error result on stdout and exits 1. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from clients.cni import commands, config, errors
from clients.cni.errors import CniError

log = logging.getLogger("cnm-cni")

PLUGIN_TYPE = "cnm"


def run(environ: Mapping[str, str], stdin: bytes) -> dict[str, Any] | None:
    """One CNI invocation: the result to print, None for nothing; raises CniError."""
    cmd = config.command(environ)
    if cmd == "VERSION":
        return commands.version(_version_asked(stdin))
    conf = config.netconf(config.decode(stdin), cmd, environ)
    if cmd == "GC":
        commands.gc(conf)
        return None
    if cmd == "STATUS":
        commands.status(conf)
        return None
    att = config.attachment(environ, netns_required=cmd != "DEL")
    if cmd == "ADD":
        return commands.add(conf, att)
    if cmd == "DEL":
        commands.delete(conf, att)
        return None
    commands.check(conf, att)
    return None


def _version_asked(stdin: bytes) -> str:
    """VERSION answers in the version asked for, or the newest without one."""
    try:
        doc = json.loads(stdin) if stdin.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = {}
    asked = doc.get("cniVersion") if isinstance(doc, dict) else None
    return asked if asked in config.SUPPORTED_VERSIONS else config.SPEC_VERSION


def _error_version(stdin: bytes) -> str:
    try:
        asked = json.loads(stdin).get("cniVersion")
    except (AttributeError, UnicodeDecodeError, json.JSONDecodeError):
        return config.SPEC_VERSION
    return asked if asked in config.SUPPORTED_VERSIONS else config.SPEC_VERSION


def plugin(environ: Mapping[str, str], stdin: Any, stdout: TextIO) -> int:
    data = b""
    try:
        data = config.read_stdin(stdin)
        out = run(environ, data)
    except CniError as e:
        log.error("%s: %s%s", environ.get("CNI_COMMAND", "?"), e.msg,
                  f" ({e.details})" if e.details else "")  # fmt: skip
        json.dump(e.result(_error_version(data)), stdout)
        stdout.write("\n")
        return 1
    except Exception as e:  # the runtime must still get a CNI error, never a traceback
        log.exception("unexpected failure")
        err = CniError(errors.CNM_ERROR, "cnm-cni failed unexpectedly", repr(e)[:1000])
        json.dump(err.result(_error_version(data)), stdout)
        stdout.write("\n")
        return 1
    if out is not None:
        json.dump(out, stdout)
        stdout.write("\n")
    return 0


def install(bin_dir: Path, name: str = PLUGIN_TYPE) -> Path:
    """Writes `bin_dir/name`, a wrapper that execs this very console script."""
    script = Path(sys.argv[0]).resolve()
    if not script.name.startswith("cnm-cni"):
        script = Path(sys.executable).parent / "cnm-cni"
    target = bin_dir / name
    tmp = target.with_name(f".{name}.tmp")
    tmp.write_text(f'#!/bin/sh\nexec {shlex.quote(str(script))} "$@"\n')
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CNM_CNI_LOG_LEVEL", "WARNING").upper(),
        format="cnm-cni: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or "CNI_COMMAND" in os.environ:
        return plugin(os.environ, sys.stdin.buffer, sys.stdout)
    parser = argparse.ArgumentParser(
        prog="cnm-cni",
        description="CNI plugin backed by cnm. Runtimes run it with CNI_COMMAND set; "
        "`install` puts it into a CNI bin directory as the `cnm` plugin.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="write the `cnm` plugin wrapper into a CNI bin dir")
    inst.add_argument("--bin-dir", default="/opt/cni/bin", type=Path)
    inst.add_argument("--name", default=PLUGIN_TYPE, help="plugin type name (default: cnm)")
    opts = parser.parse_args(args)
    if not opts.bin_dir.is_dir():
        parser.error(f"{opts.bin_dir} is not a directory")
    print(install(opts.bin_dir, opts.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
