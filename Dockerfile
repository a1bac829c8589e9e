# One image for every cnm container (docker-compose.yml): Debian's Python,
# redis-server and the kernel tools, with cnm installed in the venv /opt/cnm.
#
#   docker build -t cnm:latest .
#
# Without a registry or package mirror (an air-gapped build, or this project's
# compose test): give a base that already holds the Debian packages below
# (e.g. `debootstrap --include=...` then `docker import`) and put the Python
# wheels in ./wheelhouse (`pip download -d wheelhouse . grpcio-tools
# mypy-protobuf setuptools wheel`); nothing is then fetched:
#
#   docker build --build-arg BASE=cnm-base:bookworm -t cnm:latest .
ARG BASE=debian:bookworm-slim

# --- build: generate the gRPC stubs and build the wheel -------------------------------------
FROM ${BASE} AS build
ARG PACKAGES="python3 python3-venv"
RUN dpkg -s $PACKAGES >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $PACKAGES \
      && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY . .
# The stubs (protos/cnm/**/*_pb2*.py) are generated as scripts/gen-protos.sh
# does on a developer machine, then go into the wheel.
RUN if [ -d wheelhouse ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheelhouse; fi \
 && python3 -m venv .venv \
 && .venv/bin/pip install --no-cache-dir grpcio-tools mypy-protobuf \
 && scripts/gen-protos.sh \
 && .venv/bin/pip wheel --no-deps --no-cache-dir -w /wheels . \
 && if [ -d wheelhouse ]; then cp wheelhouse/* /wheels/; fi

# --- runtime ---------------------------------------------------------------------------------
FROM ${BASE}
ARG PACKAGES="python3 python3-venv redis-server nftables libnftables1 iproute2 iputils-ping conntrack procps kmod util-linux"
RUN dpkg -s $PACKAGES >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $PACKAGES \
      && rm -rf /var/lib/apt/lists/*; }
COPY --from=build /wheels /wheels
# cnm's own wheel with its dependencies: from PyPI, or from the wheelhouse
# that came with an offline build.
RUN offline=""; if ls /wheels/grpcio-* >/dev/null 2>&1; then offline=--no-index; fi \
 && python3 -m venv /opt/cnm \
 && /opt/cnm/bin/pip install --no-cache-dir $offline --find-links /wheels /wheels/cnm-*.whl \
 && rm -rf /wheels
# `python` and the console scripts (cnmd, cnm-ipam, cnm-controller, cnm-driver,
# cnmctl, cnm-cni) come from the venv; health checks run `python -m services.healthcheck`.
ENV PATH=/opt/cnm/bin:$PATH
CMD ["cnmd"]
