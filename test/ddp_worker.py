"""`metricgold train` with a record of what this process trained on, for test_training_ddp.py.

    accelerate launch ... test/ddp_worker.py RECORD_DIR train --config a.yaml [--then train ...]

runs the CLI in every process `accelerate launch` starts, once per `--then`-separated command
(a later one may resume from an earlier one's checkpoint). At each checkpoint each rank writes
RECORD_DIR/<output folder name>_rank<r>.pt: {step: {'indices': the global sample indices this
rank drew in this run so far, 'weights': its trainable parameters}}. `install_recorder` does
the same inside the test process.
"""
from pathlib import Path
import sys

import torch

from metricgold_core.training import trainer


class _Recording(torch.utils.data.Dataset):
    def __init__(self, dataset, seen: list):
        self.dataset, self.seen = dataset, seen

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.seen.append(int(index))
        return self.dataset[index]


def install_recorder(record_dir, patch=setattr) -> None:
    """Wrap the trainer's dataset and checkpoint save (`patch` may be monkeypatch.setattr)."""
    record_dir = Path(record_dir)
    record_dir.mkdir(parents=True, exist_ok=True)
    seen, steps = [], {}
    real_dataset, real_save = trainer.build_train_dataset, trainer.save

    def build_train_dataset(cfg):  # once per run
        seen.clear()
        steps.clear()
        return _Recording(real_dataset(cfg), seen)

    def save(run):
        path = real_save(run)
        steps[run.step] = {'indices': list(seen),
                           'weights': {n: p.detach().cpu().clone() for n, p in run.named}}
        torch.save(steps, record_dir / f'{run.out.name}_rank{run.rank}.pt')
        return path

    patch(trainer, 'build_train_dataset', build_train_dataset)
    patch(trainer, 'save', save)


def main(argv) -> int:
    from metricgold_core.cli import main as cli
    install_recorder(argv[0])
    commands, current = [], []
    for arg in argv[1:] + ['--then']:
        if arg == '--then':
            commands.append(current)
            current = []
        else:
            current.append(arg)
    for command in commands:
        status = cli(command)
        if status:
            return status
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
