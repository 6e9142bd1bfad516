"""Sanity checks for a sciknow knowledge-set JSON file.

Usage: python data/knowledge/check_knowledge.py [FILE.json ...]
(defaults to every *.json next to this script). Exits non-zero on any failure.
"""
import json
import re
import sys
from pathlib import Path

TOP = ["name", "description", "source", "license", "notes", "contents",
       "extra_translations", "questions", "irrelevant_texts"]
REGEX_SPECIAL = set(".^$*+?()[]{}|\\%")


def check(path):
    d = json.loads(Path(path).read_text())
    errors = []
    fail = errors.append
    if list(d) != TOP:
        fail(f"top-level keys {list(d)} != {TOP}")
    for c in d["contents"]:
        if set(c) != {"id", "lang", "style", "text"}:
            fail(f"content {c.get('id')} keys {sorted(c)}")
    for q in d["questions"]:
        if set(q) != {"id", "question", "reference_answer", "keywords"}:
            fail(f"question {q.get('id')} keys {sorted(q)}")
        if not (1 <= len(q["keywords"]) <= 4) or not all(isinstance(k, str) and k for k in q["keywords"]):
            fail(f"{q['id']}: need 1-4 non-empty string keywords")
    for t in d["irrelevant_texts"]:
        if set(t) != {"id", "text"}:
            fail(f"irrelevant {t.get('id')} keys {sorted(t)}")

    original = next(c for c in d["contents"] if c["style"] == "original")
    english = [c for c in d["contents"] if c["lang"] == "en"]
    all_kw = [(q["id"], k) for q in d["questions"] for k in q["keywords"]]

    print(f"== {path}")
    print("word counts:")
    for c in d["contents"]:
        print(f"  {c['id']} {c['lang']} {c['style']:<12} {len(c['text'].split()):4d} words")
        if c["style"] == "translation" and "*" in c["text"]:
            fail(f"{c['id']}: apertium '*' marker left in translation")
    for t in d["irrelevant_texts"]:
        print(f"  {t['id']:<4} irrelevant {len(t['text'].split()):4d} words")

    print("keyword leak check (keyword vs. question text, case-sensitive and case-insensitive):")
    for q in d["questions"]:
        for k in q["keywords"]:
            leaks = [o["id"] for o in d["questions"] if k.lower() in o["question"].lower()]
            status = "LEAK in " + ",".join(leaks) if leaks else "ok"
            print(f"  {q['id']} {k!r:<22} in-question: {status}")
            if leaks:
                fail(f"{q['id']}: keyword {k!r} occurs in question(s) {leaks}")

    for qid, k in all_kw:
        if k not in original["text"]:
            fail(f"{qid}: keyword {k!r} not a case-sensitive substring of {original['id']}")
        for c in english:
            if k not in c["text"]:
                fail(f"{qid}: keyword {k!r} missing from {c['id']} ({c['style']})")
        q = next(q for q in d["questions"] if q["id"] == qid)
        if k not in q["reference_answer"]:
            fail(f"{qid}: keyword {k!r} missing from its reference answer")
        for t in d["irrelevant_texts"]:
            if k.lower() in t["text"].lower():
                fail(f"{qid}: keyword {k!r} occurs in irrelevant text {t['id']}")
        # the keyword must be matchable both literally and through re.escape
        if not re.search(re.escape(k), original["text"]):
            fail(f"{qid}: re.escape({k!r}) does not match {original['id']}")

    special = [k for _, k in all_kw if REGEX_SPECIAL & set(k)]
    print(f"keywords with regex-special characters: {special}")
    if not special:
        fail("no keyword with regex-special characters")

    for e in errors:
        print("FAIL:", e)
    print("RESULT:", "FAIL" if errors else "PASS",
          f"({len(d['contents'])} contents, {len(d['questions'])} questions, "
          f"{len(all_kw)} keywords, {len(d['irrelevant_texts'])} irrelevant texts)")
    return not errors


if __name__ == "__main__":
    files = sys.argv[1:] or sorted(str(p) for p in Path(__file__).parent.glob("*.json"))
    ok = all([check(f) for f in files])
    sys.exit(0 if ok else 1)
