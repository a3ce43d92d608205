"""`metricgold evaluate` on posed sequences: TAE, scale stability and fused maps per sequence.

    metricgold evaluate --dataset trajectory --count 8 --frames 24 --fps 10 --output DIR
    metricgold evaluate --dataset redwood --root DIR --sequence --output DIR

The per-frame metrics stay those of `evaluate`; a SequenceRecorder keeps each frame's
prediction with its pose and, when a sequence ends, scores it (sequences.score_sequence) and
writes `maps/<sequence>.png` (both fused maps, top and perspective views). At the end it
writes `sequences.csv` and adds a table to summary.md and a `sequences` entry to summary.json.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from ..evaluation.metrics import ground_truth_mask

LOG = logging.getLogger(__name__)

COLUMNS = ('sequence', 'kind', 'motion', 'frames', 'tae', 'tae_gt', 'scale_cv', 'scale_mean',
           'scale_min', 'scale_max', 'scale_max_step',
           'map_accuracy_cm', 'map_completeness_cm', 'map_fscore_5cm', 'map_fscore_10cm',
           'map_precision_5cm', 'map_recall_5cm', 'map_points', 'map_true_points',
           'gt_map_accuracy_cm', 'gt_map_completeness_cm', 'gt_map_fscore_5cm',
           'gt_map_fscore_10cm', 'gt_map_points')
# the summary means of these, per kind and over all sequences
MEANS = ('tae', 'tae_gt', 'scale_cv', 'scale_max_step', 'map_accuracy_cm',
         'map_completeness_cm', 'map_fscore_5cm', 'map_fscore_10cm', 'gt_map_accuracy_cm',
         'gt_map_completeness_cm', 'gt_map_fscore_5cm', 'gt_map_fscore_10cm')


def add_arguments(p) -> None:
    """The sequence options of `evaluate`."""
    p.add_argument('--sequence', action='store_true',
                   help='score the frames as one posed sequence (poses from the root: '
                   'trajectory.log or pose.txt): TAE, scale stability and a fused map; '
                   'implied by --dataset trajectory')
    p.add_argument('--frames', type=int, default=24,
                   help='trajectory: frames per trajectory (default 24)')
    p.add_argument('--fps', type=float, default=10.0,
                   help='trajectory: frame rate in Hz (default 10)')
    p.add_argument('--no-map', action='store_true',
                   help='sequences: skip the fused maps (they need Open3D, the `map` extra)')


def open_trajectories(args):
    """The TrajectoryFrames of `--dataset trajectory` (caps as the procedural scenes)."""
    from ..data.trajectory import TrajectoryFrames
    h, w = args.size
    return TrajectoryFrames(args.count, h, w, frames=args.frames, fps=args.fps,
                            seed=args.scene_seed)


def posed(args, dataset):
    """`dataset` read as a posed sequence when the arguments ask for one, else unchanged."""
    if not args.sequence or args.dataset == 'trajectory':
        return dataset
    from ..data.poses import PosedFrames
    return PosedFrames(dataset, args.dataset)


def open_recorder(args):
    """A SequenceRecorder when this evaluation is one of sequences, else None. Raises
    ImportError (with the install hint) when maps are asked for and Open3D is missing."""
    if not (args.sequence or args.dataset == 'trajectory'):
        return None
    maps = not args.no_map
    if maps:
        from ..evaluation.mapping import require_open3d
        try:
            require_open3d()
        except ImportError as exc:
            raise ImportError(f'{exc} (or pass --no-map: TAE and scale stability only)') from exc
    return SequenceRecorder(Path(args.output), maps)


class SequenceRecorder:
    """Collects (prediction, ground truth, pose) per frame; scores each sequence as it ends."""

    def __init__(self, out_dir, maps: bool = True):
        self.out_dir, self.maps = Path(out_dir), maps
        self.rows, self._frames, self._current = [], [], None

    def add(self, sample: dict, pred: np.ndarray, mask: np.ndarray | None,
            min_depth: float, max_depth: float | None) -> None:
        """One evaluated frame; `mask` the dataset's evaluation mask (None: valid pixels)."""
        if sample['sequence'] != self._current:
            self.close()
            self._current = sample['sequence']
        gt = sample['depth']
        counted = ground_truth_mask(gt, mask, min_depth, max_depth)
        self._frames.append({'pred': np.asarray(pred, np.float32), 'gt': gt, 'valid': counted,
                             'pose': sample['pose'], 'K': sample['K'],
                             'kind': sample.get('kind', 'indoor'),
                             'motion': sample.get('motion', 'recorded')})

    def close(self) -> None:
        """Score the sequence being collected (if any) and write its map picture."""
        frames, self._frames = self._frames, []
        if not frames:
            return
        from ..io_utils import file_stem, save_png
        from ..evaluation.sequences import score_sequence
        name = self._current
        result = score_sequence(np.stack([f['pred'] for f in frames]),
                                np.stack([f['gt'] for f in frames]),
                                np.stack([f['valid'] for f in frames]),
                                np.stack([f['pose'] for f in frames]), frames[0]['K'],
                                frames[0]['kind'], maps=self.maps)
        row = {'sequence': name, 'kind': frames[0]['kind'], 'motion': frames[0]['motion'],
               **result['row']}
        self.rows.append(row)
        if 'picture' in result:
            save_png(self.out_dir / 'maps' / f'{file_stem(name)}.png', result['picture'])
        LOG.info('%s: TAE %.3f (ground truth %.3f), scale CV %.3f%s', name, row['tae'],
                 row['tae_gt'], row['scale_cv'],
                 f', map accuracy {row["map_accuracy_cm"]:.1f} cm, F-score@10cm '
                 f'{row["map_fscore_10cm"]:.2f}' if self.maps else '')

    def finish(self) -> tuple:
        """Score the last sequence, write sequences.csv; returns (summary dict, markdown)."""
        from ..io_utils import save_text
        self.close()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction='ignore')
        writer.writeheader()
        writer.writerows(self.rows)
        save_text(self.out_dir / 'sequences.csv', buffer.getvalue())
        groups = {'all': self.rows}
        for kind in sorted({r['kind'] for r in self.rows}):
            groups[kind] = [r for r in self.rows if r['kind'] == kind]
        means = {name: {key: _mean(rows, key) for key in MEANS} | {'sequences': len(rows)}
                 for name, rows in groups.items()}
        return {'per_sequence': self.rows, 'means': means}, markdown(self.rows, means)


def _mean(rows: list, key: str) -> float:
    values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float('nan')


def markdown(rows: list, means: dict) -> str:
    """Per-sequence table and means: TAE, scale CV, map accuracy / completeness / F-scores."""
    head = ('| sequence | frames | TAE ↓ | TAE gt | scale CV ↓ | max step | map acc cm ↓ | '
            'map comp cm ↓ | F@5cm ↑ | F@10cm ↑ | gt map acc / comp cm | gt F@5 / F@10 |\n'
            '|---|---|---|---|---|---|---|---|---|---|---|---|\n')

    def line(name, r, frames):
        return (f'| {name} | {frames} | {r["tae"]:.3f} | {r["tae_gt"]:.3f} | '
                f'{r["scale_cv"]:.3f} | {r["scale_max_step"]:.2f} | '
                f'{r.get("map_accuracy_cm", np.nan):.1f} | '
                f'{r.get("map_completeness_cm", np.nan):.1f} | '
                f'{r.get("map_fscore_5cm", np.nan):.2f} | {r.get("map_fscore_10cm", np.nan):.2f} '
                f'| {r.get("gt_map_accuracy_cm", np.nan):.1f} / '
                f'{r.get("gt_map_completeness_cm", np.nan):.1f} | '
                f'{r.get("gt_map_fscore_5cm", np.nan):.2f} / '
                f'{r.get("gt_map_fscore_10cm", np.nan):.2f} |\n')

    body = ''.join(line(r['sequence'], r, r['frames']) for r in rows)
    body += ''.join(line(f'**mean, {name}**', m, f'{m["sequences"]} seq')
                    for name, m in means.items())
    return head + body
