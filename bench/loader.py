#!/usr/bin/env python
"""Data pipeline benchmark: preprocessing seconds per 240x240x155 BraTS-sized case, and augmented 112^3
training patches per second served from the cache. Prints the figures; < 3 minutes.

    python bench/loader.py [--workers 2] [--repeats 5] [--iters 40]
"""
import os, shutil, statistics, tempfile, time
from pathlib import Path
import numpy as np
import nibabel as nib
from fastcore.script import call_parse
from cloe_nb.core import BRATS_MODALITIES
from cloe_nb.datasets import find_cases
from cloe_nb.preprocess import prepare_case, load_cache
from cloe_nb.augment import cloe_dataloaders, PatchDataset
import torch

def synthetic_brats_case(root:Path, cid='BraTS20_Training_001', shape=(240, 240, 155), seed=0)->Path:
    "A BraTS 2020-sized case: an ellipsoidal 'brain' (~140x170x135 box) of int16 intensities, a spherical tumour, .nii.gz files."
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    brain = ((x - 120) / 70) ** 2 + ((y - 120) / 85) ** 2 + ((z - 75) / 67) ** 2 <= 1
    r2 = (x - 100) ** 2 + (y - 130) ** 2 + (z - 80) ** 2
    label = np.select([r2 <= 64, r2 <= 196, r2 <= 625], [1, 4, 2], 0).astype(np.uint8) * brain
    aff = np.diag([-1., -1., 1., 1.]); aff[:3, 3] = [0, 239, 0]
    d = root/cid; d.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(BRATS_MODALITIES):
        img = (rng.normal(400 + 100 * i, 60, shape) + 200 * label).clip(1, None).astype(np.int16) * brain
        nib.save(nib.Nifti1Image(img, aff), str(d/f'{cid}_{m}.nii.gz'))
    nib.save(nib.Nifti1Image(label, aff), str(d/f'{cid}_seg.nii.gz'))
    return d

@call_parse
def main(workers:int=2,   # loader threads to time (besides 0 and 1)
         repeats:int=5,   # timed epochs per thread count (medians reported)
         iters:int=40,    # patches per timed epoch
         patch:int=112    # cubic patch side
        )->dict:
    "Print the figures; return them: preprocessing s/case, CPU ms per patch, patches/s per loader-thread count."
    tmp = Path(tempfile.mkdtemp(prefix='cloe_bench_'))
    try:
        t0 = time.perf_counter(); synthetic_brats_case(tmp/'data'); t_make = time.perf_counter() - t0
        case = find_cases(tmp/'data')[0]
        prep = []
        for _ in range(3):
            t0 = time.perf_counter(); prepare_case(case, tmp/'cache', force=True); prep.append(time.perf_counter() - t0)
        e = load_cache(tmp/'cache')[0]
        print(f"synthetic 240x240x155 case written in {t_make:.1f} s; cropped shape {tuple(e.meta['shape'])}")
        print(f"preprocessing: {statistics.median(prep):.2f} s per case (median of {len(prep)}: {', '.join(f'{t:.2f}' for t in prep)})")
        ds, cpu = PatchDataset(load_cache(tmp/'cache'), patch, length=10**6), []
        ds[0]; threads = torch.get_num_threads(); torch.set_num_threads(1)
        for r in range(repeats):
            t0 = time.process_time()
            for i in range(10): ds[i]
            cpu.append((time.process_time() - t0) / 10)
        torch.set_num_threads(threads)
        print(f"one patch {patch}^3 costs {1000 * statistics.median(cpu):.1f} ms of CPU time (1 thread, median of {repeats}x10) "
              f"-> at most {1 / statistics.median(cpu):.0f} patches/s per free core")
        print(f"load average now: {', '.join(f'{l:.1f}' for l in os.getloadavg())} on {os.cpu_count()} cores (wall-clock figures below shrink when the machine is shared)")
        res = dict(prep_s=statistics.median(prep), patch_cpu_ms=1000 * statistics.median(cpu), patches_per_s={})
        for nw in sorted({0, 1, workers}):
            dls = cloe_dataloaders(tmp/'cache', valid_ids=[], patch=patch, bs=1, iters_per_epoch=iters, num_workers=nw, device='cpu')
            rates = []
            for _ in range(repeats if nw else max(2, repeats // 2)):
                t0 = time.perf_counter(); n = sum(xb.shape[0] for xb, yb in dls.train); rates.append(n / (time.perf_counter() - t0))
            print(f"training patches {patch}^3, {nw} loader thread(s): {statistics.median(rates):.1f} patches/s "
                  f"(median of {len(rates)} epochs of {iters}: {', '.join(f'{r:.1f}' for r in rates)})")
            res['patches_per_s'][nw] = statistics.median(rates)
        return res
    finally: shutil.rmtree(tmp, ignore_errors=True)

