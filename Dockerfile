# One image for every cnm container (docker-compose.yml): Debian's Python,
# redis-server and the kernel tools, with cnm installed as a wheel in /opt/cnm.
#
#   docker build -t cnm:latest .

# --- build: generate the gRPC stubs and build the wheel -------------------------------------
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
# scripts/setup.sh is the same set-up as on a developer machine: apt packages,
# .venv on /usr/bin/python3, the generated stubs (protos/cnm/**/*_pb2*.py).
RUN scripts/setup.sh \
 && .venv/bin/pip wheel --no-deps --no-cache-dir -w /wheels .

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv redis-server nftables libnftables1 iproute2 \
        iputils-ping conntrack procps kmod util-linux \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/cnm \
 && /opt/cnm/bin/pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels
# `python` and the console scripts (cnmd, cnm-ipam, cnm-controller, cnm-driver,
# cnmctl) come from the venv; health checks run `python -m services.healthcheck`.
ENV PATH=/opt/cnm/bin:$PATH
CMD ["cnmd"]
