"""The training conditions that separate "more kinds of text" from "more updates" (notebook 08).

Every condition trains one document's texts (batch 1, so one optimizer step per text) and is evaluated after
every epoch, so a run yields its score at every step count it passes. With `epochs` = E and n in `n_contents`:

    untrained            no training (the floor)
    n contents           the original plus n-1 style rewrites (C1..Cn), E epochs: n*E steps
    step-matched         the original alone for max(n)*E epochs: at epoch n*E it has taken as many steps
                         (and seen about as many tokens) as n contents after E epochs
    token-matched n      the original repeated n times per epoch, E epochs: the same steps and about the same
                         tokens as n contents, all of them the one text
    fixed order          max(n) contents without reshuffling between epochs (the default reshuffles, as the
                         paper's HF Trainer did): does the order of the texts matter?
    translations         the original plus its three Apertium translations (es, ca, it), E epochs

`matched` lists which (condition, epoch) pairs share a step count, so paired differences compare them.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .config import RunConfig

STYLE_CONTENTS = ("C1", "C2", "C3", "C4", "C5")  # original, qa, article, interview, textbook
TRANSLATION_CONTENTS = ("C1", "C6", "C7", "C8")  # original + es, ca, it
CONTROLS = ("step-matched", "token-matched", "fixed order", "translations")


def conditions(base: RunConfig, epochs: int, n_contents: Sequence[int] = (1, 3, 5),
               controls: Sequence[str] = CONTROLS) -> dict[str, RunConfig]:
    """Condition name -> config (still to be replicated over documents x seeds). Each config's tags carry its
    condition and its number of texts per epoch."""
    if not n_contents or not all(1 <= n <= len(STYLE_CONTENTS) for n in n_contents):
        raise ValueError(f"n_contents={list(n_contents)!r}: each must be in 1..{len(STYLE_CONTENTS)}")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"controls={list(controls)!r}: unknown {unknown} (known: {CONTROLS})")
    top = max(n_contents)

    def make(name: str, contents: Sequence[str], n_epochs: int, **changes) -> RunConfig:
        per_epoch = len(contents) * changes.get("data.repeats", 1)
        return base.replace(**{"data.contents": list(contents), "train.epochs": n_epochs,
                               "tags": {**base.tags, "condition": name, "texts_per_epoch": per_epoch}, **changes})

    out = {"untrained": make("untrained", ["C1"], 0)}
    for n in n_contents:
        out[f"{n} contents"] = make(f"{n} contents", STYLE_CONTENTS[:n], epochs)
    if "step-matched" in controls:
        out["step-matched"] = make("step-matched", ["C1"], top * epochs)
    if "token-matched" in controls:
        for n in n_contents:
            if n > 1:
                out[f"token-matched {n}"] = make(f"token-matched {n}", ["C1"], epochs, **{"data.repeats": n})
    if "fixed order" in controls and top > 1:
        out["fixed order"] = make("fixed order", STYLE_CONTENTS[:top], epochs, **{"train.shuffle": False})
    if "translations" in controls:
        out["translations"] = make("translations", TRANSLATION_CONTENTS, epochs)
    return out


def at_matched_steps(scores: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """The rows of a `question_scores` table where conditions meet at the same step count: every condition after
    its E epochs, with the step-matched control at the epoch that reaches the same number of steps. Adds a
    `comparison` column ("15 steps") to group paired differences by."""
    condition = scores["tag.condition"]
    final = scores[(scores["epoch"] == epochs) & ~condition.isin(["step-matched", "untrained"])]
    parts = []
    for steps in sorted(final["steps"].unique()):
        control = scores[(condition == "step-matched") & (scores["steps"] == steps)]
        parts.append(pd.concat([final[final["steps"] == steps], control]).assign(comparison=f"{steps} steps"))
    return pd.concat(parts, ignore_index=True) if parts else scores.iloc[:0].assign(comparison=None)


def spread_documents(ksets: Sequence, n: int) -> list[str]:
    """The names of `n` suite documents taken round-robin over fields (in name order within a field), so a small
    sample covers as many fields as it can."""
    if not 1 <= n <= len(ksets):
        raise ValueError(f"documents={n}: the suite has {len(ksets)}")
    by_field: dict[str, list[str]] = {}
    for kset in sorted(ksets, key=lambda k: k.name):
        by_field.setdefault(kset.field or "", []).append(kset.name)
    order = [names[i] for i in range(max(map(len, by_field.values())))
             for _, names in sorted(by_field.items()) if i < len(names)]
    return order[:n]
