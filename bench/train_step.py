#!/usr/bin/env python
"""Benchmark: one CLoE training step (forward + loss, backward, Adam) at several patch sizes, against the
all-encoders-always formulation (every modality encoded and decoded, missing ones zeroed afterwards, as RFNet does)
at equal widths, under uniform modality-subset sampling. Prints medians of repeats: seconds (wall and CPU),
peak memory, FLOPs per step (torch.utils.flop_counter) and the CLoE / all-encoders ratios.

    python bench/train_step.py                                  # 32/48/64, widths 8-16-32-64, bs 2, CPU
    python bench/train_step.py --sizes 112 --widths 16,32,64,128 --bs 1 --device cuda --amp bf16
    python bench/train_step.py --sizes 48 --variants base,split,cl,split+cl   # the optimisations one by one

Each (size, formulation, variant) runs in its own process, so peak RSS is that configuration's. FLOPs per step
are exact expectations under uniform subset sampling: the modality encoders are identical, so a sample's FLOPs
depend only on |A|; the step is counted once per |A| = 1..M at batch 1 and weighted by C(M, k) / (2^M - 1).
Timed steps are stratified the same way: `repeats` steps for each |A| = 1..M (which modalities: seeded random), their
medians weighted by C(M, k) / (2^M - 1) give the expected step under uniform sampling. (A handful of random draws
would make the ratio depend on the draw: at batch 1 three steps may average |A| = 3.3 instead of 32/15 = 2.13.)
"""
import math, os, resource, statistics, time, platform, datetime
from fastcore.script import call_parse
from cloe_nb.core import check_choice
import multiprocessing as mp

FORMULATIONS = ('cloe', 'all')
VARIANTS = ('base', 'split', 'cl', 'split+cl')  # torch's own dispatch; the two rewrites of blocks.OneDNNConv3d; both (default)


def _all_encoders_class():
    "CLoE in the all-encoders-always formulation (a subclass, so weights and outputs are CLoE's)."
    import torch
    from cloe_nb.model import CLoE

    class AllEncodersCLoE(CLoE):
        "Every modality encoded and expert-decoded for every sample; the missing ones' features and logits zeroed afterwards."
        def encode(self, x, avail):
            B, M = avail.shape
            per_mod = [self.encoders[m](x[:, m:m+1]) for m in range(M)]           # all M encoders, whole batch
            pair_m = torch.arange(M, device=x.device).repeat_interleave(B)
            pair_b = torch.arange(B, device=x.device).repeat(M)
            keep = avail[pair_b, pair_m]
            flat = [torch.cat([f[s] for f in per_mod]) for s in range(len(self.widths))]
            stacked = [f.new_zeros(B, M, *f.shape[1:]).index_put((pair_b, pair_m), f * keep.view(-1, *[1] * (f.ndim - 1)).to(f.dtype))
                       for f in flat]
            return stacked, flat, (pair_b, pair_m)

        def forward(self, x, avail):
            out = super().forward(x, avail)
            out['expert_logits'] = out['expert_logits'] * avail[:, :, None, None, None, None].to(out['expert_logits'].dtype)
            return out
    return AllEncodersCLoE


def make_model(formulation:str, widths:tuple, n_modalities:int=4, n_classes:int=4, seed:int=0):
    "CLoE ('cloe') or its all-encoders formulation ('all'), same seed so the same weights."
    import torch
    from cloe_nb.model import CLoE
    torch.manual_seed(seed)
    cls = CLoE if formulation == 'cloe' else _all_encoders_class()
    return cls(n_modalities, n_classes, widths)


def _variant_classes()->dict:
    "Conv3d classes per variant: torch's own dispatch, each of the two CPU rewrites of `OneDNNConv3d` alone, and both."
    import torch
    from torch import nn
    from cloe_nb.blocks import OneDNNConv3d, _native_cpu_path, _depth_halves

    class SplitOnly(nn.Conv3d):
        def forward(self, x):
            y = _depth_halves(self, x) if x.device.type == 'cpu' and _native_cpu_path(self, x) else None
            return super().forward(x) if y is None else y.contiguous()

    class ChannelsLastOnly(nn.Conv3d):
        def forward(self, x):
            return super().forward(x.contiguous(memory_format=torch.channels_last_3d) if x.device.type == 'cpu' else x)
    return {'base': nn.Conv3d, 'split': SplitOnly, 'cl': ChannelsLastOnly, 'split+cl': OneDNNConv3d}


def set_variant(model, variant:str):
    "Swap the model's convolutions: 'base' (torch's dispatch), 'split' (batch of one as two halves), 'cl' (channels-last), 'split+cl' (the default)."
    from cloe_nb.blocks import OneDNNConv3d
    classes = _variant_classes()
    if variant not in classes: raise ValueError(f"variant: expected one of {tuple(classes)}, got {variant!r}")
    for m in model.modules():
        if isinstance(m, OneDNNConv3d): m.__class__ = classes[variant]
    return model


def step_flops(model, loss_fn, x, y, avail)->int:
    "FLOPs of one forward + loss + backward (torch.utils.flop_counter)."
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        loss_fn(model(x, avail), y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def expected_flops(model, loss_fn, size:int, device:str='cpu', subsets:str='uniform')->float:
    "Expected FLOPs per sample under uniform subset sampling (exact: FLOPs depend only on |A|), or with every modality ('full')."
    import torch
    M = model.n_modalities
    x = torch.randn(1, M, size, size, size, device=device)
    y = torch.randint(0, model.n_classes, (1, 1, size, size, size), device=device)
    weights = {k: math.comb(M, k) / (2 ** M - 1) for k in range(1, M + 1)} if subsets == 'uniform' else {M: 1.}
    return sum(w * step_flops(model, loss_fn, x, y, (torch.arange(M, device=device) < k)[None]) for k, w in weights.items())


def flops_per_step(model, loss_fn, size:int, bs:int, device:str='cpu', subsets:str='uniform', flops_at:int=64)->tuple:
    "(FLOPs per step, size counted at): counted at `size`, or above `flops_at` counted at `flops_at` and scaled by the voxel count."
    at = size if size <= flops_at else flops_at     # convolution FLOPs are proportional to voxels (checked on the docs page)
    return bs * expected_flops(model, loss_fn, at, device, subsets) * (size / at) ** 3, at


def _rss_mb()->float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def subset_draws(bs:int, M:int, repeats:int, subsets:str='uniform', seed:int=0)->list:
    "[(k, avail (bs, M))]: a full-set warm-up, then `repeats` draws of each size k = 1..M ('uniform') or of the full set ('full')."
    import torch
    g = torch.Generator().manual_seed(seed)
    full = torch.ones(bs, M, dtype=torch.bool)
    sizes = range(1, M + 1) if subsets == 'uniform' else (M,)
    draws = [(M, full)]
    for _ in range(repeats):
        for k in sizes:
            avail = torch.zeros(bs, M, dtype=torch.bool)
            for b in range(bs): avail[b, torch.randperm(M, generator=g)[:k]] = True
            draws.append((k, avail))
    return draws


def expected(rows:list, key:str, M:int)->float:
    "Median of `key` per subset size k, weighted by k's share of the 2^M - 1 subsets (only the sizes present)."
    ks = sorted({r['k'] for r in rows})
    w = {k: math.comb(M, k) for k in ks}
    return sum(w[k] * statistics.median(r[key] for r in rows if r['k'] == k) for k in ks) / sum(w.values())


def run_config(cfg:dict)->dict:
    "Time one configuration in this process: the expected step over subset sizes (medians of `repeats` steps each) after a warm-up."
    import torch
    from cloe_nb.losses import CLoELoss
    if cfg['threads']: torch.set_num_threads(cfg['threads'])
    dev, S, bs = cfg['device'], cfg['size'], cfg['bs']
    model = set_variant(make_model(cfg['formulation'], cfg['widths'], seed=cfg['seed']), cfg['variant']).to(dev)
    if cfg['checkpoint']:
        from cloe_nb.blocks import set_checkpointing
        set_checkpointing(model)
    loss_fn = CLoELoss(model.n_classes)
    fwd_model = torch.compile(model) if cfg['compile'] else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(cfg['seed'])
    x = torch.randn(bs, model.n_modalities, S, S, S, generator=g).to(dev)
    y = torch.randint(0, model.n_classes, (bs, 1, S, S, S), generator=g).to(dev)
    M = model.n_modalities
    draws = subset_draws(bs, M, cfg['repeats'], cfg['subsets'], cfg['seed'])
    amp = torch.autocast(dev.split(':')[0], dtype=torch.float16 if cfg['amp'] == 'fp16' else torch.bfloat16, enabled=cfg['amp'] != 'none')
    sync = torch.cuda.synchronize if dev.startswith('cuda') else (lambda: None)
    base_rss = _rss_mb()
    if dev.startswith('cuda'): torch.cuda.reset_peak_memory_stats()
    rows = []
    for k, avail in draws:
        avail = avail.to(dev)
        sync(); t0, c0 = time.perf_counter(), time.process_time()
        with amp: loss = loss_fn(fwd_model(x, avail), y)
        sync(); t1 = time.perf_counter()
        loss.backward(); sync(); t2 = time.perf_counter()
        opt.step(); opt.zero_grad(set_to_none=True); sync(); t3, c3 = time.perf_counter(), time.process_time()
        rows.append(dict(fwd=t1 - t0, bwd=t2 - t1, opt=t3 - t2, step=t3 - t0, cpu=c3 - c0, k=k))
    warmup, rows = rows[0]['step'], rows[1:]                  # the first step is a warm-up (and compiles, with --compile)
    med = {key: expected(rows, key, M) for key in ('fwd', 'bwd', 'opt', 'step', 'cpu', 'k')}
    res = dict(cfg, **med, mean_avail=med['k'], warmup=warmup, base_rss_mb=base_rss, peak_rss_mb=_rss_mb(),
               gpu_peak_gb=torch.cuda.max_memory_allocated() / 2**30 if dev.startswith('cuda') else None,
               threads=torch.get_num_threads(), flops=None, flops_at=None)
    if cfg['flops']:
        with amp: res['flops'], res['flops_at'] = flops_per_step(model, loss_fn, S, bs, dev, cfg['subsets'], cfg['flops_at'])
    return res


def _run_in_child(cfg:dict)->dict:
    "One configuration in a fresh process (peak RSS of its own); in-process for CUDA or when asked."
    if cfg.get('inprocess'): return run_config(cfg)
    with mp.get_context('spawn').Pool(1) as pool: return pool.apply(run_config, (cfg,))


def machine()->str:
    "One line: CPU model, cores, torch version, load average."
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor()) \
        if os.path.exists('/proc/cpuinfo') else platform.processor()
    load = ', '.join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {load}"


def bench(sizes=(32, 48, 64), widths=(8, 16, 32, 64), bs:int=2, repeats:int=5, formulations=FORMULATIONS,
          variants=('split+cl',), device:str='cpu', threads:int=0, amp:str='none', compile:bool=False,
          checkpoint:bool=False, flops:bool=True, seed:int=0, inprocess:bool=False, omp_wait:str|None='PASSIVE',
          subsets:str='uniform', flops_at:int=64, printer=print)->list:
    "Run the grid and print one line per configuration plus the CLoE / all-encoders ratios; returns the rows."
    if omp_wait: os.environ['OMP_WAIT_POLICY'] = omp_wait   # read by libgomp when a child process imports torch
    printer(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC | {machine()}")
    printer(f"widths {'-'.join(map(str, widths))}, bs {bs}, device {device}, amp {amp}, compile {compile}, checkpointing {checkpoint}, "
            f"a warm-up, then {repeats} steps per "
            + ("subset size, medians weighted as under uniform sampling" if subsets == 'uniform' else "configuration on the full set (the memory worst case)"))
    if subsets not in ('uniform', 'full'): raise ValueError(f"subsets: expected 'uniform' or 'full', got {subsets!r}")
    hdr = (f"{'size':>4} {'formulation':>11} {'variant':>9} {'|A|':>4} | {'fwd s':>6} {'bwd s':>6} {'step s':>6} {'cpu s':>6} | "
           f"{'peak RSS MB':>11} {'+steps MB':>9} {'GPU GB':>6} | {'GFLOP/step':>10}")
    printer(hdr); printer('-' * len(hdr))
    rows = []
    for size in sizes:
        for variant in variants:
            for form in formulations:
                cfg = dict(size=size, widths=tuple(widths), bs=bs, repeats=repeats, formulation=form, variant=variant, device=device,
                           threads=threads, amp=amp, compile=compile, checkpoint=checkpoint, flops=flops, seed=seed,
                           subsets=subsets, flops_at=flops_at,
                           inprocess=inprocess or device.startswith('cuda'))
                r = _run_in_child(cfg); rows.append(r)
                gpu = f"{r['gpu_peak_gb']:.2f}" if r['gpu_peak_gb'] is not None else '-'
                fl = (f"{r['flops'] / 1e9:.1f}" + ('*' if r['flops_at'] != size else '')) if r['flops'] else '-'
                printer(f"{size:>4} {form:>11} {variant:>9} {r['mean_avail']:>4.2f} | {r['fwd']:>6.2f} {r['bwd']:>6.2f} {r['step']:>6.2f} "
                        f"{r['cpu']:>6.2f} | {r['peak_rss_mb']:>11.0f} {r['peak_rss_mb'] - r['base_rss_mb']:>9.0f} {gpu:>6} | {fl:>10}")
                if compile: printer(f"{'':>4} warm-up step (torch.compile compiling): {r['warmup']:.1f} s")
            if set(FORMULATIONS) <= set(formulations):
                c, a = (next(r for r in rows if r['size'] == size and r['variant'] == variant and r['formulation'] == f) for f in FORMULATIONS)
                fr = (f", FLOPs {c['flops'] / a['flops']:.2f}x (expectation, " + ('scaled' if c['flops_at'] != size else 'exact') + ")") if c['flops'] and a['flops'] else ''
                if c['flops_at'] and c['flops_at'] != size:
                    printer(f"{'':>4} * counted at {c['flops_at']}³ and scaled by (size/{c['flops_at']})³")
                printer(f"{'':>4} CLoE / all-encoders at {size}³ ({variant}): step {c['step'] / a['step']:.2f}x wall, "
                        f"{c['cpu'] / a['cpu']:.2f}x CPU time{fr}")
    return rows


def read_table(path)->list:
    "The configuration rows of a saved `bench` printout (e.g. bench/results/*.txt) as dicts, with the section they follow."
    import re
    row = re.compile(r'^\s*(\d+)\s+(cloe|all)\s+(\S+)\s+([\d.]+) \|\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \|'
                     r'\s+(\d+)\s+(-?\d+)\s+(\S+) \|\s+(\S+)\s*$')
    rows, section, setup = [], '', ''
    for line in open(path, encoding='utf-8'):
        if line.startswith('=='): section = line[2:].strip()
        elif line.startswith('widths '): setup = line.strip()
        elif m := row.match(line):
            g = m.groups()
            rows.append(dict(section=section, setup=setup, size=int(g[0]), formulation=g[1], variant=g[2], mean_avail=float(g[3]),
                             fwd=float(g[4]), bwd=float(g[5]), step=float(g[6]), cpu=float(g[7]), peak_rss_mb=float(g[8]),
                             steps_mb=float(g[9]), gflops=None if g[11] == '-' else float(g[11].rstrip('*'))))
    return rows


def _ints(s): return tuple(int(v) for v in s.replace('-', ',').split(',') if v)


@call_parse
def main(sizes:str='32,48,64',      # cubic patch sides, e.g. 32,48,64,96,112
         widths:str='8,16,32,64',   # encoder widths
         bs:int=2,                  # batch size
         repeats:int=5,             # timed steps (medians reported)
         formulations:str='cloe,all',  # cloe, all (all-encoders-always) or both
         variants:str='split+cl',   # comma list of VARIANTS: the optimisations one by one
         device:str='cpu',          # torch device
         threads:int=0,             # torch threads (0: torch default)
         amp:str='none',            # autocast dtype: none, bf16 or fp16 (what a T4 trains in; no loss scaling here)
         compile:bool=False,        # torch.compile the model
         checkpoint:bool=False,     # activation checkpointing (cloe_nb.blocks.set_checkpointing)
         flops:bool=True,           # count FLOPs (--no-flops skips the count)
         flops_at:int=64,           # count FLOPs at this size when larger and scale by the voxel count
         subsets:str='uniform',     # uniform subset sampling (the paper's protocol) or full (the memory worst case)
         seed:int=0,                # random seed
         omp_wait:str='PASSIVE'):   # OMP_WAIT_POLICY of the measuring processes ('': the environment's); PASSIVE: no spinning
    "Time one training step of CLoE against the all-encoders formulation: seconds, peak memory, FLOPs."
    try: check_choice(amp, ('none', 'bf16', 'fp16'), '--amp'); check_choice(subsets, ('uniform', 'full'), '--subsets')
    except ValueError as e: raise SystemExit(str(e)) from None
    bench(_ints(sizes), _ints(widths), bs, repeats, tuple(formulations.split(',')), tuple(variants.split(',')),
          device, threads, amp, compile, checkpoint, flops, seed, omp_wait=omp_wait or None,
          subsets=subsets, flops_at=flops_at)

