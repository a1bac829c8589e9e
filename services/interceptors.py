"""Server interceptor: input size bounds, domain errors -> gRPC status (once, here),
access logging, RPC latency metrics by method and code."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import redis.exceptions

from services import errors, limits, metrics
from services.rpc_errors import to_status

log = logging.getLogger(__name__)


def _classify(exc: Exception) -> errors.CnmError:
    if isinstance(exc, errors.CnmError):
        return exc
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return errors.Unavailable(f"redis is unavailable: {exc}", reason="STORE_UNAVAILABLE")
    return errors.Internal(f"internal error: {type(exc).__name__}: {exc}")


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    err = _classify(exc)
    context.cnm_code = err.code
    if isinstance(err, errors.Internal) and not isinstance(exc, errors.CnmError):
        log.exception("unexpected error in %s", method)
    else:
        log.info("%s failed: %s %s", method, err.code, limits.clip(err.message, limits.MESSAGE_MAX))
    context.abort_with_status(to_status(err))


class ErrorInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        if handler.unary_unary:
            inner = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                try:
                    limits.check_request(request)
                    return inner(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    if _is_abort(context):
                        raise
                    _abort(context, method, exc)
                finally:
                    took = time.perf_counter() - start
                    metrics.observe_rpc(method, _code_of(context), took)
                    log.debug("%s took %.2f ms", method, took * 1e3)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )

        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                try:
                    limits.check_request(request)
                    yield from inner_stream(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    if _is_abort(context):
                        raise
                    _abort(context, method, exc)
                finally:  # a stream's whole life (a watch lasts until the client leaves)
                    metrics.observe_rpc(method, _code_of(context), time.perf_counter() - start)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


def _code_of(context: grpc.ServicerContext) -> str:
    """The call's status code name: ours when the interceptor mapped an error, the
    handler's own when it aborted or set a code itself, else OK."""
    mapped = getattr(context, "cnm_code", None)
    if mapped:
        return mapped
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


def _is_abort(context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after recording the status.
    return context.code() is not None
