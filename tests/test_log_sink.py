"""The worker's log lines, written once per event-loop pass (``relay.log_sink``): in order, whole,
complete at a graceful stop (also a stop whose loop never ran another pass), redacted as before."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import textwrap
import threading

from relay.log_sink import CHUNK, MAX_PENDING, LineSink, SinkLogger
from tests.support.processes import ROOT


class Writes(io.BytesIO):
    """A binary stream that remembers each write call (one per write syscall for stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.calls.append(bytes(data))
        return super().write(data)


def line(i: int, size: int = 40) -> bytes:
    return json.dumps({"i": i, "pad": "x" * size}).encode() + b"\n"


async def test_lines_of_one_pass_go_out_together_at_its_end_in_order() -> None:
    out = Writes()
    sink = LineSink(out)
    for i in range(10):
        sink.add(line(i))
    assert out.calls == []  # nothing written during the pass
    await asyncio.sleep(0)
    assert out.calls == [b"".join(line(i) for i in range(10))]
    sink.add(line(10))
    await asyncio.sleep(0)
    assert out.calls[1:] == [line(10)]


async def test_tasks_logging_across_passes_keep_the_order_they_logged_in() -> None:
    out = Writes()
    sink = LineSink(out)
    order: list[bytes] = []

    async def task(k: int) -> None:
        for j in range(20):
            data = line(k * 100 + j)
            order.append(data)
            sink.add(data, urgent=(j == 7 and k == 1))  # a warning in the middle goes at once
            await asyncio.sleep(0)

    await asyncio.gather(*(task(k) for k in range(5)))
    await asyncio.sleep(0)
    assert out.getvalue() == b"".join(order)


async def test_every_write_holds_whole_lines_within_a_chunk() -> None:
    out = Writes()
    sink = LineSink(out)
    sizes = [10, 500, 3000, CHUNK + 900, 20, 4000, 1, 2500, 2500, 2500]
    lines = [line(i, size) for i, size in enumerate(sizes * 3)]
    for data in lines:
        sink.add(data)
    await asyncio.sleep(0)
    assert out.getvalue() == b"".join(lines)
    assert len(out.calls) > 1
    for call in out.calls:
        assert call.endswith(b"\n")
        parts = call.splitlines(keepends=True)
        assert all(part in lines for part in parts)
        assert len(call) <= CHUNK or len(parts) == 1  # only a single long line exceeds a chunk


async def test_a_pass_that_logs_too_much_writes_before_its_end() -> None:
    out = Writes()
    sink = LineSink(out)
    big = line(0, 1000)
    count = MAX_PENDING // len(big) + 2
    for i in range(count):
        sink.add(line(i, 1000))
    assert out.calls, "MAX_PENDING bounds what waits for the end of the pass"
    await asyncio.sleep(0)
    assert out.getvalue() == b"".join(line(i, 1000) for i in range(count))


def test_without_a_running_loop_or_from_another_thread_a_line_goes_at_once() -> None:
    out = Writes()
    sink = LineSink(out)
    sink.add(line(1))
    assert out.getvalue() == line(1)

    async def main() -> None:
        sink.add(line(2))  # waits for the pass
        thread = threading.Thread(target=sink.add, args=(line(3),))
        thread.start()
        thread.join()
        assert out.getvalue() == line(1) + line(2) + line(3)  # the thread wrote both, in order

    asyncio.run(main())


def test_a_loop_closed_before_its_flush_leaves_the_next_loop_able_to_flush() -> None:
    out = Writes()
    sink = LineSink(out)
    loop = asyncio.new_event_loop()

    async def log_once(i: int) -> None:
        sink.add(line(i))

    loop.run_until_complete(log_once(1))  # the end-of-pass callback may not have run yet
    loop.close()
    asyncio.run(log_once(2))
    assert out.getvalue() == line(1) + line(2)


async def test_warnings_and_errors_are_written_at_once_with_the_lines_before_them() -> None:
    out = Writes()
    sink = LineSink(out)
    logger = SinkLogger("relay.test", sink)
    logger.info(b'{"event":"a"}')
    assert out.calls == []
    logger.error(b'{"event":"b"}')
    assert out.getvalue() == b'{"event":"a"}\n{"event":"b"}\n'


PROGRAM = textwrap.dedent(
    """
    import asyncio, logging, sys
    import structlog
    from relay.observability import configure_logging

    configure_logging("json", per_pass=True)
    log = structlog.get_logger("relay.test")
    mode = sys.argv[1]

    async def main():
        for i in range(2000):
            log.info("line", i=i, secret="whsec_c2VjcmV0c2VjcmV0", note="Bearer abc.def")
        logging.getLogger("arq.worker").info("foreign after the lines")
        for i in range(2000, 2100):
            log.info("line", i=i)

    def last_pass():  # logs, then stops the loop: the flush it schedules never runs
        for i in range(2100, 2200):
            log.info("line", i=i)
        loop.stop()

    if mode == "run":
        asyncio.run(main())  # a graceful end: the loop finishes its passes
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.call_soon(last_pass)
        loop.run_forever()
        loop.close()
    """
)


def test_a_process_loses_no_line_at_exit_and_keeps_foreign_records_in_order() -> None:
    for mode in ("run", "closed"):
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, mode],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=True,
        )
        lines = done.stderr.decode().splitlines()
        events = [json.loads(text) for text in lines]  # whole JSON lines only
        numbered = [e["i"] for e in events if e["event"] == "line"]
        assert numbered == list(range(2100 if mode == "run" else 2200)), mode
        foreign = [k for k, e in enumerate(events) if e["event"] == "foreign after the lines"]
        assert foreign == [2000], mode
        assert b"c2VjcmV0c2VjcmV0" not in done.stderr and b"abc.def" not in done.stderr
        assert all(e["secret"] == "***" for e in events if e["event"] == "line" and "secret" in e)
