"""The asyncio form: connect, request, async iteration over a topic and over direct
messages, coroutine handlers, and close ending the streams."""

from __future__ import annotations

import asyncio
import time

import pytest

import agentbus


async def connect(bus, agent_tpm, name: str, role: str) -> agentbus.AsyncAgent:
    key = agentbus.open_or_create_identity(bus.key_dir(name), role, tpm=agent_tpm)
    return await agentbus.AsyncAgent.connect(identity=key, bundle=bus.bundle(name, role))


def test_request_messages_and_coroutine_handlers(bus, agent_tpm):
    async def main() -> None:
        mon = await connect(bus, agent_tpm, "aio-mon", "MONITOR")
        opt = await connect(bus, agent_tpm, "aio-opt", "OPTIMIZER")
        async with mon, opt:

            async def answer(m: agentbus.Message) -> bytes:
                await asyncio.sleep(0.01)  # a coroutine handler runs on this loop
                return b"plan for " + m.payload

            mon.on_request(answer)
            reply = await opt.request("aio-mon", b"cpu", timeout=10)
            assert reply.payload == b"plan for cpu"

            received = []

            async def follow() -> None:
                async for m in opt.messages("metrics/cpu"):
                    received.append(m.payload)
                    if len(received) == 3:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.3)  # let the subscription reach the broker
            for i in range(3):
                await mon.publish("metrics/cpu", f"{i}")
            await asyncio.wait_for(follower, 20)
            assert received == [b"0", b"1", b"2"]

            # Direct messages, and close() ending an iteration that waits.
            direct = []

            async def inbox() -> None:
                async for m in opt.messages():
                    direct.append(m.payload)

            reader = asyncio.create_task(inbox())
            await asyncio.sleep(0.05)
            await mon.send("aio-opt", b"note")
            for _ in range(400):
                if direct:
                    break
                await asyncio.sleep(0.05)
            assert direct == [b"note"]
            with pytest.raises(agentbus.AclDenied):
                await opt.subscribe("debug/x", lambda m: None)
            await opt.close()
            await asyncio.wait_for(reader, 10)  # ended by close, not cancelled
            assert opt.agent.closed

    asyncio.run(main())


def test_a_slow_async_consumer_holds_the_agent_back_without_loss_or_duplicates(bus, agent_tpm):
    async def main() -> None:
        mon = await connect(bus, agent_tpm, "aio-mon-flow", "MONITOR")
        opt = await connect(bus, agent_tpm, "aio-opt-flow", "OPTIMIZER")
        async with mon, opt:
            got = []

            async def follow() -> None:
                async for m in opt.messages("metrics/flow", maxsize=2):
                    if not got:
                        time.sleep(1.0)  # the loop itself stalls while the publisher goes on
                    await asyncio.sleep(0.005)
                    got.append(int(m.payload))
                    if len(got) == 50:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            for i in range(50):
                await mon.publish("metrics/flow", f"{i}")
            await asyncio.wait_for(follower, 60)
            await asyncio.sleep(0.3)  # anything sent twice would be queued by now
            assert got == list(range(50))

    asyncio.run(main())


def test_closing_from_an_async_handler_and_under_backpressure_returns(bus, agent_tpm):
    async def main() -> None:
        mon = await connect(bus, agent_tpm, "aio-mon-close", "MONITOR")
        opt = await connect(bus, agent_tpm, "aio-opt-close", "OPTIMIZER")
        started = asyncio.Event()

        async def close_myself(m: agentbus.Message) -> bytes:
            started.set()
            # The dispatch thread waits for this coroutine while close() joins it: the
            # wait gives up (and cancels this coroutine) once closing has begun.
            await mon.close()
            return b"never sent"

        mon.on_request(close_myself)
        with pytest.raises(agentbus.Error):
            await opt.request("aio-mon-close", b"close", timeout=3)
        assert started.is_set()
        for _ in range(400):
            if mon.agent.closed:
                break
            await asyncio.sleep(0.05)
        assert mon.agent.closed
        await mon.close()  # idempotent

        # A consumer that stops reading with a full queue, then closes its agent.
        mon2 = await connect(bus, agent_tpm, "aio-mon-close2", "MONITOR")
        stream = opt.messages("metrics/backlog", maxsize=1)
        first = asyncio.ensure_future(stream.__anext__())  # subscribes, then waits
        await asyncio.sleep(0.3)
        for i in range(5):
            await mon2.publish("metrics/backlog", f"{i}")
        assert (await asyncio.wait_for(first, 20)).payload == b"0"
        await asyncio.sleep(0.5)  # one message has the queue's place, the next waits for room
        await asyncio.wait_for(opt.close(), 20)
        rest = [m.payload async for m in stream]  # ends: closing the agent ended the stream
        assert rest in ([], [b"1"])
        await mon2.close()

    asyncio.run(main())
