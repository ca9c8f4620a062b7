"""minGPT with prefix-tuning hooks, LoRA and the Section 5 tasks of Petrov, Torr & Bibi (2024)."""
