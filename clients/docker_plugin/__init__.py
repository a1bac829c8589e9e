"""cnm-docker-plugin: libnetwork's remote NetworkDriver and IpamDriver, served by cnm.

protocol (JSON fields in and out), objects (Docker ids -> cnm objects),
network (NetworkDriver.*), ipam (IpamDriver.*), server (HTTP over a unix
socket, the console script).
"""
