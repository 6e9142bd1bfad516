"""Copy the figures of the notebooks' default runs (runs/<notebook>/) into docs/figures/ as small PNGs.

    .venv/bin/python scripts/gallery.py          # after running notebooks with their default out_dir

Each figure is re-saved at a width of at most 900 pixels, so the gallery stays small enough to commit. A run
that is missing is reported and skipped: the gallery shows what has been run.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image  # installed with matplotlib

REPO = Path(__file__).resolve().parents[1]
MAX_WIDTH = 900
# notebook default out_dir -> the figures it writes
FIGURES = {
    "runs/00_teach_your_own": ["fig00_scores.png"],
    "runs/01_task1a": ["fig1a.png"],
    "runs/02_task1b": ["fig1b.png"],
    "runs/03_task2a": ["fig_s1.png"],
    "runs/04_task2b": ["fig3.png"],
    "runs/05_task3": ["fig4.png"],
    "runs/06_datasets/plos-starter": ["fig06_dataset.png"],
    "runs/07_task4": ["fig6.png", "figS4.png", "fig07_differences.png"],
    "runs/08_what_makes_knowledge_stick": ["fig08_steps.png", "fig08_forest.png", "fig08_paraphrase.png",
                                           "fig08_plateau.png"],
    "runs/09_train_vs_retrieve": ["fig09_scores.png", "fig09_differences.png", "fig09_recall.png", "fig09_cost.png"],
    "runs/10_model_size": ["fig10_size.png", "fig10_advantage.png"],
    "runs/11_forgetting_frontier": ["fig11_frontier.png"],
}


def shrink(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image.thumbnail((MAX_WIDTH, MAX_WIDTH * image.height // image.width))
        image.save(target, optimize=True)


def main() -> int:
    out = REPO / "docs" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for folder, names in FIGURES.items():
        for name in names:
            source = REPO / folder / name
            if not source.exists():
                print(f"missing (run its notebook first): {source.relative_to(REPO)}")
                continue
            shrink(source, out / name)
            print(f"{out.relative_to(REPO) / name}: {(out / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
