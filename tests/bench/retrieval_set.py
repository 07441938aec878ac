"""The labelled questions of the retrieval benchmark, over our own documents (tests/bench/data/).

The corpus is frozen copies, so the labels stay true while the live docs change: README.md (as of the models
work), DESIGN.md, the deployment guide (its sample credentials replaced by placeholders) and the
documents-and-retrieval planning notes. A retrieved chunk is relevant when it is from the labelled document and
contains one of the phrases (compared by `normalised`): labels do not depend on how the service chunks.
Most questions are worded unlike the text they are answered by, so dense retrieval is not given the answer by
shared words; a few name an identifier, as users do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
GUIDE = "production-deployment-guide.md"
README = "README.md"
DESIGN = "DESIGN.md"
FACTS = "documents-facts.md"
CORPUS = (README, DESIGN, GUIDE, FACTS)


@dataclass(frozen=True)
class Question:
    text: str
    document: str
    phrases: tuple[str, ...]


def normalised(text: str) -> str:
    """Lower case, Markdown emphasis and code marks dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[*`]", "", text).lower().split())


def q(text: str, document: str, *phrases: str) -> Question:
    return Question(text, document, phrases)


QUESTIONS: tuple[Question, ...] = (
    # the deployment guide
    q("Which endpoint tells Kubernetes whether to restart a stuck container?", GUIDE,
      "kubernetes liveness probe", "livenessprobe:"),
    q("What is the most memory one service pod is allowed to use?", GUIDE, 'memory: "2gi"'),
    q("What does the database check answer when PostgreSQL cannot be reached?", GUIDE,
      '"database": "disconnected"'),
    q("How do I dump the database to a file before upgrading?", GUIDE, "pg_dump -u postgres admin_db"),
    q("At what latency should an alert become critical?", GUIDE, "alert thresholds"),
    q("How many copies of the service does the Kubernetes manifest run?", GUIDE, "replicas: 3"),
    q("The new version is broken after deploying: how do I go back to the old one?", GUIDE,
      "restore previous version", "rollback procedure"),
    q("Which HTTP response headers should the reverse proxy add for security?", GUIDE,
      "add_header x-frame-options"),
    q("What does the readiness probe return while the database is unavailable?", GUIDE, '"status": "not_ready"'),
    q("On which port does the container accept connections?", GUIDE, "containerport: 8001"),
    q("Which system resources should be watched after going live?", GUIDE, "system resources"),
    q("How do I check that the object storage is up before deploying?", GUIDE, "minio/health/live"),
    # README
    q("What does the one-command local setup start, step by step?", README, "starts, in order, and prints each step"),
    q("My browser does not keep the login cookie on plain http; which setting fixes that?", README,
      "cookie_secure"),
    q("How long can a session sit unused before it expires?", README, "session_idle_seconds"),
    q("What happens after someone guesses the password wrong many times?", README,
      "429 after repeated failures", "then 429"),
    q("How are forged cross-site requests from other web pages blocked?", README, "csrf, the way json apis do it"),
    q("What happens when a new version's pods never pass the gate?", README, "ready or roll back"),
    q("Where are login sessions kept, and how are their identifiers protected?", README, "sha-256 of a 256-bit random id"),
    q("How do I add a new account from the terminal?", README, "admin-api create-user"),
    q("How is a database backup put back, and is it checked first?", README, "checksum verified, then pg_restore"),
    q("If the client sends the same chat message twice after a timeout, is the model asked twice?", README,
      "replays the first result without calling the llm"),
    q("What does the operator do right before it rolls out a new version?", README, "backup first."),
    q("Which library does the operator use to talk to Kubernetes, and why that one?", README,
      "one kubernetes client"),
    q("Can the operator read every secret in the cluster?", README, "never lists or watches secrets"),
    q("How do I simulate a release whose pods never become ready?", README, "run but never become ready"),
    q("How long does building the local control plane take the first time?", README,
      "cold build of the control plane"),
    q("Are passwords or message texts ever written to the logs?", README, "message text never"),
    # DESIGN
    q("Why must none of our Python packages be named after the operator?", DESIGN, "it shadows the stdlib"),
    q("What are the API group and the plural name of the custom resource?", DESIGN, "plural adminapis"),
    q("How do we decide whether something is fast enough?", DESIGN, "ratios against a baseline measured in the same run"),
    q("Why do the tests not run MinIO's own server?", DESIGN, "minio's server is agpl"),
    q("What does the custom resource report about itself in its status?", DESIGN, "observedgeneration"),
    q("How is a rollout modelled in the operator's code?", DESIGN, "explicit state machine"),
    # the planning notes
    q("How slow is an owner-filtered vector search over ten thousand chunks in embedded Qdrant?", FACTS,
      "owner-filtered top-5 over 10k"),
    q("Which library extracts PDF text fastest, and how fast?", FACTS, "pypdfium2 (apache/bsd, 9 mb) 0.05 s"),
    q("Why not use PyMuPDF to read PDFs?", FACTS, "pymupdf is agpl"),
    q("How big are the text chunks in other chat-with-your-documents products?", FACTS, "open webui 1000 chars"),
    q("What do users of similar products complain about most?", FACTS, "most frequent complaints"),
    q("How many tokens per second does the tiny demo language model produce?", FACTS, "tokens/s generation"),
)


def corpus() -> dict[str, bytes]:
    return {name: (DATA / name).read_bytes() for name in CORPUS}


def relevant(question: Question, filename: str, chunk_text: str) -> bool:
    text = normalised(chunk_text)
    return filename == question.document and any(phrase in text for phrase in question.phrases)


def corpus_passages(count: int, chars: int = 900) -> list[str]:
    """`count` passages of `chars` characters of the corpus, whitespace collapsed (900: ~200 tokens), as
    benchmark input; the corpus is gone round again as often as needed."""
    text = " ".join(" ".join((DATA / name).read_text() for name in CORPUS).split())
    text *= 1 + count * chars // len(text)
    return [text[i * chars : (i + 1) * chars] for i in range(count)]
