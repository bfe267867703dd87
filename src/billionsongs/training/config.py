"""Training settings, kept apart from the trainer so the CLI can show their defaults in `--help`
without importing torch and transformers (a second of start-up, and 400k objects that every forked
web process would otherwise inherit and garbage-collect)."""

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: list[str]
    run: str
    runs_dir: str = "runs"
    column: str = "text"
    title_column: str | None = None
    include: str = "*.txt"
    base: str = "fresh:small"
    checkpoint: str = "latest"
    steps: int = 1000
    time_limit: float | None = None
    batch_size: int = 16
    accumulate: int = 1
    block_size: int | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    sample_every: int = 200
    save_every: int = 200
    eval_every: int = 200
    eval_batches: int = 20
    val_fraction: float = 0.05
    seed: int = 1337
    precision: str = "auto"
    device: str = "auto"
    sample_ids: list[int] = field(default_factory=lambda: [0, 1, 2])
