"""What a servicer thread sets on its ThreadContext reaches the caller as the synchronous gRPC
server would send it: initial metadata, trailing metadata, and a status set with set_code and
set_details, over a real grpc.aio server on a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest

from federation.rate_limit import AdmissionTicket
from federation.server_loop import AsyncServer, ThreadContext

METHOD = "/certfed.test.Context/Call"


@contextlib.contextmanager
def _serving(work: Callable[[ThreadContext], None]) -> Iterator[grpc.Channel]:
    server = AsyncServer("thread-context-test")

    async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        worker = ThreadContext(context, cast(AdmissionTicket, None), threading.Event())
        await asyncio.to_thread(work, worker)
        await worker.settle()
        return b"answer"

    async def start() -> tuple[grpc.aio.Server, int]:
        aio = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(handle)
        aio.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("certfed.test.Context", {"Call": handler}),)
        )
        port = aio.add_insecure_port("127.0.0.1:0")
        await aio.start()
        return aio, port

    aio, port = server.run(start())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.run(aio.stop(None))
        server.stop(0)


def _call(channel: grpc.Channel) -> Any:
    return channel.unary_unary(METHOD)


def test_metadata_set_by_the_thread_reaches_the_caller() -> None:
    def work(context: ThreadContext) -> None:
        context.send_initial_metadata((("x-initial", "1"),))
        context.set_trailing_metadata((("x-trailing", "2"),))

    with _serving(work) as channel:
        answer, call = _call(channel).with_call(b"question", timeout=10)
        assert answer == b"answer"
        assert ("x-initial", "1") in call.initial_metadata()
        assert ("x-trailing", "2") in call.trailing_metadata()


def test_a_code_set_by_the_thread_ends_the_call_with_it() -> None:
    def work(context: ThreadContext) -> None:
        context.set_trailing_metadata((("retry-after-ms", "250"),))
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("the month is closed")

    with _serving(work) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            _call(channel)(b"question", timeout=10)
        error = cast(grpc.Call, refused.value)
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == "the month is closed"
        assert ("retry-after-ms", "250") in error.trailing_metadata()


def test_an_ok_code_answers_normally() -> None:
    def work(context: ThreadContext) -> None:
        context.set_code(grpc.StatusCode.OK)

    with _serving(work) as channel:
        assert _call(channel)(b"question", timeout=10) == b"answer"
