#!/usr/bin/env python
"""Benchmark: where `cloe-predict`'s time goes on one BraTS-sized case (240 x 240 x 155, all four modalities) at the paper's
widths (16-32-64-128), 112^3 windows, overlap 0.5, on this machine's CPU. Untrained weights (timing does not depend on them).

    python bench/predict_case.py                          # prints the table
    python bench/predict_case.py --out bench/results/predict_case-$(date +%F).md --threads 2

Stages: read + preprocess (`preprocess_case`), each network part summed over the windows (forward hooks: encoders,
expert decoder, region head, gate, fusion decoder; the rest of the forward — consistency scores, fusion, masking — is
'other model'), blending (the sliding window's own time outside the model), restoring to the original grid, the
reliability report, writing the NIfTI and JSON.
"""
import platform, tempfile, time
from collections import defaultdict
from pathlib import Path
import numpy as np
import torch
from fastcore.script import call_parse
from cloe_nb.core import BRATS_MODALITIES, get_convention
from cloe_nb.datasets import find_cases
from cloe_nb.phantom import make_phantom_dataset
from cloe_nb.model import build_model
from cloe_nb.inference import preprocess_case, predict_volume, reliability_report, save_nifti, save_json
from cloe_nb.preprocess import restore_probs

PARTS = ('encoders', 'expert_decoder', 'region_head', 'gate', 'fusion_decoder')

def _bratslike_case(folder:Path, seed:int)->object:
    "One 192^3 phantom case placed in a 240 x 240 x 155 grid, as BraTS volumes are (its cropped brain is BraTS-sized)."
    import nibabel as nib
    data = make_phantom_dataset(folder/'small', n_cases=1, size=192, seed=seed)   # a brain of BraTS size once cropped
    case = find_cases(data)[0]
    big = folder/'big'/case.id; big.mkdir(parents=True)
    for m, p in list(case.images.items()) + [('seg', case.label)]:
        img = nib.load(str(p)); v = np.asarray(img.dataobj)
        full = np.zeros((240, 240, 155), v.dtype); full[24:216, 24:216, :] = v[:, :, 18:173]   # its central 155 slices
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
    import cloe_nb.inference as inf
    make = inf._volume_predictor
    def _make(model, avail):
        f = make(model, avail)
        def _g(xw):
            t = time.perf_counter(); out = f(xw); seconds[0] += time.perf_counter() - t; calls[0] += 1
            return out
        return _g
    inf._volume_predictor = _make

@call_parse
def main(threads:int=None,   # torch threads (default: torch's choice)
         roi:int=112,        # window side
         overlap:float=0.5,  # window overlap
         seed:int=7401,      # phantom seed (used by no test or tutorial)
         out:str=None):      # also write the markdown table here
    "Time cloe-predict's stages on one BraTS-sized phantom case at paper widths."
    if threads: torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix='cloe_bench_'))
    case = _bratslike_case(tmp, seed)
    torch.manual_seed(0)
    model = build_model('full', 4, 4, (16, 32, 64, 128)).eval()
    rows, lc = [], get_convention('brats')
    t = time.perf_counter(); image, avail, meta = preprocess_case(case, BRATS_MODALITIES); rows.append(('read + preprocess', time.perf_counter() - t))
    spent, hooks = _timed_parts(model)
    calls, t_model = [0], [0.]
    _timed_windows(calls, t_model)
    t = time.perf_counter(); pred = predict_volume(model, image, avail, roi, overlap); sliding = time.perf_counter() - t
    for name in PARTS:
        if name in spent: rows.append((f'{name} ({calls[0]} windows)', spent[name]))
    rows.append(('other work per window (scores, weights, fusion, softmax)', t_model[0] - sum(spent.values())))
    rows.append(('blending and window bookkeeping', sliding - t_model[0]))
    t = time.perf_counter(); seg = restore_probs(pred['probs'], meta, lc); rows.append(('restore to the original grid', time.perf_counter() - t))
    t = time.perf_counter(); rep = reliability_report(model, pred, meta['spacing'], BRATS_MODALITIES, lc, case.id); rows.append(('reliability report', time.perf_counter() - t))
    t = time.perf_counter(); save_nifti(seg, tmp/'pred.nii.gz'); save_json(rep, tmp/'rel.json'); rows.append(('write NIfTI + JSON', time.perf_counter() - t))
    total = sum(s for _, s in rows)
    lines = [f"# cloe-predict stages, one 240 x 240 x 155 case, widths 16-32-64-128, roi {roi}, overlap {overlap}",
             f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; cropped volume {tuple(image.shape[1:])}", '',
             '| stage | seconds | share |', '|---|---|---|'] + [f'| {n} | {s:.1f} | {100 * s / total:.0f}% |' for n, s in rows] + [f'| **total** | **{total:.1f}** | |']
    print('\n'.join(lines))
    if out: Path(out).write_text('\n'.join(lines) + '\n')
