"""Train PEFT prefix-tuning (or prompt-tuning) adapters with PEFT itself, on a Hugging Face model and a text task.

    python -m lm.peft_train --hf-model models/gpt2-standin --task classification --prefix-len 10 --seeds 1-3 \
        --out results/peft/gpt2-classification-n10

How most people prefix-tune today: PEFT's own model wrapper (`get_peft_model` with `PrefixTuningConfig`,
`prefix_projection` off, so each layer's keys and values at the n_S positions are the parameters) trained by
`transformers.Trainer`, one seed at a time (`--method prompt`: `PromptTuningConfig`, virtual tokens at the input), on the task's training split with the loss on the target tokens
(Appendix B's settings: Adam at lr 0.01, batch 32, by default 3 epochs; the learning rate stays constant, where
`lm.prefix_tune` multiplies it by 0.975 every 1,000 steps, which at these lengths changes nothing). Each seed's adapter is saved with
`save_pretrained` in `<out>/seed<k>/`, and `<out>/manifest.json` records the command, settings, wall times,
loss curves and the held-out accuracy of each adapter (the label of highest log-probability, as
`lm.prefix_tune` scores its own prefixes), beside the untuned model and the majority class.
"""

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import List

import torch

from core.checkpoint import sha256
from core.records import ROOT, provenance, shown
from lm import text_tasks
from lm.prefix_tune import majority, parse_seeds
from lm.stand_ins import load_gpt2


def collate(items: List[text_tasks.Encoded], pad_id: int) -> dict:
    """input_ids, attention_mask and labels (-100 except on the target tokens) for a causal LM, right-padded."""
    width = max(len(e.prompt) + len(e.target) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, e in enumerate(items):
        whole = e.prompt + e.target
        ids[row, :len(whole)] = torch.tensor(whole)
        mask[row, :len(whole)] = 1
        labels[row, len(e.prompt):len(whole)] = torch.tensor(e.target)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def label_accuracy(model, tokenizer, examples, labels, batch_size: int = 64) -> float:
    """Held-out accuracy (%) of the label of highest log-probability after each prompt."""
    items = [text_tasks.encode(tokenizer, text_tasks.Example(e.prompt, " " + label, label), eos=False)
             for e in examples for label in labels]
    scores = []
    for start in range(0, len(items), batch_size):
        batch = collate(items[start:start + batch_size], tokenizer.eos_id)
        log_probs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().log_softmax(-1)
        targets = batch["labels"][:, 1:]
        token = log_probs[:, :-1].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((token * (targets != -100)).sum(1))
    best = torch.cat(scores).view(len(examples), len(labels)).argmax(1)
    return 100.0 * sum(labels[i] == e.label for i, e in zip(best.tolist(), examples)) / len(examples)


def train_seed(hf_model: Path, items, settings: dict, seed: int, out: Path) -> dict:
    """One adapter trained by transformers.Trainer and saved in `out`: {"model", "wall_time_s", "loss_curve"}."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed
    set_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(hf_model, dtype=torch.float32)
    if settings["method"] == "prefix":
        config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=settings["prefix_len"], prefix_projection=False)
    else:
        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=settings["prefix_len"])
    model = get_peft_model(base, config)
    arguments = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"], learning_rate=settings["lr"], lr_scheduler_type="constant",
        optim="adamw_torch", weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0,
        logging_steps=settings["log_every"], save_strategy="no", report_to=[], seed=seed, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=False)
    trainer = Trainer(model=model, args=arguments, train_dataset=items,
                      data_collator=lambda batch: collate(batch, settings["pad_id"]))
    start = time.time()
    trainer.train()
    wall = time.time() - start
    model.save_pretrained(str(out))
    config_path = out / "adapter_config.json"        # the base model as records keep it, not this machine's path
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = shown(hf_model)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out / "trainer", ignore_errors=True)  # the Trainer's scratch folder (nothing is saved there)
    (out / "README.md").unlink(missing_ok=True)          # PEFT's empty model-card template
    curve = [[entry["step"], entry["loss"]] for entry in trainer.state.log_history if "loss" in entry]
    return {"model": model.eval(), "wall_time_s": wall, "loss_curve": curve}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lm.peft_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-model", type=Path, default=ROOT / "models" / "gpt2-standin",
                        help="a Hugging Face GPT-2 folder (default: the stand-in)")
    parser.add_argument("--task", choices=("classification",), default="classification",
                        help="the stand-in's classification task (scored by label accuracy)")
    parser.add_argument("--method", choices=("prefix", "prompt"), default="prefix",
                        help="prefix tuning (keys and values in every layer) or prompt tuning (virtual tokens at the input)")
    parser.add_argument("--prefix-len", type=int, default=10, help="n_S: positions the prefix or the virtual tokens take")
    parser.add_argument("--seeds", default="1-3", help="'1-3', '1,4' (default 1-3)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    _, tokenizer = load_gpt2(args.hf_model)
    task = text_tasks.corpus_task(args.task, ROOT / "data" / "corpus")
    items = [text_tasks.encode(tokenizer, e, eos=False) for e in task.examples("train")]
    settings = {"method": args.method, "prefix_len": args.prefix_len, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "log_every": 8, "pad_id": tokenizer.eos_id}
    test = task.examples("test")
    untuned = AutoModelForCausalLM.from_pretrained(args.hf_model, dtype=torch.float32).eval()
    manifest = {**provenance("lm.peft_train", argv),
                "hf_model": shown(args.hf_model), "task": args.task, "settings": settings,
                "examples": {"train": len(items), "test": len(test)},
                "untuned_accuracy": label_accuracy(untuned, tokenizer, test, task.labels),
                "majority": majority(task), "seeds": {}}
    for seed in parse_seeds(args.seeds):
        folder = args.out / f"seed{seed}"
        run = train_seed(args.hf_model, items, settings, seed, folder)
        accuracy = label_accuracy(run["model"], tokenizer, test, task.labels)
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.hf_model, dtype=torch.float32),
                                             str(folder)).eval()
        manifest["seeds"][str(seed)] = {
            "accuracy": accuracy, "accuracy_reloaded": label_accuracy(reloaded, tokenizer, test, task.labels),
            "wall_time_s": round(run["wall_time_s"], 1), "loss_curve": run["loss_curve"],
            "adapter_sha256": sha256(folder / "adapter_model.safetensors")}
        print(f"seed {seed}: accuracy {accuracy:.1f} % ({run['wall_time_s']:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out}/manifest.json; untuned {manifest['untuned_accuracy']:.1f} %, majority "
          f"{manifest['majority']['accuracy']:.1f} %")


if __name__ == "__main__":
    main()
