"""Check knowledge-set files with sciknow's own loader (the one validator), and print what they hold.

Usage: python data/knowledge/check_knowledge.py [FILE.json | SUITE_FOLDER ...]
(default: zephyrite.json and the suite/ folder next to this script). Every file is loaded strictly: schema,
types, every keyword in the original and each English rewrite, no keyword in any question or paraphrase; a
suite folder adds the cross-document rules. A machine-written suite folder (one holding PARTIAL_REWRITES.md, e.g.
suite_machine/) is loaded with only the every-rewrite-carries-every-keyword rule relaxed, and each rewrite's keyword
coverage is printed. Exits non-zero on the first failure, naming file and field.
"""
import sys
from pathlib import Path

from sciknow.data import KnowledgeSet, KnowledgeSetError, has_partial_rewrites, load_knowledge_set, load_suite

HERE = Path(__file__).resolve().parent


def describe(kset: KnowledgeSet) -> None:
    n_keywords = sum(len(q.keywords) for q in kset.questions)
    words = ", ".join(f"{c.id} {c.style}/{c.lang} {len(c.text.split())}w" for c in kset.contents)
    print(f"  {kset.name} ({kset.field or 'no field'}): {len(kset.questions)} questions, {n_keywords} keywords, "
          f"{len(kset.irrelevant_texts)} irrelevant texts; {words}")
    if kset.partial_rewrites:
        print("    keyword coverage: " + ", ".join(f"{cid} {carried}/{total}"
                                                    for cid, (carried, total) in kset.keyword_coverage().items()))


def main(targets: list[str]) -> int:
    targets = targets or [str(HERE / "zephyrite.json"), str(HERE / "suite")]
    for target in targets:
        print(f"== {target}")
        try:
            sets = (load_suite(target, partial_rewrites=has_partial_rewrites(target)) if Path(target).is_dir()
                    else [load_knowledge_set(target, strict=True)])
        except KnowledgeSetError as err:
            print(f"FAIL: {err}")
            return 1
        for kset in sets:
            describe(kset)
        print(f"PASS ({len(sets)} document(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
