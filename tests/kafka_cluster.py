"""Three Apache Kafka nodes on loopback (KRaft, each a broker and a controller), for fault tests."""

from __future__ import annotations

import concurrent.futures
import re
import subprocess
import time
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient

from streams.broker import KAFKA_LIB, EmbeddedKafka, free_port


class KafkaCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        voters = {node: free_port() for node in range(1, size + 1)}
        self.nodes = {
            node: EmbeddedKafka(
                free_port(), root / f"node-{node}", node, voters, replication=size, die_with_parent=False
            )
            for node in voters
        }
        self.bootstrap = ",".join(n.bootstrap for n in self.nodes.values())

    def start(self) -> KafkaCluster:
        """All at once: a node waits for a quorum of controllers before it answers."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(EmbeddedKafka.start, self.nodes.values()))
        return self

    def kill(self, node: int) -> float:
        """SIGKILL a node; returns when."""
        psutil.Process(self.nodes[node].pid).kill()
        killed_at = time.monotonic()
        self.nodes[node].stop()  # reaps it; its log directory stays
        return killed_at

    def restart(self, node: int) -> None:
        self.nodes[node].start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def bootstrap_without(self, node: int) -> str:
        return ",".join(n.bootstrap for i, n in self.nodes.items() if i != node)


async def partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Each partition of ``topic`` → (its leader, its in-sync replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], sorted(p["isr"])) for p in described["partitions"]}


def kafka_tool(bootstrap: str, tool: str, *args: str) -> str:
    """One of Kafka's own command-line tools (from the kafka-tools jar), as an operator runs it."""
    done = subprocess.run(["java", "-Xmx256m", "-cp", f"{KAFKA_LIB}/*", tool, "--bootstrap-server", bootstrap, *args],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout


def quorum_leader(bootstrap: str) -> int:
    """The active KRaft controller, as ``kafka-metadata-quorum describe --status`` says (a metadata
    response names a random broker as controller under KRaft)."""
    status = kafka_tool(bootstrap, "org.apache.kafka.tools.MetadataQuorumCommand", "describe", "--status")
    found = re.search(r"^LeaderId:\s+(\d+)", status, re.M)
    assert found, status
    return int(found.group(1))
