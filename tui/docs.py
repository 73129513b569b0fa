"""A cause's documentation from the knowledge base (what ``diag rules show CAUSE`` prints)."""

from __future__ import annotations

from rich.text import Text

SECTIONS = (("what", "What it detects"), ("why", "Why it matters"), ("use_instead", "Use instead"),
            ("false_positives", "False positives"))


def knowledge_base():
    """The knowledge base the diagnosis used: the engine's per-process cache, loaded once."""
    from diag.engine.api import builtin_knowledge_base  # already filled by diagnose(): no second parse

    return builtin_knowledge_base()


def cause_documentation(cause_id: str) -> Text | None:
    """The documentation sections of ``cause_id`` as text, or None when the catalog lacks it.

    Example:
      >>> print(cause_documentation("lr_too_high").plain.splitlines()[0])  # doctest: +SKIP
      What it detects
    """
    cause = knowledge_base().causes.get(cause_id)
    if cause is None:
        return None
    doc = cause.spec.doc
    text = Text()
    for field, title in SECTIONS:
        body = " ".join(str(getattr(doc, field, "") or "").split())
        if not body:
            continue
        text.append(f"{title}\n", style="bold")
        text.append(body + "\n\n")
    if doc.references:
        text.append("References\n", style="bold")
        for reference in doc.references:
            text.append(f"{reference}\n", style="underline")
    text.append(f"\nDefined in {cause.path}:{cause.pos[0]}", style="dim")
    return text
