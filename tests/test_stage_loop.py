"""The stage loop around a transform, without a broker: what a rebalance that moves a partition away
does to the streams this worker was working on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.engines.silero import SileroVad
from agents.stt import SpeechToText
from agents.stt_config import SttConfig
from streams.model_paths import ModelPaths
from streams.settings import get_settings
from streams.stage_loop import StageLoop
from streams.topics import STAGE_SOURCES
from tests.fakes import GrowingRecognizer
from tests.speech import frames, prompt_pcm, silence

SOURCE = STAGE_SOURCES["stt"]


def stage_app(executor: ThreadPoolExecutor) -> Any:
    """What StageLoop reads of its StageApp before any message: no broker behind it."""
    return SimpleNamespace(stage="stt", raw_topic=lambda spec: None, settings=SimpleNamespace(partitions=4),
                           Table=lambda *args, **kwargs: {}, executor=executor)  # fmt: skip


async def test_a_stream_whose_partition_moved_is_given_up_and_says_nothing_more() -> None:
    """Speakers a and b are mid-utterance on this worker; a rebalance moves a's partition to another
    worker, which replays a's utterance from the last commit. Here a's utterance must not be closed
    by expiry as well (a second, shorter final); b's, whose partition stayed, still is."""
    stt = SpeechToText(GrowingRecognizer(), SileroVad(ModelPaths(get_settings().models_dir).vad), SttConfig())
    with ThreadPoolExecutor(max_workers=1) as executor:
        loop = StageLoop(stage_app(executor), SOURCE, stt)
        for session, partition in (("a", 0), ("b", 1)):
            for frame in frames(silence(0.3) + prompt_pcm("en", "agent-alreadyon")[: 32_000 * 2], session=session):
                list(stt.process(frame, frame.captured_at))
            loop._partitions[session] = partition
            loop._held[session] = [SimpleNamespace(ack=lambda: None)]
        assert stt.is_open("a") and stt.is_open("b")

        await loop._rebalanced(None, {TP(SOURCE.name, 1), TP(SOURCE.name, 3)}, signal=None)

    assert not stt.is_open("a") and stt.is_open("b")
    assert "a" not in loop._held and "b" in loop._held
    closed = stt.expire(now=1e12)
    assert [(t.utterance_id.split(":")[0], t.is_final) for t in closed] == [("b", True)]
