"""A driver service restarted under remote-driver networks: the plugin is
negotiated with again, joined sandboxes keep their traffic, and new joins,
leaves and deletes work through it. Also the other order: a driver service
that starts before its plugin registers it once the plugin answers."""

from __future__ import annotations

from controller_env import T, ping_all, sandbox_netns
from remote_env import Plugin, remote_world

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from harness.wait import until


def test_driver_service_restart_keeps_remote_networks_working(redis_server, netns_prefix):
    with remote_world(redis_server, netns_prefix, [("netplug", [])]) as (w, plugins, _dir):
        c = w.stub()
        try:
            ipam = pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.98.0.0/24")])
            c.CreateNetwork(
                pb.CreateNetworkRequest(name="n", driver="netplug", ipam=ipam), timeout=T
            )
            sbs = [
                c.CreateSandbox(pb.CreateSandboxRequest(name=f"s{i}"), timeout=T) for i in (0, 1)
            ]
            ep0 = c.Connect(pb.ConnectRequest(network="n", sandbox="s0"), timeout=T)

            w.stop_host("h1")
            w.start_host("h1")  # with its environment: the same plugin dir
            ep1 = c.Connect(pb.ConnectRequest(network="n", sandbox="s1"), timeout=T)
            peer = ep0.ipv4_address.split("/")[0]
            assert ping_all(sandbox_netns(sbs[1]), [peer]) == []
            c.Disconnect(pb.DisconnectRequest(network="n", sandbox="s0"), timeout=T)
            assert ping_all(sandbox_netns(sbs[1]), [peer]) == [peer]
            assert ep1.interface_name == "eth0"
            # Two activations: one per start of the driver service.
            assert plugins["netplug"].methods().count("Plugin.Activate") == 2
        finally:
            for name in ("s0", "s1"):
                c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=name), timeout=T)
            c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="n"), timeout=T)


def test_plugin_started_after_the_driver_service_is_registered_then(redis_server, netns_prefix):
    # 0.3 s heartbeats: the rescan that finds the plugin runs at that pace.
    extra = ["--heartbeat-interval", "0.3", "--host-ttl", "5"]
    with remote_world(redis_server, netns_prefix, [], driver_args=extra) as (w, _p, plugin_dir):
        c = w.stub()
        drivers = c.ListDrivers(pb.ListDriversRequest(), timeout=T).drivers
        assert "slowplug" not in {d.name for d in drivers}
        plug = Plugin(w.spawn, plugin_dir, "slowplug", w.hosts["h1"].netns).start()
        until(
            lambda: any(
                d.name == "slowplug" and d.scope == types_pb2.SCOPE_LOCAL and not d.error
                for d in c.ListDrivers(pb.ListDriversRequest(), timeout=T).drivers
            ),
            "slowplug registered",
            timeout=10,
        )
        net = c.CreateNetwork(pb.CreateNetworkRequest(name="late", driver="slowplug"), timeout=T)
        assert net.host == "h1"
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="late"), timeout=T)
        w.spawn.stop(plug.proc)
