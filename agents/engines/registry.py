"""The translator registry: every pair that a real engine translates, directly or through one pivot.

Built from what is installed (:func:`agents.models.load_translator`): each engine says which
directions it has (:class:`PairTranslator`), and the registry routes every other pair it can
through one pivot language, chosen by measured quality. A pair it cannot reach it does not
translate: the caller gets no text for it rather than nonsense.

Choosing a route, for ``source → target``:

- a direct direction wins: the first engine, in the order given (the preferred first), that has it;
- otherwise the pivot whose chain scored best: its own measured chrF
  (``agents/data/translation_quality.json``, written by ``dragoman bench languages``), or, for a
  chain never measured, the weaker of its two legs' measured chrF; measured chains before estimated
  ones, estimated before unknown, and among equals the first pivot by name (a stable choice).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from streams.languages import Route


class PairTranslator(Protocol):
    """An engine with a fixed set of directions (``Translator`` for the pairs it lists)."""

    name: str
    pairs: frozenset[tuple[str, str]]
    """(source, target) ISO 639-1 directions it translates."""

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]: ...

    def close(self) -> None: ...


def quality_key(engines: Sequence[str], path: Sequence[str]) -> str:
    """How a route's measured chrF is filed: ``apertium:fr>es>it``, ``apertium>nllb:fr>es>it``."""
    return f"{'>'.join(dict.fromkeys(engines))}:{'>'.join(path)}"


Directions = Sequence[tuple[str, frozenset[tuple[str, str]]]]
"""Each engine's name and its directions, the preferred engine first."""


def pivot_chains(directions: Directions, source: str, target: str) -> Iterator[tuple[str, str, str]]:
    """Each one-pivot chain from ``source`` to ``target``, by pivot name: (first leg's engine, pivot,
    second leg's engine), each leg by the preferred engine that has it."""

    def first_with(pair: tuple[str, str]) -> str | None:
        return next((name for name, pairs in directions if pair in pairs), None)

    for pivot in sorted({code for _, pairs in directions for pair in pairs for code in pair} - {source, target}):
        first, second = first_with((source, pivot)), first_with((pivot, target))
        if first is not None and second is not None:
            yield first, pivot, second


def plan_routes(directions: Directions, quality: Mapping[str, float]) -> dict[tuple[str, str], Route]:
    """Every pair reachable with ``directions``, and its route (see the module's text for the choice)."""
    languages = sorted({code for _, pairs in directions for pair in pairs for code in pair})
    routes: dict[tuple[str, str], Route] = {}
    for source, target in itertools.permutations(languages, 2):
        direct = next((name for name, pairs in directions if (source, target) in pairs), None)
        if direct is not None:
            routes[(source, target)] = Route(engine=direct, chrf=quality.get(quality_key([direct], [source, target])))
            continue
        best: tuple[tuple[int, float], Route] | None = None
        for first, pivot, second in pivot_chains(directions, source, target):  # a tie keeps the first
            measured = quality.get(quality_key([first, second], [source, pivot, target]))
            legs = [
                quality.get(quality_key([first], [source, pivot])),
                quality.get(quality_key([second], [pivot, target])),
            ]
            estimated = min(leg for leg in legs if leg is not None) if None not in legs else None
            rank = (2, measured) if measured is not None else (1, estimated) if estimated is not None else (0, 0.0)
            if best is None or rank > best[0]:
                best = rank, Route(engine=f"{first}>{second}", via=pivot, chrf=measured)
        if best is not None:
            routes[(source, target)] = best[1]
    return routes


class TranslatorRegistry:
    """A ``Translator`` over every reachable pair; each text goes once to each engine leg it needs."""

    def __init__(self, engines: Sequence[PairTranslator], quality: Mapping[str, float]) -> None:
        self.engines = {engine.name: engine for engine in engines}
        """Name → engine, the preferred first."""
        self.name = " > ".join(self.engines) or "none"
        self.routes = plan_routes([(e.name, e.pairs) for e in engines], quality)
        """(source, target) → how it is translated, for every pair that can be."""

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        """``text`` in each target this registry reaches from ``source``; unreachable targets are left out.

        The targets of one engine are one call to it, and a text goes into a pivot language once
        however many targets come out of it.
        """
        routes = {t: self.routes[(source, t)] for t in targets if (source, t) in self.routes}
        out: dict[str, str] = {}
        # Legs out of the source: (engine, language) → the targets reached through it.
        first_legs: dict[tuple[str, str], list[str]] = {}
        for target, route in routes.items():
            first_legs.setdefault((route.engine.split(">")[0], route.via or target), []).append(target)
        for engine, languages in _grouped(first_legs):
            out.update(self.engines[engine].translate(text, source, languages))
        second_legs: dict[tuple[str, str], list[str]] = {}
        for target, route in routes.items():
            if route.via is not None:
                second_legs.setdefault((route.via, route.engine.split(">")[1]), []).append(target)
        for (via, engine), group in second_legs.items():
            out.update(self.engines[engine].translate(out[via], via, group))
        return {target: out[target] for target in routes}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


def _grouped(legs: Mapping[tuple[str, str], list[str]]) -> list[tuple[str, list[str]]]:
    """Each engine with the languages it is asked for, in first-seen order."""
    by_engine: dict[str, list[str]] = {}
    for engine, language in legs:
        by_engine.setdefault(engine, []).append(language)
    return list(by_engine.items())
