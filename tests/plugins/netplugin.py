"""A libnetwork v1 plugin for cnm's tests: remote network driver and/or remote IPAM.

    netplugin.py --socket PATH --log FILE [--implements NetworkDriver,IpamDriver]
                 [--capabilities JSON] [--fail Method=message ...] [--dst-prefix P]
                 [--routes] [--no-gateway] [--mac MAC] [--ipam-pool CIDR]

Stdlib only: an HTTP server on a unix socket. Every request is appended to
`--log` as one JSON line {"method", "accept", "body"}, so a test can check
the exact fields cnm sent. Run it inside the test's host namespace: it makes
real links there (`ip`), as a real plugin does:

- NetworkDriver.CreateNetwork: a bridge "pb<10 hex of the network id>" with
  the IPv4 gateway of the network's first pool; DeleteNetwork removes it.
- NetworkDriver.Join: a veth pair, "ph<10 hex>" on that bridge and
  "pc<10 hex>" handed to cnm as SrcName; Leave deletes the pair.
- IpamDriver: pools as asked (or --ipam-pool); the gateway request gets the
  first address, endpoints get addresses from the top of the pool down
  (.254, .253, ...), so a test can tell the plugin's addresses from cnm's.

`--capabilities` is the raw JSON answered to NetworkDriver.GetCapabilities
(default {"Scope": "local"}); `--fail Join=boom` answers Join with
HTTP 500 {"Err": "boom"}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler


def ip(*argv: str, check: bool = True) -> None:
    subprocess.run(["ip", *argv], check=check, capture_output=True)


class State:
    """The plugin's objects, saved to `<log>.state` after every call, so a
    plugin killed and started again knows them (as a real plugin would)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = args.log + ".state"
        self.lock = threading.Lock()
        self.networks: dict[str, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.pools: dict[str, dict] = {}
        self.next_pool = 0
        if os.path.exists(self.path):
            with open(self.path) as f:
                saved = json.load(f)
            self.networks, self.endpoints = saved["networks"], saved["endpoints"]
            self.next_pool = saved["next_pool"]
            self.pools = {
                k: {
                    "net": ipaddress.ip_network(v["net"]),
                    "taken": {ipaddress.ip_address(a) for a in v["taken"]},
                    "space": v["space"],
                }
                for k, v in saved["pools"].items()
            }

    def save(self) -> None:
        pools = {
            k: {"net": str(v["net"]), "taken": sorted(map(str, v["taken"])), "space": v["space"]}
            for k, v in self.pools.items()
        }
        data = {
            "networks": self.networks,
            "endpoints": self.endpoints,
            "pools": pools,
            "next_pool": self.next_pool,
        }
        with open(self.path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(self.path + ".tmp", self.path)


def bridge(nid: str) -> str:
    return f"pb{nid[:10]}"


def _gateway(net: dict) -> str:
    data = net.get("IPv4Data") or []
    gw = data[0].get("Gateway", "") if data else ""
    return gw


# --- NetworkDriver ---------------------------------------------------------------------------


def create_network(st: State, body: dict) -> dict:
    nid = body["NetworkID"]
    ip("link", "add", bridge(nid), "type", "bridge")
    gw = _gateway(body)
    if gw:
        ip("addr", "add", gw, "dev", bridge(nid))
    ip("link", "set", bridge(nid), "up")
    st.networks[nid] = body
    return {}


def delete_network(st: State, body: dict) -> dict:
    nid = body["NetworkID"]
    if st.networks.pop(nid, None) is None:
        return {"Err": f"network {nid} not found"}
    ip("link", "del", bridge(nid), check=False)
    return {}


def create_endpoint(st: State, body: dict) -> dict:
    st.endpoints[body["EndpointID"]] = body
    if st.args.mac and not body["Interface"]["MacAddress"]:
        return {"Interface": {"MacAddress": st.args.mac}}
    return {}


def delete_endpoint(st: State, body: dict) -> dict:
    if st.endpoints.pop(body["EndpointID"], None) is None:
        return {"Err": f"endpoint {body['EndpointID']} not found"}
    return {}


def join(st: State, body: dict) -> dict:
    nid, eid = body["NetworkID"], body["EndpointID"]
    net = st.networks.get(nid)
    if net is None:
        return {"Err": f"network {nid} not found"}
    host, peer = f"ph{eid[:10]}", f"pc{eid[:10]}"
    ip("link", "add", host, "type", "veth", "peer", "name", peer)
    ip("link", "set", host, "master", bridge(nid), "up")
    resp: dict = {
        "InterfaceName": {"SrcName": st.args.src_name or peer, "DstPrefix": st.args.dst_prefix},
        "DisableGatewayService": False,
        "SomethingNew": "ignored by cnm",
    }
    gw = _gateway(net).split("/")[0]
    if gw and not st.args.no_gateway:
        resp["Gateway"] = gw
    if st.args.routes:
        resp["StaticRoutes"] = [
            {"Destination": "198.51.100.0/24", "RouteType": 1},
            {"Destination": "203.0.113.0/24", "RouteType": 0, "NextHop": gw},
        ]
    return resp


def leave(st: State, body: dict) -> dict:
    ip("link", "del", f"ph{body['EndpointID'][:10]}", check=False)
    return {}


def oper_info(st: State, body: dict) -> dict:
    return {"Value": {"plugin": "netplugin", "endpoint": body["EndpointID"], "ports": 0}}


# --- IpamDriver ------------------------------------------------------------------------------


def request_pool(st: State, body: dict) -> dict:
    cidr = body.get("Pool") or st.args.ipam_pool
    st.next_pool += 1
    pool_id = f"plugin-pool-{st.next_pool}"
    net = ipaddress.ip_network(cidr)
    st.pools[pool_id] = {"net": net, "taken": set(), "space": body.get("AddressSpace")}
    return {"PoolID": pool_id, "Pool": str(net), "Data": {"com.example.pool": pool_id}}


def release_pool(st: State, body: dict) -> dict:
    if st.pools.pop(body["PoolID"], None) is None:
        return {"Err": f"pool {body['PoolID']} not found"}
    return {}


def request_address(st: State, body: dict) -> dict:
    pool = st.pools.get(body["PoolID"])
    if pool is None:
        return {"Err": f"pool {body['PoolID']} not found"}
    net = pool["net"]
    hosts = list(net.hosts())
    options = body.get("Options") or {}
    if body.get("Address"):
        addr = ipaddress.ip_address(body["Address"])
    elif options.get("RequestAddressType") == "com.docker.network.gateway":
        addr = hosts[0]
    else:
        free = [h for h in reversed(hosts[1:]) if h not in pool["taken"]]
        if not free:
            return {"Err": "pool is full"}
        addr = free[0]
    if addr in pool["taken"]:
        return {"Err": f"address {addr} is taken"}
    pool["taken"].add(addr)
    return {"Address": f"{addr}/{net.prefixlen}", "Data": {}}


def release_address(st: State, body: dict) -> dict:
    pool = st.pools.get(body["PoolID"])
    if pool is None:
        return {"Err": f"pool {body['PoolID']} not found"}
    pool["taken"].discard(ipaddress.ip_address(body["Address"]))
    return {}


HANDLERS = {
    "NetworkDriver.CreateNetwork": create_network,
    "NetworkDriver.DeleteNetwork": delete_network,
    "NetworkDriver.CreateEndpoint": create_endpoint,
    "NetworkDriver.DeleteEndpoint": delete_endpoint,
    "NetworkDriver.Join": join,
    "NetworkDriver.Leave": leave,
    "NetworkDriver.EndpointOperInfo": oper_info,
    "IpamDriver.GetCapabilities": lambda st, body: {"RequiresMACAddress": False},
    "IpamDriver.GetDefaultAddressSpaces": lambda st, body: {
        "LocalDefaultAddressSpace": "PluginLocal",
        "GlobalDefaultAddressSpace": "PluginGlobal",
    },
    "IpamDriver.RequestPool": request_pool,
    "IpamDriver.ReleasePool": release_pool,
    "IpamDriver.RequestAddress": request_address,
    "IpamDriver.ReleaseAddress": release_address,
}


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None

    def _reply(self, status: int, data: object) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # noqa: N802
        st = self.server.state
        method = self.path.lstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with st.lock:
            with open(st.args.log, "a") as f:
                entry = {"method": method, "accept": self.headers.get("Accept"), "body": body}
                f.write(json.dumps(entry) + "\n")
            if method in st.args.fail:
                self._reply(500, {"Err": st.args.fail[method]})
                return
            if method == "Plugin.Activate":
                self._reply(200, {"Implements": st.args.implements})
            elif method == "NetworkDriver.GetCapabilities":
                self._reply(200, st.args.capabilities.encode())
            elif method in HANDLERS and method.split(".")[0] in st.args.implements:
                resp = HANDLERS[method](st, body)
                st.save()
                self._reply(200, resp)
            else:
                self._reply(404, {"Err": f"{method} is not implemented"})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    state: State


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--implements", default="NetworkDriver")
    p.add_argument("--capabilities", default='{"Scope": "local"}')
    p.add_argument("--fail", action="append", default=[], metavar="METHOD=MESSAGE")
    p.add_argument("--dst-prefix", default="eth")
    # Answer Join with this SrcName instead of the link it made (a buggy plugin).
    p.add_argument("--src-name", default="")
    p.add_argument("--routes", action="store_true")
    p.add_argument("--no-gateway", action="store_true")
    p.add_argument("--mac", default="")
    p.add_argument("--ipam-pool", default="10.250.0.0/24")
    args = p.parse_args(argv)
    args.implements = [i for i in args.implements.split(",") if i]
    fails = {}
    for item in args.fail:
        method, _, message = item.partition("=")
        name = method if "." in method else f"NetworkDriver.{method}"
        fails[name] = message
    args.fail = fails
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server = Server(args.socket, Handler)
    server.state = State(args)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
