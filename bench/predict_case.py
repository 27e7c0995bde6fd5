#!/usr/bin/env python
"""Benchmark: where `cloe-predict`'s time goes on one BraTS-sized case (240 x 240 x 155, all four modalities) at the paper's
widths (16-32-64-128), 112^3 windows, overlap 0.5, on this machine's CPU. Untrained weights (timing does not depend on them).

    python bench/predict_case.py                                      # today's default path (fp32), prints the table
    python bench/predict_case.py --configs fp32,bf16,fp32/cf --before /tmp/wt-before --threads 2 \\
        --out bench/results/predict_case-$(date +%F)-after.md         # several paths, and the code of another tree, in one run
    python bench/predict_case.py --agreement-run RUN                  # bf16 against fp32 on held-out phantom cases, a trained model

Stages: read + preprocess (`preprocess_case`), each network part summed over the windows (forward hooks: encoders,
expert decoder, region head, gate, fusion decoder; the rest of the forward — consistency scores, fusion, masking — is
'other model'), blending (the sliding window's own time outside the model), restoring to the original grid, the
reliability report, writing the NIfTI and JSON.

A configuration is `PRECISION[/VARIANT...]`: PRECISION is cloe-predict's `--precision` (fp32, bf16); variants are
`swN` (N windows per forward pass, `sw_batch_size`) and `cf`, a candidate that is not in the package: with gradients
off, the convolutions take their input in the layout it comes in (channels-first after InstanceNorm) instead of
`blocks.OneDNNConv3d`'s copy to channels-last, which InstanceNorm copies back (exact: the same arithmetic; measured here
to say whether `blocks` should do it at inference). `--before DIR` runs DIR's copy of this script with DIR's package
(a `git worktree` of an older commit) first, in the same invocation, so both figures see the same machine.
"""
import atexit, os, re, shutil, subprocess, sys, tempfile, time
from collections import defaultdict
from pathlib import Path
import numpy as np
import torch
from fastcore.script import call_parse
from train_step import machine   # the machine line of every bench printout (bench/ is on the path)
from cloe_nb.core import BRATS_MODALITIES, get_convention, save_json
from cloe_nb.datasets import find_cases
from cloe_nb.phantom import make_phantom_dataset
from cloe_nb.model import build_model
from cloe_nb.inference import preprocess_case, predict_volume, reliability_report, save_nifti, segmentation
from cloe_nb.preprocess import restore_probs
import cloe_nb.inference as inf

PARTS = ('encoders', 'expert_decoder', 'region_head', 'gate', 'fusion_decoder')

def _bratslike_case(folder:Path, seed:int, size:int=192)->object:
    "One 192^3 phantom case placed in a 240 x 240 x 155 grid, as BraTS volumes are (its cropped brain is BraTS-sized)."
    import nibabel as nib
    data = make_phantom_dataset(folder/'small', n_cases=1, size=size, seed=seed)   # a brain of BraTS size once cropped
    case = find_cases(data)[0]
    big = folder/'big'/case.id; big.mkdir(parents=True)
    for m, p in list(case.images.items()) + [('seg', case.label)]:
        img = nib.load(str(p)); v = np.asarray(img.dataobj)
        full = np.zeros((240, 240, 155), v.dtype); o, z = (240 - size) // 2, max((size - 155) // 2, 0)
        full[o:o + size, o:o + size, :min(size, 155)] = v[:, :, z:z + 155]   # its central 155 slices
        nib.save(nib.Nifti1Image(full, img.affine), str(big/p.name))
    return find_cases(folder/'big')[0]

def _timed_parts(model)->tuple:
    "Forward hooks that add up the seconds spent in each network part (every encoder of the ModuleList counts as 'encoders')."
    spent, start, hooks = defaultdict(float), {}, []
    for name in PARTS:
        mod = getattr(model, name, None)
        for k, m in enumerate(mod if isinstance(mod, torch.nn.ModuleList) else [mod] if mod is not None else []):
            key = (name, k)
            hooks.append(m.register_forward_pre_hook(lambda m, i, key=key: start.__setitem__(key, time.perf_counter())))
            hooks.append(m.register_forward_hook(lambda m, i, o, key=key, n=name: spent.__setitem__(n, spent[n] + time.perf_counter() - start[key])))
    return spent, hooks

def _timed_windows(calls:list, seconds:list):
    "Wrap the sliding window's predictor (`cloe_nb.inference._volume_predictor`) to count windows and time the model's share."
    make = inf._volume_predictor
    def _make(*args, **kw):
        f = make(*args, **kw)
        def _g(xw):
            t = time.perf_counter(); out = f(xw); seconds[0] += time.perf_counter() - t; calls[0] += len(xw)
            return out
        return _g
    inf._volume_predictor = _make
    return lambda: setattr(inf, '_volume_predictor', make)

class _KeepLayoutConv(torch.nn.Conv3d):
    "The `cf` candidate: with gradients off on a CPU, no channels-last copy of the input (otherwise `OneDNNConv3d` as it is)."
    def forward(self, x):
        from cloe_nb.blocks import OneDNNConv3d, _native_cpu_path
        if torch.is_grad_enabled() or x.device.type != 'cpu' or _native_cpu_path(self, x): return OneDNNConv3d.forward(self, x)
        return torch.nn.Conv3d.forward(self, x)

def _variant(model, variants:list):
    "Switch the `cf` candidate on (returns a function that switches it off again)."
    from cloe_nb.blocks import OneDNNConv3d
    convs = [m for m in model.modules() if type(m) is OneDNNConv3d] if 'cf' in variants else []
    for m in convs: m.__class__ = _KeepLayoutConv
    def undo():
        for m in convs: m.__class__ = OneDNNConv3d
    return undo

def _parse_config(cfg:str)->tuple:
    precision, *variants = cfg.split('/')
    sw = next((int(v[2:]) for v in variants if re.fullmatch(r'sw\d+', v)), 1)
    bad = [v for v in variants if v != 'cf' and not re.fullmatch(r'sw\d+', v)]
    if bad or precision not in inf.PRECISIONS: raise SystemExit(f"configs: {cfg!r}; expected PRECISION[/cf][/swN] with PRECISION in {inf.PRECISIONS}")
    return precision, variants, sw

def breakdown(model, case, roi:int, overlap:float, cfg:str, tmp:Path)->tuple:
    "One configuration's stages on one case: (rows of (stage, seconds), fused class map, cropped shape)."
    precision, variants, sw = _parse_config(cfg)
    rows, lc = [], get_convention('brats')
    t = time.perf_counter(); image, avail, meta = preprocess_case(case, BRATS_MODALITIES); rows.append(('read + preprocess', time.perf_counter() - t))
    spent, hooks = _timed_parts(model)
    calls, t_model = [0], [0.]
    restore, undo = _timed_windows(calls, t_model), _variant(model, variants)
    try:
        t = time.perf_counter(); pred = predict_volume(model, image, avail, roi, overlap, sw_batch_size=sw, precision=precision); sliding = time.perf_counter() - t
    finally: restore(); undo(); [h.remove() for h in hooks]
    for name in PARTS:
        if name in spent: rows.append((f'{name} ({calls[0]} windows)', spent[name]))
    rows.append(('other work per window (scores, weights, fusion, softmax)', t_model[0] - sum(spent.values())))
    rows.append(('blending and window bookkeeping', sliding - t_model[0]))
    t = time.perf_counter(); seg = restore_probs(pred['probs'], meta, lc); rows.append(('restore to the original grid', time.perf_counter() - t))
    t = time.perf_counter(); rep = reliability_report(model, pred, meta['spacing'], BRATS_MODALITIES, lc, case.id); rows.append(('reliability report', time.perf_counter() - t))
    t = time.perf_counter(); save_nifti(seg, tmp/'pred.nii.gz'); save_json(rep, tmp/'rel.json'); rows.append(('write NIfTI + JSON', time.perf_counter() - t))
    return rows, segmentation(pred['probs']), tuple(image.shape[1:])

def _table(rows:list)->list:
    total = sum(s for _, s in rows)
    return (['| stage | seconds | share |', '|---|---|---|'] + [f'| {n} | {s:.1f} | {100 * s / total:.0f}% |' for n, s in rows]
            + [f'| **total** | **{total:.1f}** | |'])

def _run_before(tree:Path, threads, roi, overlap, seed)->tuple:
    "Run another tree's copy of this script with its own package; its printed table and total seconds."
    args = [sys.executable, str(tree/'bench'/'predict_case.py'), '--roi', str(roi), '--overlap', str(overlap), '--seed', str(seed)]
    if threads: args += ['--threads', str(threads)]
    env = os.environ | dict(PYTHONPATH=str(tree))
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(tree))
    if p.returncode: raise SystemExit(f"before: {tree} failed:\n{p.stderr[-2000:]}")
    total = float(re.search(r'\*\*total\*\* \| \*\*([\d.]+)\*\*', p.stdout)[1])
    commit = subprocess.run(['git', '-C', str(tree), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    return [l for l in p.stdout.splitlines() if l.startswith('|')], total, commit

def agreement(run:str, n_cases:int=4, size:int=64, seed:int=7402, roi=None)->list:
    "bf16 against fp32 with a trained model on held-out phantom cases: lines of arg-max agreement and seconds per case."
    model, info = inf.load_run(run, 'cpu')
    tmp = Path(tempfile.mkdtemp(prefix='cloe_agree_'))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)   # the phantom case goes when the run ends
    data = make_phantom_dataset(tmp/'raw', n_cases=n_cases, size=size, seed=seed)
    roi = roi or info['roi']
    ck = Path(info['checkpoint'])
    lines = [f"bf16 against fp32, {ck.parent.name}/{ck.name} (epoch {info['epoch']}, widths {'-'.join(map(str, model.widths))}), "
             f"{n_cases} phantom cases of {size}^3 (seed {seed}), roi {roi}, every modality", '',
             '| case | voxels | agreement (arg-max) | fp32 s | bf16 s |', '|---|---|---|---|---|']
    agree = []
    for c in find_cases(data):
        image, avail, meta = preprocess_case(c, info['modalities'])
        maps, secs = {}, {}
        for p in inf.PRECISIONS:
            t = time.perf_counter(); maps[p] = segmentation(predict_volume(model, image, avail, roi, precision=p)['probs']); secs[p] = time.perf_counter() - t
        a = float((maps['fp32'] == maps['bf16']).mean()); agree.append(a)
        lines.append(f"| {c.id} | {maps['fp32'].size} | {100 * a:.3f}% | {secs['fp32']:.2f} | {secs['bf16']:.2f} |")
    lines.append(f"| **all** | | **{100 * np.mean(agree):.3f}%** (min {100 * min(agree):.3f}%) | | |")
    return lines

def _summary(totals:list, configs:str)->list:
    first = configs.split(',')[0]
    return (['## summary', '', f'| configuration | total s | speed-up vs {totals[0][0]} | arg-max agreement with {first} (untrained weights) |', '|---|---|---|---|']
            + [f"| {n} | {t:.1f} | {totals[0][1] / t:.2f}x | {'-' if a is None else f'{100 * a:.2f}%'} |" for n, t, a in totals])

@call_parse
def main(threads:int=None,   # torch threads (default: torch's choice)
         roi:int=112,        # window side
         overlap:float=0.5,  # window overlap
         seed:int=7401,      # phantom seed (used by no test or tutorial)
         configs:str='fp32', # comma-separated PRECISION[/cf][/swN] (see the module's docstring); the first is the reference
         before:str=None,    # another tree (git worktree) whose script and package run first, for a before-figure
         agreement_run:str=None,  # a trained run/checkpoint: measure bf16 against fp32 on held-out phantom cases instead
         phantom_size:int=192,  # side of the phantom placed in the 240 x 240 x 155 grid (192: a BraTS-sized brain; smaller: a quick check)
         out:str=None):      # also write the markdown here
    "Time cloe-predict's stages on one BraTS-sized phantom case at paper widths, for one or more configurations."
    if threads: torch.set_num_threads(threads)
    head = f"machine: {machine()}, {torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    if agreement_run:
        lines = [head, ''] + agreement(agreement_run)
        print('\n'.join(lines))
        if out: Path(out).write_text('\n'.join(lines) + '\n')
        return
    lines = [f"# cloe-predict stages, one 240 x 240 x 155 case, widths 16-32-64-128, roi {roi}, overlap {overlap}", head, '']
    totals = []
    if before:
        rows, total, commit = _run_before(Path(before), threads, roi, overlap, seed)
        lines += [f"## before: commit {commit} (its own bench/predict_case.py and package)", ''] + rows + ['']
        totals.append((f'before ({commit})', total, None))
        print('\n'.join(lines), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix='cloe_bench_'))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)   # the phantom case goes when the run ends
    case = _bratslike_case(tmp, seed, phantom_size)
    torch.manual_seed(0)
    model = build_model('full', 4, 4, (16, 32, 64, 128)).eval()   # as the before-figure's script built it
    ref = None
    for cfg in configs.split(','):
        rows, classes, shape = breakdown(model, case, roi, overlap, cfg, tmp)
        ref = classes if ref is None else ref
        agree = float((classes == ref).mean())
        block = [f"## {cfg} (cropped volume {shape})", ''] + _table(rows) + ['']
        print('\n'.join(block), flush=True)
        lines += block
        totals.append((cfg, sum(s for _, s in rows), agree))
        if out: Path(out).write_text('\n'.join(lines + _summary(totals, configs)) + '\n')   # after each configuration: a stopped run keeps what it measured
    print('\n'.join(_summary(totals, configs)))
