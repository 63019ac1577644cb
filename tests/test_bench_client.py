"""The bench's client (`streams.cli.bench_load`) judges what arrived by what it actually sent and
what it was told: a client held up sends late, and its captions are stamped late; a speaker told
``unavailable`` is in that outage until its speech is served again."""

from __future__ import annotations

import time

import prometheus_client

from schemas import SAMPLE_RATE
from streams.cli.bench_captions import Stream, longest_wait
from streams.cli.bench_load import PAUSE_S, Room, Utterance, _speak, summarize
from streams.cli.measures import PROCESS_CPU, cpu_use
from streams.cli.realtime import FRAME_BYTES, play
from tests.conftest import free_port


class HeldUpSocket:
    """A socket whose client is held up (its event loop blocked) for ``stall_s`` before frame ``at``."""

    def __init__(self, at: int, stall_s: float) -> None:
        self.sent: list[float] = []
        self._at, self._stall_s = at, stall_s

    async def send_bytes(self, frame: bytes) -> None:
        if len(self.sent) == self._at:
            time.sleep(self._stall_s)  # blocks the loop, as a busy machine does
        self.sent.append(time.time())


async def test_an_utterance_is_timed_as_sent_when_the_client_is_held_up() -> None:
    speech = [b"\1\0" * int(0.35 * SAMPLE_RATE)] * 2  # 0.35 s each: the last speech frame is half silence
    room = Room("r", [Utterance() for _ in speech], "en", "es")
    first_stream = len(speech[0]) + int(PAUSE_S * SAMPLE_RATE * 2)
    per_utterance = -(-first_stream // FRAME_BYTES)
    # Held up for a second while sending the frame before the second utterance's last speech frame.
    socket = HeldUpSocket(at=per_utterance + 2, stall_s=1.0)
    started = time.time()
    await _speak(socket, room, speech, 0.0)  # type: ignore[arg-type]
    first, second = room.utterances
    assert abs(first.started_at - (socket.sent[0] - FRAME_BYTES / 2 / SAMPLE_RATE)) < 0.01
    assert abs(first.ended_at - (socket.sent[3] - 0.05)) < 0.01  # 4th frame: 0.05 s of speech, then silence
    due = started + (first_stream + len(speech[1])) / 2 / SAMPLE_RATE
    assert second.ended_at - due > 0.8  # its last speech frame was the one held up: sent a second late


async def test_a_word_is_timed_as_sent_when_the_reader_is_held_up() -> None:
    """bench captions: a word's end is when the frame holding it went out, so a reader held up does
    not read as captions that lag."""
    pcm = b"\1\0" * int(1.0 * SAMPLE_RATE)  # ten frames
    socket = HeldUpSocket(at=5, stall_s=1.0)
    stream = Stream(sent=await play(socket, pcm))  # type: ignore[arg-type]
    assert abs(stream.said_by(0.45) - (socket.sent[4] - 0.05)) < 0.01  # before the stall: on time
    assert abs(stream.said_by(0.55) - (socket.sent[5] - 0.05)) < 0.01  # held up: a second late
    assert stream.said_by(0.55) - stream.said_by(0.45) > 1.0
    assert longest_wait(stream, [(0.0, 0.45, "a"), (0.5, 0.95, "b")]) > 1.4  # nothing shown: the whole reading
    assert 0.95 < stream.sent.most_behind_s() < 1.2


def test_an_utterance_whose_speaker_was_told_its_audio_was_dropped_is_not_missing() -> None:
    told, silent = Utterance(started_at=10.0, ended_at=12.0), Utterance(started_at=20.0, ended_at=22.0)
    room = Room("r", [told, silent], "en", "es")
    room.told["rate_limited"].append(11.5)
    outcome = summarize([room], None)
    assert (outcome["told_rate_limited"], outcome["told_unavailable"]) == (1, 0)
    assert outcome["finals_missing"] == 1  # the other one was lost silently


def test_an_outage_lasts_for_the_client_until_its_speech_is_served_again() -> None:
    """Told ``unavailable`` once, in a pause (PROTOCOL.md: once per episode, what is sent meanwhile is
    dropped): the next utterance is in the outage; one after a caption of speech sent after the tell
    has arrived is not, nor is one that ended long before the tell."""
    before, dropped, served, after = (Utterance(started_at=t, ended_at=t + 2.0) for t in (0.0, 10.0, 14.0, 20.0))
    room = Room("r", [before, dropped, served, after], "en", "es")
    room.told["unavailable"].append(8.0)  # two seconds before `dropped` began
    room.heard.append((16.6, 16.0))  # the final of `served`: the outage is over
    served.final_at = served.translated_at = served.audio_ended_at = 16.6
    assert [room.told_dropped(u) for u in room.utterances] == [False, True, True, False]
    assert summarize([room], None)["finals_missing"] == 2  # `before` and `after` were lost silently


def test_the_cpu_a_process_and_the_machine_used_is_measured_over_a_round() -> None:
    """This process, busy on one thread for half a second and serving /metrics as every worker does,
    is counted for what it used by its own clock, and the machine for at least that; a worker that
    is not there reads None."""
    port = free_port()
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1")
    try:
        cpu_before, wall_before = time.process_time(), time.monotonic()
        absent_worker = f"http://127.0.0.1:{free_port()}/metrics"
        with cpu_use([(f"http://127.0.0.1:{port}/metrics", PROCESS_CPU), (absent_worker, PROCESS_CPU)]) as used:
            busy_until = time.process_time() + 0.5
            while time.process_time() < busy_until:
                pass
        own = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
    finally:
        server.shutdown()
        thread.join()
    this_process, absent = used.processes
    assert own > 0.2, "the machine was too busy for this process to run: the test shows nothing"
    assert this_process is not None and abs(this_process - own) < 0.25, (used, own)
    assert absent is None and used.machine >= this_process - 0.1, used
