"""Quiz scoring shared by both backends: the same answers get the same score and feedback.

An attempt's ``answers`` is a list with one choice index (0..3) per question, in order. The result
is ``{"score", "total", "percent", "results": [{"index", "correct", "given", "expected",
"explanation"}]}``; ``percent`` is rounded half-even to one decimal.
"""

from __future__ import annotations

from typing import Any

from backends.common.errors import ValidationError


def check_answers(raw: Any, question_count: int) -> list[int]:
    if not isinstance(raw, list):
        raise ValidationError("answers: must be a list")
    if len(raw) != question_count:
        raise ValidationError(f"answers: must have {question_count} items")
    for index, item in enumerate(raw):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 3:
            raise ValidationError(f"answers[{index}]: must be between 0 and 3")
    return list(raw)


def score(questions: list[dict[str, Any]], answers: list[int]) -> dict[str, Any]:
    results = []
    for index, (question, given) in enumerate(zip(questions, answers, strict=True)):
        expected = int(question["answer"])
        results.append(
            {
                "index": index,
                "correct": given == expected,
                "given": given,
                "expected": expected,
                "explanation": question["explanation"],
            }
        )
    right = sum(1 for r in results if r["correct"])
    total = len(results)
    return {
        "score": right,
        "total": total,
        "percent": round(100 * right / total, 1) if total else 0.0,
        "results": results,
    }


def public_questions(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Questions as a student sees them before answering (no answers, no explanations)."""
    return [
        {"index": i, "question": q["question"], "choices": list(q["choices"])}
        for i, q in enumerate(questions)
    ]
