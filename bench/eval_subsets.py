#!/usr/bin/env python
"""Benchmark: the 15 BraTS modality subsets of one volume, shared encoder/expert work (`predict_subsets`)
against 15 separate sliding-window passes (`predict_volume`). Prints seconds (median of repeats) and the speed-up,
for each number of subsets per fusion-decoder call (`--subset-batch 1,5,15`: one call of 1, 5 or all 15 subsets).

    python bench/eval_subsets.py                      # the default grid below, CPU, 1 thread
    python bench/eval_subsets.py --grid 16,32,64,128:96:64 --subset-batch 1,15 --repeats 3 --device cuda

The FLOP accounting printed beside the timings explains the ratio: per window, 15 separate passes run
sum_A |A| = 32 encoders and 32 expert decoders, 15 region heads and 15 fusion decoders; the shared pass runs
4 encoders, 4 expert decoders, 15 region heads and 15 fusion decoders (batched). The fusion decoder is per subset
by construction (the fused features differ per subset), so it bounds the speed-up.
"""
import statistics, time
import torch
from fastcore.script import call_parse
from train_step import machine   # the machine line of every bench printout (bench/ is on the path)
from cloe_nb.core import all_subsets
from cloe_nb.model import build_model
from cloe_nb.inference import predict_volume, predict_subsets, window_count


def _macs(module, *inputs):
    "Multiply-accumulates of the convolutions of one call (forward hooks on Conv3d)."
    total = [0]
    def hook(m, i, o): total[0] += o.numel() * (m.in_channels // m.groups) * m.weight[0, 0].numel()
    hs = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad(): module(*inputs)
    for h in hs: h.remove()
    return total[0]


def flop_model(model, roi):
    "Per-window MACs of one encoder, the expert decoder, the region head and the fusion decoder; ideal speed-up."
    x = torch.randn(1, 1, *roi)
    feats = model.encoders[0](x)
    E, D = _macs(model.encoders[0], x), _macs(model.expert_decoder, feats)
    h, Df = _macs(model.region_head, feats[0]), _macs(model.fusion_decoder, feats)
    n_sub, n_mod = 15, 32                                  # subsets; sum over subsets of |A|
    separate = n_mod * (E + D) + n_sub * (h + Df)
    shared = 4 * (E + D) + n_sub * (h + Df)
    return dict(E=E, D=D, h=h, Df=Df, separate=separate, shared=shared, ideal=separate / shared)


def time_group(fs:list, repeats:int)->tuple:
    "Interleaved timings of the functions fs (so all see the same background load): medians, and medians of per-repeat ratios fs[0] / f."
    ts = [[] for _ in fs]
    for _ in range(repeats):
        for f, t in zip(fs, ts):
            t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in ts], [statistics.median(a / b for a, b in zip(ts[0], t)) for t in ts]


@call_parse
def main(grid:str='4,8,16,32:96:64;4,8,16,32:64:64;16,32,64,128:64:64',  # cases "widths:size:roi" separated by ";"
         repeats:int=3,        # interleaved repeats (medians reported)
         threads:int=1,        # torch CPU threads (1: stable numbers on a shared machine)
         device:str='cpu',     # torch device
         subset_batch:str='1,15',  # subsets per fusion-decoder call, one or several: 1,5,15 (each timed)
         precision:str='fp32', # fp32 or bf16, for both the shared and the separate passes
         contrastive:bool=False):  # build the model with the L_con head, as training does (inference never runs it)
    "Time the 15 subsets of one volume: shared encoder/expert work against 15 separate sliding-window passes."
    torch.set_num_threads(threads)
    batches = [int(b) for b in subset_batch.split(',')]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {machine()}")
    print(f"device {device}, {threads} thread(s), {precision}, medians of {repeats} interleaved repeats (speed-up: median of per-repeat ratios), contrastive head {'on' if contrastive else 'off'}")
    print(f"{'widths':>16} {'size':>5} {'roi':>4} {'windows':>7} {'subsets/call':>12} | {'15 separate s':>13} {'shared s':>9} {'speed-up':>8} | "
          f"{'ideal (MACs)':>12}  E : D : h : Df (GMAC/window)")
    for case in grid.split(';'):
        w, size, roi = case.split(':')
        widths, size, roi = tuple(int(v) for v in w.split(',')), int(size), int(roi)
        torch.manual_seed(0)
        model = build_model('full', 4, 4, widths, contrastive=contrastive).eval().to(device)
        image = torch.randn(4, size, size, size)
        masks = all_subsets()
        separate = lambda: [predict_volume(model, image, m, roi=roi, device=device, precision=precision) for m in masks]
        f = flop_model(model.cpu(), (roi,) * 3); model.to(device)
        n_win = window_count((size,) * 3, roi, len(widths))
        g = lambda v: f"{v / 1e9:.2f}"
        shared = [lambda sb=sb: predict_subsets(model, image, masks, roi=roi, subset_batch=sb, device=device, precision=precision) for sb in batches]
        shared[0]()                                        # warm-up
        secs, ratios = time_group([separate] + shared, repeats)
        for sb, t_sh, ratio in zip(batches, secs[1:], ratios[1:]):
            print(f"{w:>16} {size:>5} {roi:>4} {n_win:>7} {sb:>12} | {secs[0]:>13.2f} {t_sh:>9.2f} {ratio:>7.2f}x | "
                  f"{f['ideal']:>11.2f}x  {g(f['E'])} : {g(f['D'])} : {g(f['h'])} : {g(f['Df'])}", flush=True)

