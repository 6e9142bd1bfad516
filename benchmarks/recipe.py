"""The original study's recipe (Hatakeyama-Sato et al. 2023) as reproduced here, the other side of every comparison.

  * evaluation: `pipeline("text-generation")` called once per question, greedy, max_new_tokens=100;
  * training: HF `Trainer`, batch size 1, a fresh `trainer.train()` per epoch with a generation pass after it;
  * a sweep trial reloads the model from disk (section `sweep`).

This is the study's own code path, not sciknow's: it uses HF's classes directly (and one `Trainer` hook to fix
the data order), so that both sides see the same inputs.
"""
from __future__ import annotations

import torch

from sciknow.config import TrainSpec
from sciknow.evaluate import build_prompt
from sciknow.train import collate


def pipeline_answers(model, tokenizer, questions: list[str], max_new_tokens: int) -> list[str]:
    """The original study's evaluation: one pipeline call per question, greedy, same chat-template prompt."""
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    answers = []
    for q in questions:
        out = pipe(build_prompt(tokenizer, q), max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                   return_full_text=False, pad_token_id=tokenizer.pad_token_id)
        answers.append(out[0]["generated_text"].strip())
    return answers


def epoch_orders(n: int, epochs: int, seed: int) -> list[list[int]]:
    """sciknow.train's data order (one randperm per epoch from a seeded generator), so both sides see it."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g).tolist() for _ in range(epochs)]


class HFRecipe:
    """The original study's training loop: ONE HF `Trainer` whose `train()` is called once per epoch
    (num_train_epochs=1, batch size 1). AdamW's state carries over between calls; the default linear schedule
    restarts with every call, decaying lr to 0 within each epoch (sciknow: `lr_schedule="linear_per_epoch"`).
    Each epoch sees the data in sciknow's order, so loss curves compare step by step."""

    def __init__(self, model, tokenizer, examples: list[torch.Tensor], spec: TrainSpec, output_dir: str) -> None:
        from torch.utils.data import SequentialSampler
        from transformers import PrinterCallback, Trainer, TrainingArguments

        class InOrder(Trainer):  # the dataset is handed over already in this epoch's order
            def _get_train_sampler(self, train_dataset=None):
                return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        self.examples = examples
        targs = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=1, num_train_epochs=1, learning_rate=spec.lr,
            lr_scheduler_type="linear", warmup_steps=0, weight_decay=spec.weight_decay,
            max_grad_norm=spec.max_grad_norm,
            # HF's default on torch >= 2.8; sciknow uses the same fused AdamW (`sciknow.train.adamw`). Pinned so
            # the comparison stays like for like if either default changes.
            optim="adamw_torch_fused",
            logging_strategy="no", save_strategy="no", report_to="none", seed=spec.seed, use_cpu=True,
            disable_tqdm=True, remove_unused_columns=False,
        )
        self.trainer = InOrder(model=model, args=targs, train_dataset=[],
                               data_collator=lambda feats: collate([f["input_ids"] for f in feats],
                                                                   tokenizer.pad_token_id))
        self.trainer.remove_callback(PrinterCallback)  # it prints the end-of-train metrics dict

    def epoch(self, order: list[int]) -> None:
        self.trainer.train_dataset = [{"input_ids": self.examples[i]} for i in order]
        self.trainer.train()
