#!/usr/bin/env bash
# Generates the Python stubs (+ .pyi type stubs) for every cnm proto, next to
# the .proto files, so that `import cnm.<service>.v1.<service>_pb2` works both
# in the editable install and in a built wheel.
set -euo pipefail
cd "$(dirname "$0")/../protos"
PY=../.venv/bin/python
export PATH="$(cd ../.venv/bin && pwd):$PATH"  # protoc-gen-mypy plugins
mapfile -t files < <(find cnm -name '*.proto' | sort)
"$PY" -m grpc_tools.protoc -I . \
    --python_out=. --mypy_out=quiet:. \
    --grpc_python_out=. --mypy_grpc_out=quiet:. \
    "${files[@]}"
# The same files with their comments (source_code_info), which the Python
# descriptor pool drops: server reflection serves these (services/reflection.py).
"$PY" -m grpc_tools.protoc -I . --include_source_info \
    --descriptor_set_out=cnm/descriptors.binpb "${files[@]}"
