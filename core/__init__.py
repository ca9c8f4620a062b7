"""What both model families share: the one training loop (`core.loop`: pretraining, fine-tuning,
prefix-tuning and LoRA), LoRA adapters (`core.lora`) and the files of runs (`core.checkpoint`)."""
