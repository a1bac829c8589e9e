"""`cnm-ipam`: serves cnm.ipam.v1.Ipam and cnm.ipam.v1.IdAllocator over Redis."""

from __future__ import annotations

from collections.abc import Sequence

from cnm.ipam.v1 import ipam_pb2_grpc
from services.plugins import Discovery
from services.server import ServiceSpec
from services.service_main import common_parser, run
from services.store import Store

from .config import IpamConfig
from .idranges import IdRanges
from .pools import Pools
from .remote import RemotePools
from .remote_plugins import IpamPlugins
from .servicer import IdAllocatorServicer, IpamServicer


def build(cfg: IpamConfig, store: Store) -> list[ServiceSpec]:
    remote = RemotePools(store, IpamPlugins(Discovery(cfg.plugin_dirs)))
    return [
        ServiceSpec(
            "cnm.ipam.v1.Ipam",
            ipam_pb2_grpc.add_IpamServicer_to_server,
            IpamServicer(Pools(store, cfg.address_spaces), remote),
        ),
        ServiceSpec(
            "cnm.ipam.v1.IdAllocator",
            ipam_pb2_grpc.add_IdAllocatorServicer_to_server,
            IdAllocatorServicer(IdRanges(store)),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser("cnm-ipam", "IPAM: address pools, addresses and id ranges over Redis.")
    parser.add_argument(
        "--plugin-dirs", metavar="DIRS", help="remote IPAM plugin directories, comma-separated"
    )
    parser.add_argument(
        "--address-spaces",
        metavar="NAMES",
        help="address spaces besides LocalDefault and GlobalDefault, comma-separated",
    )
    return run(
        prog="cnm-ipam",
        section="ipam",
        schema=IpamConfig,
        parser=parser,
        build=build,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
