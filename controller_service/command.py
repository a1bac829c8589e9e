"""The `cnm-controller` command: gRPC core set up first (services/grpc_core.py), then main.py."""

from __future__ import annotations

from services import grpc_core

grpc_core.use_iomgr_io()  # before anything imports grpc

from controller_service.main import main  # noqa: E402 - only after the line above

__all__ = ["main"]
