"""Memory recall on long chat histories: does Hex find the turn a question is about?

Each history in ``bench/recall_data`` (``SLUG.history.jsonl``, the format of
``hexbus memory import``) goes through Hex's own import (``read_history``,
``batches``, ``Ingest.history``) into a fresh DuckDB store, and each of its
questions (``SLUG.questions.json``: kind, question, the time it is asked, the
ids of its evidence turns) through ``Search.query`` with k=10 and the question's
time as the conversation's time. A question's recall is the share of its
evidence turns among the turns of the 10 hits; the figures are means over
questions, overall and per kind (single-hop, multi-hop, temporal, open-domain).

Baselines over the same turns, in the same run, with the same embedding model:
plain dense (all-MiniLM-L6-v2 cosine over "speaker: text"), plain BM25 (bm25s,
English stopwords and Snowball stems, over "speaker: text") and their 50/50
fusion (each retriever's scores min-max scaled over the history, then averaged).

    python bench/recall.py                 # every history in bench/recall_data
    python bench/recall.py --only flat-7b  # one history
    python bench/recall.py --data DIR      # another set in the same format
    python bench/recall.py --fit           # fit the ranking weights (see :func:`fit`)

Keys: ``recall_at_10`` (Hex), ``recall_at_10_fusion_baseline``, ``..._dense_baseline``,
``..._bm25_baseline``, ``recall_by_kind`` ({kind: {hex, fusion, dense, bm25, n}}),
``recall_vs_fusion`` (ratio), ``query_p50_ms``/``query_p95_ms`` (Hex's search, in
process, without the bus), ``import_s``, and per-history figures. The data was
written apart from the ranker and is never used to fit it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import bm25s  # type: ignore[import-untyped]
import msgspec
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]

from actors.memory.bank import MemoryBank
from actors.memory.config import MemoryConfig
from actors.memory.embed import Embedder, embedding_model, set_torch_threads
from actors.memory.importer import batches, read_history
from actors.memory.ingest import Ingest
from actors.memory.rank import Candidate, Weights, rank
from actors.memory.search import Search
from bench._common import emit, parser, percentile, progress
from hexbus.log import configure
from schemas import ImportedTurn, MemoryQuery

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parent / "recall_data"
K = 10
KINDS = ("single-hop", "multi-hop", "temporal", "open-domain")
RETRIEVERS = ("hex", "fusion", "dense", "bm25")


class Question(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    question: str
    asked_at: str
    evidence: tuple[str, ...]
    answer: str = ""

    @property
    def at(self) -> float:
        parsed = datetime.fromisoformat(self.asked_at.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def recall(found: Sequence[str], evidence: Sequence[str]) -> float:
    """The share of the evidence turns among ``found``."""
    return len(set(found) & set(evidence)) / len(set(evidence))


def _minmax(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    span = float(x.max() - x.min())
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


class Baselines:
    """Plain dense, plain BM25 and their 50/50 fusion over "speaker: text" of every turn."""

    def __init__(self, turns: Sequence[ImportedTurn], embedder: Embedder) -> None:
        self.ids = [t.id for t in turns]
        texts = [f"{t.speaker}: {t.text}" for t in turns]
        self.vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
        self.embedder = embedder
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.bm25 = bm25s.BM25()
        self.bm25.index(tokens, show_progress=False)
        self.vocab = tokens.vocab

    def scores(self, question: str) -> dict[str, npt.NDArray[np.float32]]:
        dense = self.vectors @ np.asarray(self.embedder.encode([question])[0], dtype=np.float32)
        query = bm25s.tokenize(
            [question], stopwords="en", stemmer=self.stemmer, show_progress=False
        )
        words = [w for w, i in query.vocab.items() if i in set(query.ids[0])]
        known = [self.vocab[w] for w in words if w in self.vocab]
        keyword = (
            np.asarray(self.bm25.get_scores_from_ids(known), dtype=np.float32)
            if known
            else np.zeros(len(self.ids), dtype=np.float32)
        )
        return {
            "dense": dense,
            "bm25": keyword,
            "fusion": 0.5 * _minmax(dense) + 0.5 * _minmax(keyword),
        }

    def top(self, scores: npt.NDArray[np.float32]) -> list[str]:
        order = np.lexsort((np.arange(len(scores)), -scores))[:K]
        return [self.ids[i] for i in order]


def run_history(
    slug: str,
    folder: Path,
    embedder: Embedder,
    work: Path,
    config: MemoryConfig,
    gathered: list[Gathered] | None = None,
) -> dict[str, Any]:
    turns, problems = read_history(folder / f"{slug}.history.jsonl")
    if problems:
        raise SystemExit(f"{slug}: {len(problems)} bad lines, first: {problems[0]}")
    questions = msgspec.json.decode(
        (folder / f"{slug}.questions.json").read_bytes(), type=list[Question]
    )
    bank = MemoryBank.open(
        work / slug / "memory.duckdb",
        embedder,
        work / slug / "journals",
        duplicate_similarity=config.duplicate_similarity,
    )
    try:
        started = time.perf_counter()
        ingest = Ingest(bank, config)
        for event in batches(turns, source=f"{slug}.history.jsonl"):
            ingest.history(event, offset=None)
        import_s = time.perf_counter() - started
        search = Search(bank, config)
        baselines = Baselines(turns, embedder)
        rows: list[dict[str, Any]] = []
        latencies: list[float] = []
        for q in questions:
            began = time.perf_counter()
            hits = search.query(MemoryQuery(text=q.question, k=K, at=q.at), touch=False)
            latencies.append((time.perf_counter() - began) * 1000)
            row = {
                "id": q.id,
                "kind": q.kind,
                "hex": recall([t for h in hits[:K] for t in h.turn_ids], q.evidence),
            }
            for name, scores in baselines.scores(q.question).items():
                row[name] = recall(baselines.top(scores), q.evidence)
            rows.append(row)
            if gathered is not None:
                query = MemoryQuery(text=q.question, k=K, at=q.at)
                candidates, memories = search.gather(query)
                turns_of = {label: m.turn_ids for label, m in memories.items()}
                gathered.append(Gathered(slug, q.kind, q.evidence, candidates, turns_of))
    finally:
        bank.close()
    return {
        "slug": slug,
        "turns": len(turns),
        "import_s": round(import_s, 2),
        "rows": rows,
        "latencies": latencies,
    }


class Gathered(NamedTuple):
    slug: str
    kind: str
    evidence: tuple[str, ...]
    candidates: list[Candidate]
    turns_of: dict[int, tuple[str, ...]]


GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
FITTED = ("keyword", "fused", "person", "when", "recency", "exact_bonus")


def score(weights: Weights, items: Sequence[Gathered]) -> float:
    """Mean over the four kinds of mean recall@10, so no kind is traded away for another."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for g in items:
        top = rank(g.candidates, weights, k=K)
        found = [t for s in top for t in g.turns_of[s.label]]
        by_kind[g.kind].append(recall(found, g.evidence))
    return sum(sum(v) / len(v) for v in by_kind.values()) / max(1, len(by_kind))


def fit(items: Sequence[Gathered], start: Weights) -> Weights:
    """Coordinate ascent over :data:`GRID` for each weight in :data:`FITTED` (semantic stays 1,
    the scale), three rounds; then the recency half-life."""
    best = msgspec.structs.replace(start, semantic=1.0)
    best_score = score(best, items)
    for _ in range(3):
        for name in FITTED:
            for value in GRID:
                trial = msgspec.structs.replace(best, **{name: value})
                if (trial_score := score(trial, items)) > best_score + 1e-9:
                    best, best_score = trial, trial_score
    for days in (7.0, 30.0, 90.0, 365.0):
        trial = msgspec.structs.replace(best, recency_half_life_days=days)
        if (trial_score := score(trial, items)) > best_score + 1e-9:
            best, best_score = trial, trial_score
    return best


def cross_validate(items: list[Gathered], start: Weights) -> dict[str, Any]:
    """Weights fit on all histories but one, judged on the one left out, for each history; then
    the weights fit on all."""
    slugs = sorted({g.slug for g in items})
    held_out: dict[str, float] = {}
    for slug in slugs:
        weights = fit([g for g in items if g.slug != slug], start)
        held_out[slug] = round(score(weights, [g for g in items if g.slug == slug]), 3)
    weights = fit(items, start)
    return {
        "held_out_macro_recall": held_out,
        "held_out_mean": round(sum(held_out.values()) / len(held_out), 3),
        "start_macro_recall": round(score(start, items), 3),
        "fitted_macro_recall": round(score(weights, items), 3),
        "fitted": {name: getattr(weights, name) for name in (*FITTED, "recency_half_life_days")},
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [row for run in runs for row in run["rows"]]
    latencies = [ms for run in runs for ms in run["latencies"]]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    by_kind: dict[str, dict[str, float | None]] = defaultdict(dict)
    for kind in KINDS:
        of_kind = [r for r in rows if r["kind"] == kind]
        for name in RETRIEVERS:
            by_kind[kind][name] = mean([r[name] for r in of_kind])
        by_kind[kind]["n"] = len(of_kind)
    overall = {name: mean([r[name] for r in rows]) for name in RETRIEVERS}
    return {
        "recall_at_10": overall["hex"],
        "recall_at_10_fusion_baseline": overall["fusion"],
        "recall_at_10_dense_baseline": overall["dense"],
        "recall_at_10_bm25_baseline": overall["bm25"],
        "recall_vs_fusion": round(overall["hex"] / overall["fusion"], 3)
        if overall["hex"] is not None and overall["fusion"]
        else None,
        "recall_by_kind": dict(by_kind),
        "kinds_below_fusion": [
            k
            for k in KINDS
            if by_kind[k]["n"] and (by_kind[k]["hex"] or 0.0) < (by_kind[k]["fusion"] or 0.0)
        ],
        "query_p50_ms": round(percentile(latencies, 50), 1),
        "query_p95_ms": round(percentile(latencies, 95), 1),
        "questions": len(rows),
        "histories": {
            run["slug"]: {
                "turns": run["turns"],
                "questions": len(run["rows"]),
                "import_s": run["import_s"],
                **{name: mean([r[name] for r in run["rows"]]) for name in RETRIEVERS},
            }
            for run in runs
        },
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", type=Path, default=DATA, help="folder of SLUG.history.jsonl files")
    p.add_argument("--only", action="append", default=[], help="run only this history (repeat)")
    p.add_argument("--misses", type=Path, help="write each question's recall per retriever here")
    p.add_argument("--fit", action="store_true", help="also fit the ranking weights (slow)")
    args = p.parse_args()
    slugs = sorted(f.name.removesuffix(".history.jsonl") for f in args.data.glob("*.history.jsonl"))
    slugs = [s for s in slugs if not args.only or s in args.only][: 1 if args.quick else None]
    if not slugs:
        raise SystemExit(f"no SLUG.history.jsonl in {args.data}")
    configure("bench.recall", "warning")  # logs on stderr; stdout is the JSON
    set_torch_threads()
    embedder = embedding_model("").get()
    config = MemoryConfig()
    runs = []
    gathered: list[Gathered] | None = [] if args.fit else None
    with tempfile.TemporaryDirectory(prefix="hex-recall-") as tmp:
        for slug in slugs:
            progress(f"{slug}: import and {K}-nearest for every question")
            runs.append(run_history(slug, args.data, embedder, Path(tmp), config, gathered))
    if args.misses:
        args.misses.write_text(json.dumps([r for run in runs for r in run["rows"]], indent=1))
    result = summarize(runs)
    if gathered:
        progress("fitting the ranking weights, one history held out at a time")
        result["fit"] = cross_validate(gathered, config.weights)
    emit(result)


if __name__ == "__main__":
    main()
