"""Quiz storage both backends share: the ``quizzes`` and ``quiz_attempts`` table definitions.

Created by :func:`define_tables` on each backend's own ``MetaData`` (migration 4), with identical
names and columns in both stores so the data tools can copy them. ``questions`` is the generated
quiz as JSON with answers and explanations (never shown before an attempt); ``answers`` of an
attempt is the JSON list of given choices, and its results are recomputed from both with
:func:`banyan.backends.common.quizzes.score`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text


@dataclass(frozen=True, slots=True)
class QuizTables:
    quizzes: Table
    attempts: Table


def define_tables(metadata: MetaData) -> QuizTables:
    quizzes = Table(
        "quizzes",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("user_id", String(36), nullable=False),
        Column("source_kind", String(10), nullable=False),
        Column("source_id", String(36), nullable=False),
        Column("count", Integer, nullable=False),
        Column("questions", Text, nullable=False),
        Column("created_ms", BigInteger, nullable=False),
        Column("idem_hash", String(64)),
        Index("ix_quizzes_user_created", "user_id", "created_ms", "id"),
    )
    attempts = Table(
        "quiz_attempts",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("quiz_id", String(36), nullable=False),
        Column("user_id", String(36), nullable=False),
        Column("answers", Text, nullable=False),
        Column("score", Integer, nullable=False),
        Column("total", Integer, nullable=False),
        Column("created_ms", BigInteger, nullable=False),
        Column("idem_hash", String(64)),
        Index("ix_quiz_attempts_quiz", "quiz_id", "created_ms"),
    )
    return QuizTables(quizzes, attempts)
