"""The demo's report from saved files only: metrics, latency histogram, contact sheet, report.md.

Imports no ROS module, so a test can recompute every number from the files the demo wrote.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from metricgold_core.evaluation.metrics import aggregate, compute_metrics
from metricgold_core.io_utils import save_png, save_text
from metricgold_core.visualize import comparison_panel

MAX_DEPTH_M = 100.0   # the default codec's far end: ground truth beyond it is not scored


# The node's drop counters in its diagnostics, each a reason it publishes no frame.
NODE_DROPS = ('dropped_stale', 'dropped_busy', 'dropped_bad_input', 'dropped_publish',
              'inference_errors', 'waiting_for_scale')


def load_run(out: Path) -> tuple:
    """(camera frames, recorded frames matched to them by stamp, diagnostics, the recorder's
    file: every record, received or not, and its write errors)."""
    camera = json.loads((out / 'frames.json').read_text())
    recorded = json.loads((out / 'recorded.json').read_text())
    by_stamp = {rec['stamp_ns']: rec for rec in recorded['frames'] if 'name' in rec}
    matched = []
    for frame in camera:
        rec = by_stamp.get(frame['stamp_ns'])
        if rec is not None:
            matched.append((frame, rec))
    return camera, matched, recorded.get('diagnostics'), recorded


def _count(values: dict, key: str) -> int | None:
    try:
        return int(float(values[key]))
    except (KeyError, TypeError, ValueError):
        return None


def delivery(camera: list, recorded: dict, diagnostics: dict | None) -> dict:
    """Where the camera's frames went, each loss charged to whoever lost it: the node (its own
    drop counters), the transport (camera -> node: the camera's count against what the node
    received; node -> recorder: what the node published against what reached the recorder,
    confirmed by the gaps in the depth publisher's sequence numbers) or the recorder (received,
    not saved). None where the node's diagnostics did not come."""
    values = (diagnostics or {}).get('values', {})
    stamps = {f['stamp_ns'] for f in camera}
    mine = [r for r in recorded['frames'] if r['stamp_ns'] in stamps]
    received = [r for r in mine if 'arrival_ns' in r]
    seqs = sorted(r['seq'] for r in received if r.get('seq'))
    node_received = _count(values, 'frames_received')
    node_published = _count(values, 'frames_published')
    drops = {key: _count(values, key) for key in NODE_DROPS if _count(values, key)}
    return {
        'camera_published': len(camera),
        'node_received': node_received,
        'lost_camera_to_node': None if node_received is None else len(camera) - node_received,
        'node_dropped': sum(drops.values()) if values else None,
        'node_drop_reasons': drops,
        'node_published': node_published,
        'recorder_received': len(received),
        'lost_node_to_recorder': None if node_published is None
        else node_published - len(received),
        'sequence_gaps': sorted(set(range(1, seqs[-1] + 1)) - set(seqs)) if seqs else [],
        'recorder_saved': sum(1 for r in received if 'name' in r),
        'write_errors': recorded.get('write_errors', []),
    }


def latency_stages(pairs: list, diagnostics: dict | None) -> dict:
    """Latency percentiles (ms) per stage of the frames the recorder got: the node's own
    (diagnostics: its image arrival to published), camera stamp to the node's publish (DDS
    source timestamp), publish to DDS reception in the recorder, reception to the recorder's
    callback, end to end (stamp to callback) and the recorder's write time (off the path)."""
    values = (diagnostics or {}).get('values', {})
    node = {}
    for key, name in (('latency_p50_ms', 'p50'), ('latency_p95_ms', 'p95')):
        try:
            node[name] = float(values[key])
        except (KeyError, TypeError, ValueError):
            node[name] = float('nan')
    recs = [rec for _, rec in pairs]
    return {
        'node': node,
        'stamp_to_publish': latency_stats([(r['published_ns'] - r['stamp_ns']) / 1e6
                                           for r in recs if 'published_ns' in r]),
        'transport': latency_stats([r['transport_ms'] for r in recs if 'transport_ms' in r]),
        'recorder_wait': latency_stats([r['recorder_wait_ms'] for r in recs
                                        if 'recorder_wait_ms' in r]),
        'end_to_end': latency_stats([r['latency_ms'] for r in recs]),
        'recorder_write': latency_stats([r['write_ms'] for r in recs if 'write_ms' in r]),
    }


def frame_metrics(out: Path, frame: dict, rec: dict) -> dict | None:
    """Metric (no alignment) AbsRel, delta1, ... of one recorded frame against its ground truth."""
    gt_path = out / 'gt' / f'{frame["index"]:04d}.npy'
    if not frame.get('has_gt') or not gt_path.exists():
        return None
    gt = np.load(gt_path)
    pred = np.load(out / 'depth' / f'{rec["name"]}.npy')
    if pred.shape != gt.shape:
        raise ValueError(f'{rec["name"]}: depth {pred.shape} and ground truth {gt.shape} differ')
    row = compute_metrics(pred, gt, max_depth=MAX_DEPTH_M)
    row.update(index=frame['index'], name=frame['name'],
               kind=frame['name'].split('_')[0])
    return row


def latency_stats(latencies_ms: list) -> dict:
    if not latencies_ms:
        return {'p50': float('nan'), 'p95': float('nan'), 'max': float('nan')}
    values = np.asarray(latencies_ms)
    return {'p50': float(np.percentile(values, 50)), 'p95': float(np.percentile(values, 95)),
            'max': float(values.max())}


def output_rate_hz(arrivals_ns: list) -> float:
    if len(arrivals_ns) < 2:
        return float('nan')
    span_s = (max(arrivals_ns) - min(arrivals_ns)) / 1e9
    return (len(arrivals_ns) - 1) / span_s if span_s > 0 else float('nan')


def histogram_png(path: Path, latencies_ms: list, budget_ms: float | None) -> None:
    """A bar chart of latencies (PIL drawing: no plotting library needed)."""
    from PIL import Image, ImageDraw
    width, height, margin = 640, 360, 48
    image = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(image)
    values = np.asarray(latencies_ms, dtype=np.float64)
    draw.text((margin, 10), f'latency from camera stamp to depth arrival (n={len(values)})',
              fill='black')
    if values.size:
        top = max(values.max(), budget_ms or 0) * 1.05
        counts, edges = np.histogram(values, bins=20, range=(0.0, top))
        scale_x = (width - 2 * margin) / top
        scale_y = (height - 2 * margin) / max(1, counts.max())
        for count, lo, hi in zip(counts, edges[:-1], edges[1:]):
            x0, x1 = margin + lo * scale_x, margin + hi * scale_x - 1
            draw.rectangle([x0, height - margin - count * scale_y, x1, height - margin],
                           fill=(70, 110, 200))
        if budget_ms:
            x = margin + budget_ms * scale_x
            draw.line([x, margin, x, height - margin], fill=(220, 40, 40), width=2)
            label = f'budget {budget_ms:.0f} ms'
            # right of the line, or left of it when the line is near the right edge
            label_x = x + 4 if x + 4 + 7 * len(label) < width else x - 4 - 7 * len(label)
            draw.text((label_x, margin), label, fill=(220, 40, 40))
        for tick in np.linspace(0, top, 5):
            x = margin + tick * scale_x
            draw.text((x - 10, height - margin + 6), f'{tick:.0f}', fill='black')
        draw.text((width - margin - 20, height - 20), 'ms', fill='black')
    draw.line([margin, height - margin, width - margin, height - margin], fill='black')
    save_png(path, np.asarray(image))


def contact_sheet(path: Path, out: Path, pairs: list, max_rows: int = 6) -> None:
    """Rows of RGB | prediction | ground truth | |error| / gt (0..0.5, turbo) for GT frames."""
    rows = []
    for frame, rec in pairs:
        gt_path = out / 'gt' / f'{frame["index"]:04d}.npy'
        if not gt_path.exists():
            continue
        rgb = np.asarray(_read_png(out / 'rgb' / f'{frame["index"]:04d}.png'))
        pred = np.load(out / 'depth' / f'{rec["name"]}.npy')
        gt = np.load(gt_path)
        rows.append(comparison_panel(rgb, pred, gt))
        if len(rows) == max_rows:
            break
    if rows:
        save_png(path, np.concatenate(rows, axis=0))


def _read_png(path: Path):
    from PIL import Image
    with Image.open(path) as image:
        return image.convert('RGB').copy()


def model_note(diagnostics: dict | None) -> str:
    """What ran, in words, from the node's own diagnostics (model, mode, untrained)."""
    values = (diagnostics or {}).get('values', {})
    if 'model' not in values:
        return ''
    if values['model'] == 'packaged default':
        note = ('Model: the packaged default model (tiny preset trained on procedural scenes: '
                'see MODEL_CARD.md).')
    else:
        note = f'Model: {values["model"]}.'
    if values.get('untrained') == 'True':
        note += ' This checkpoint is UNTRAINED: its depth is meaningless.'
    if values.get('mode') == 'fast':
        note += ' Fast mode (light decoder, pooled attention: approximate).'
    return note


def _budget(diagnostics: dict | None) -> float | None:
    try:
        value = float((diagnostics or {})['values']['max_latency_ms'])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def build_report(out: Path, budget_ms: float | None = None, title: str = 'MetricGold demo',
                 note: str | None = None) -> dict:
    """Compute everything from the files in `out`, write the artefacts, return the summary.

    The latency budget and the model note default to what the node's diagnostics said.
    """
    camera, pairs, diagnostics, recorded = load_run(out)
    if budget_ms is None:
        budget_ms = _budget(diagnostics)
    if note is None:
        note = model_note(diagnostics)
    rows = [r for r in (frame_metrics(out, f, rec) for f, rec in pairs) if r is not None]
    latencies = [rec['latency_ms'] for _, rec in pairs]
    sequence = sequence_report(out, pairs, rows)
    odometry = odometry_report(out, camera, pairs, rows, diagnostics)
    summary = {
        'published': len(camera), 'received': len(pairs), 'dropped': len(camera) - len(pairs),
        'output_rate_hz': output_rate_hz([rec['arrival_ns'] for _, rec in pairs]),
        'input_rate_hz': output_rate_hz([f['stamp_ns'] for f in camera]),
        'latency_ms': latency_stats(latencies),
        'latency_stages_ms': latency_stages(pairs, diagnostics),
        'delivery': delivery(camera, recorded, diagnostics),
        'metrics': aggregate(rows) if rows else None,
        'metrics_by_kind': {kind: aggregate([r for r in rows if r['kind'] == kind])
                            for kind in sorted({r['kind'] for r in rows})},
        'per_frame': rows,
        'diagnostics': diagnostics,
        'sequence': sequence,
        'sequence_odometry': odometry,
    }
    histogram_png(out / 'latency_histogram.png', latencies, budget_ms)
    contact_sheet(out / 'contact_sheet.png', out, pairs)
    save_text(out / 'summary.json', json.dumps(summary, indent=1, default=float) + '\n')
    save_text(out / 'report.md', _markdown(summary, title, budget_ms, note))
    return summary


def _markdown(s: dict, title: str, budget_ms, note: str) -> str:
    lat = s['latency_ms']
    lines = [f'# {title}', '']
    if note:
        lines += [note, '']
    lines += [
        f'- frames published by the camera: {s["published"]}, depth frames received: '
        f'{s["received"]}, dropped: {s["dropped"]}',
        f'- input rate {s["input_rate_hz"]:.2f} Hz, output rate {s["output_rate_hz"]:.2f} Hz',
        f'- latency (camera stamp to depth arrival) p50 {lat["p50"]:.0f} ms, p95 '
        f'{lat["p95"]:.0f} ms, max {lat["max"]:.0f} ms'
        + (f' (budget `max_latency_ms` = {budget_ms:.0f})' if budget_ms else ''),
        '',
    ]
    lines += _delivery_markdown(s['delivery'], s['latency_stages_ms'])
    if s['metrics']:
        lines += ['## Accuracy against ground truth (metric, no alignment)', '',
                  '| set | frames | AbsRel | δ1 | RMSE (m) |', '|---|---:|---:|---:|---:|']
        for label, m in [('all', s['metrics'])] + sorted(s['metrics_by_kind'].items()):
            lines.append(f'| {label} | {m["images"]} | {m["abs_rel"]:.3f} | {m["delta1"]:.3f} '
                         f'| {m["rmse"]:.2f} |')
        lines += ['', '### Per frame', '', '| frame | scene | AbsRel | δ1 |',
                  '|---|---|---:|---:|']
        for r in s['per_frame']:
            lines.append(f'| {r["index"]} | {r["name"]} | {r["abs_rel"]:.3f} | '
                         f'{r["delta1"]:.3f} |')
    else:
        lines.append('No ground truth for these frames (own images): accuracy is not scored.')
    if s.get('sequence'):
        lines += _sequence_markdown(s['sequence'])
    if s.get('sequence_odometry'):
        lines += _odometry_markdown(s['sequence'], s['sequence_odometry'])
    if s['diagnostics']:
        lines += ['', '## Node diagnostics (last)', '']
        lines += [f'- {k}: {v}' for k, v in s['diagnostics']['values'].items()]
    lines += ['', 'Files: `depth/` (float32 m .npy), `depth_png/` (uint16 mm), `depth_colored/`,',
              '`clouds/` (PLY), `latency_histogram.png`, `contact_sheet.png` (RGB | prediction |',
              'ground truth | relative error 0..0.5), `summary.json`'
              + ('; `map.png` and `map_node_depth.ply` (the fused map of the trajectory)'
                 if (s.get('sequence') or {}).get('map') else '')
              + ('; `map_odometry.png` and `map_odometry.ply` (the drive with odometry).'
                 if (s.get('sequence_odometry') or {}).get('picture') else '.'), '']
    return '\n'.join(lines)


def _unknown(value) -> str:
    return '?' if value is None else str(value)


def _delivery_markdown(d: dict, stages: dict) -> list:
    drops = ', '.join(f'{k} {v}' for k, v in d['node_drop_reasons'].items())
    gaps = (f' (depth sequence numbers {", ".join(map(str, d["sequence_gaps"]))} never came)'
            if d['sequence_gaps'] else '')
    lost_recorder = d['recorder_received'] - d['recorder_saved']
    lines = ['## Where the frames went', '',
             '| stage | frames | lost at this stage | whose |', '|---|---:|---:|---|',
             f'| camera published | {d["camera_published"]} | | |',
             f'| node received (its diagnostics) | {_unknown(d["node_received"])} | '
             f'{_unknown(d["lost_camera_to_node"])} | transport camera -> node |',
             f'| node published (its diagnostics) | {_unknown(d["node_published"])} | '
             f'{_unknown(d["node_dropped"])} | node{": " + drops if drops else ""} |',
             f'| recorder received | {d["recorder_received"]} | '
             f'{_unknown(d["lost_node_to_recorder"])} | transport node -> recorder{gaps} |',
             f'| recorder saved | {d["recorder_saved"]} | {lost_recorder} | recorder'
             + (f': {"; ".join(d["write_errors"][:3])}' if d['write_errors'] else '') + ' |',
             '', '## Where the time went (ms)', '',
             '| stage | p50 | p95 | max |', '|---|---:|---:|---:|']
    names = (('node', "node: image arrival to published (its diagnostics, last 200 frames)"),
             ('stamp_to_publish', 'camera stamp to the node\'s publish (DDS source timestamp)'),
             ('transport', 'node\'s publish to DDS reception in the recorder'),
             ('recorder_wait', 'DDS reception to the recorder\'s callback'),
             ('end_to_end', '**camera stamp to the recorder\'s callback (end to end)**'),
             ('recorder_write', 'recorder: converting and writing a frame (its own thread, '
              'not in the latency)'))
    for key, label in names:
        st = stages[key]
        lines.append(f'| {label} | {st["p50"]:.0f} | {st["p95"]:.0f} | '
                     + (f'{st["max"]:.0f} |' if 'max' in st else '|'))
    return lines + ['']


def sequence_report(out: Path, pairs: list, rows: list | None = None) -> dict | None:
    """TAE, scale stability and (with Open3D) the fused map of the trajectory frames the node
    answered: their published depth fused along the camera's true poses (frames.json), scored
    against the true surface next to the ground truth fused the same way. Writes map.png and
    map_node_depth.ply; None when the run had no trajectory. `rows`: the frames' metrics
    (frame_metrics), for the drive's AbsRel and delta1."""
    posed = [(f, rec) for f, rec in pairs
             if 'pose' in f and f.get('has_gt') and not f.get('odometry')]
    if not posed:
        return None
    result, scored = score_drive(out, posed, rows)
    if scored is not None and result['map']:
        from metricgold_core.offline.ply import write_ply
        save_png(out / 'map.png', scored['picture'])
        write_ply(out / 'map_node_depth.ply', scored['map_points'].astype(np.float32))
    return result


def odometry_report(out: Path, camera: list, pairs: list, rows: list,
                    diagnostics: dict | None) -> dict | None:
    """The drive replayed with odometry (scale_source odometry), scored as sequence_report
    scores the drive without it, with the frames the node held back for its first scale fit
    (waiting_for_scale) and its odometry diagnostics. Writes map_odometry.png (without |
    with odometry | ground truth) and map_odometry.ply; None when the run had no such drive."""
    sent = [f for f in camera if f.get('odometry')]
    if not sent:
        return None
    posed = [(f, rec) for f, rec in pairs if f.get('odometry') and f.get('has_gt')]
    values = (diagnostics or {}).get('values', {})
    result = {'frames_sent': len(sent), 'frames': len(posed), 'map': False, 'map_note': '',
              'waiting_for_scale': _count(values, 'waiting_for_scale'),
              'node': {key: values[key] for key in ODOMETRY_DIAGNOSTICS if key in values}}
    if len(posed) < 2:
        result['map_note'] = 'fewer than two frames of the drive with odometry came'
        return result
    scored_result, scored = score_drive(out, posed, rows)
    result.update(scored_result, frames_sent=len(sent))
    without = [(f, rec) for f, rec in pairs
               if 'pose' in f and f.get('has_gt') and not f.get('odometry')]
    if scored is not None and result['map'] and len(without) >= 2:
        from metricgold_core.evaluation import mapping
        from metricgold_core.offline.ply import write_ply
        _, plain = score_drive(out, without, rows, picture=False)
        poses = np.array([f['pose'] for f, _ in without])
        picture = mapping.map_picture(
            {'without odometry': plain['map_points'], 'with odometry': scored['map_points'],
             'ground truth': scored['gt_map_points']}, poses,
            cut_above_m=mapping.PICTURE_CUT_M[result['kind']])
        save_png(out / 'map_odometry.png', picture)
        write_ply(out / 'map_odometry.ply', scored['map_points'].astype(np.float32))
        result['picture'] = 'map_odometry.png'
    return result


# The node's diagnostics of the odometry source that the report quotes.
ODOMETRY_DIAGNOSTICS = ('scale_source', 'scale', 'odometry_received', 'odometry_fits_tried',
                        'odometry_fits_accepted', 'odometry_fit', 'odometry_points',
                        'local_points', 'local_fallback', 'local_corrections')


def score_drive(out: Path, posed: list, rows: list | None, picture: bool = True) -> tuple:
    """(scores of one drive's (frame, record) pairs, score_sequence's output or None): AbsRel
    and delta1 over its frames, TAE, scale stability and, with Open3D, the fused map."""
    from metricgold_core.evaluation.sequences import score_sequence
    frames = [f for f, _ in posed]
    preds = np.stack([np.load(out / 'depth' / f'{rec["name"]}.npy') for _, rec in posed])
    gts = np.stack([np.load(out / 'gt' / f'{f["index"]:04d}.npy') for f in frames])
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(gts) & (gts > 1e-3) & (gts <= MAX_DEPTH_M)
    poses = np.array([f['pose'] for f in frames])
    K, kind = np.array(frames[0]['K']), frames[0].get('kind', 'indoor')
    result = {'sequence': frames[0]['sequence'], 'kind': kind, 'frames': len(frames),
              'map': False, 'map_note': ''}
    indices = {f['index'] for f in frames}
    mine = [r for r in rows or () if r['index'] in indices]
    if mine:
        m = aggregate(mine)
        result.update(abs_rel=m['abs_rel'], delta1=m['delta1'])
    if len(frames) < 2:
        result['map_note'] = 'fewer than two trajectory frames reached the recorder'
        return result, None
    try:
        from metricgold_core.evaluation.mapping import require_open3d
        require_open3d()
        maps = True
    except ImportError as exc:
        maps, result['map_note'] = False, str(exc)
    scored = score_sequence(preds, gts, valid, poses, K, kind, maps=maps, picture=picture,
                            label='node depth')
    result.update(scored['row'], map=maps)
    return result, scored


def _sequence_markdown(q: dict) -> list:
    lines = ['', f'## Fused map along a trajectory ({q["kind"]}, {q["frames"]} frames)', '',
             'The node\'s published depth of the trajectory frames, fused along the true camera '
             'poses (TSDF), next to the ground-truth depth fused the same way; distances to the '
             'true surface (7-Scenes / ScanNet protocol).', '']
    if 'tae' in q:
        lines += [f'- temporal alignment error (TAE) {q["tae"]:.3f} (ground truth '
                  f'{q["tae_gt"]:.3f}); scale median(gt / depth) per frame: mean '
                  f'{q["scale_mean"]:.2f}, CV {q["scale_cv"]:.3f}, largest step between frames '
                  f'x{q["scale_max_step"]:.2f}']
    if q['map']:
        lines += ['', '| map | accuracy (cm) | completeness (cm) | F-score 5 cm | '
                  'F-score 10 cm |', '|---|---:|---:|---:|---:|']
        for label, p in (('node depth', 'map_'), ('ground truth', 'gt_map_')):
            lines.append(f'| {label} | {q[p + "accuracy_cm"]:.1f} | '
                         f'{q[p + "completeness_cm"]:.1f} | {q[p + "fscore_5cm"]:.2f} | '
                         f'{q[p + "fscore_10cm"]:.2f} |')
        lines += ['', '![fused maps: node depth | ground truth, top and perspective](map.png)']
    else:
        lines += ['', f'No fused map: {q["map_note"]}']
    return lines


def _odometry_markdown(plain: dict | None, q: dict) -> list:
    held = _unknown(q['waiting_for_scale'])
    lines = ['', f'## The drive with odometry ({q["frames_sent"]} frames)', '',
             'The same drive again, the camera publishing the robot\'s odometry (odom -> '
             'base_link, camera mounted on the base) and the node switched to `scale_source: '
             'odometry` (points tracked and triangulated with the poses, local correction, '
             f'`wait_for_scale`: {held} frames held until the first accepted fit), fused '
             'along the same true poses.', '',
             '| drive | frames fused | held | AbsRel | δ1 | scale CV | map accuracy (cm) | '
             'completeness (cm) | F-score 10 cm |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for label, run, held_here in (('scale_source none', plain, 0),
                                  ('scale_source odometry', q, held)):
        if not run or 'scale_cv' not in run:
            continue
        cells = [f'{run.get("abs_rel", float("nan")):.3f}',
                 f'{run.get("delta1", float("nan")):.3f}', f'{run["scale_cv"]:.3f}']
        cells += ([f'{run["map_accuracy_cm"]:.1f}', f'{run["map_completeness_cm"]:.1f}',
                   f'{run["map_fscore_10cm"]:.2f}'] if run.get('map') else ['-', '-', '-'])
        lines.append(f'| {label} | {run["frames"]} | {held_here} | ' + ' | '.join(cells) + ' |')
    if q['node']:
        lines += ['', 'The node at the end of the drive: '
                  + ', '.join(f'{k} {v}' for k, v in q['node'].items()) + '.']
    if q.get('picture'):
        lines += ['', '![fused maps: without odometry | with odometry | ground truth, top and '
                  'perspective](map_odometry.png)']
    elif q['map_note']:
        lines += ['', f'No fused map: {q["map_note"]}']
    return lines
