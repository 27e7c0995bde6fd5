#!/usr/bin/env python
"""Benchmark: one CLoE training step (forward + loss, backward, Adam) at several patch sizes, against the
all-encoders-always formulation (every modality encoded and decoded, missing ones zeroed afterwards, as RFNet does)
at equal widths, under uniform modality-subset sampling. Prints medians of repeats: seconds (wall and CPU),
peak memory, FLOPs per step (torch.utils.flop_counter) and the CLoE / all-encoders ratios (goal <= 0.8x).

    python bench/train_step.py                                  # 32/48/64, widths 8-16-32-64, bs 2, CPU
    python bench/train_step.py --sizes 112 --widths 16,32,64,128 --bs 1 --device cuda --amp bf16
    python bench/train_step.py --sizes 48 --variants base,split,cl,split+cl   # the optimisations one by one

Each (size, formulation, variant) runs in its own process, so peak RSS is that configuration's. FLOPs per step
are exact expectations under uniform subset sampling: the modality encoders are identical, so a sample's FLOPs
depend only on |A|; the step is counted once per |A| = 1..M at batch 1 and weighted by C(M, k) / (2^M - 1).
Timed steps use the learner's own subset draws (`sample_subsets`, seeded; the same draws for both formulations).
"""
import argparse, math, os, resource, statistics, sys, time, platform, datetime
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


def expected_flops(model, loss_fn, size:int, device:str='cpu')->float:
    "Expected FLOPs per sample under uniform subset sampling (exact: FLOPs depend only on |A|)."
    import torch
    M = model.n_modalities
    x = torch.randn(1, M, size, size, size, device=device)
    y = torch.randint(0, model.n_classes, (1, 1, size, size, size), device=device)
    total = 0.
    for k in range(1, M + 1):
        avail = (torch.arange(M, device=device) < k)[None]
        total += math.comb(M, k) / (2 ** M - 1) * step_flops(model, loss_fn, x, y, avail)
    return total


def _rss_mb()->float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_config(cfg:dict)->dict:
    "Time one configuration in this process: medians of `repeats` steps after one warm-up."
    import torch
    from cloe_nb.losses import CLoELoss
    from cloe_nb.learner import sample_subsets
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
    draws = [sample_subsets(bs, model.n_modalities, None, generator=g).to(dev) for _ in range(cfg['repeats'] + 1)]
    amp = torch.autocast(dev, dtype=torch.bfloat16, enabled=cfg['amp'] == 'bf16')
    sync = torch.cuda.synchronize if dev.startswith('cuda') else (lambda: None)
    base_rss = _rss_mb()
    if dev.startswith('cuda'): torch.cuda.reset_peak_memory_stats()
    rows = []
    for avail in draws:
        sync(); t0, c0 = time.perf_counter(), time.process_time()
        with amp: loss = loss_fn(fwd_model(x, avail), y)
        sync(); t1 = time.perf_counter()
        loss.backward(); sync(); t2 = time.perf_counter()
        opt.step(); opt.zero_grad(set_to_none=True); sync(); t3, c3 = time.perf_counter(), time.process_time()
        rows.append(dict(fwd=t1 - t0, bwd=t2 - t1, opt=t3 - t2, step=t3 - t0, cpu=c3 - c0, n_avail=avail.sum().item() / bs))
    rows = rows[1:]                                           # the first step is a warm-up
    med = {k: statistics.median(r[k] for r in rows) for k in ('fwd', 'bwd', 'opt', 'step', 'cpu')}
    res = dict(cfg, **med, mean_avail=statistics.mean(r['n_avail'] for r in rows), base_rss_mb=base_rss, peak_rss_mb=_rss_mb(),
               gpu_peak_gb=torch.cuda.max_memory_allocated() / 2**30 if dev.startswith('cuda') else None,
               threads=torch.get_num_threads(), flops=None)
    if cfg['flops']:
        with amp: res['flops'] = bs * expected_flops(model, loss_fn, S, dev)
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
          printer=print)->list:
    "Run the grid and print one line per configuration plus the CLoE / all-encoders ratios; returns the rows."
    if omp_wait: os.environ['OMP_WAIT_POLICY'] = omp_wait   # read by libgomp when a child process imports torch
    printer(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC | {machine()}")
    printer(f"widths {'-'.join(map(str, widths))}, bs {bs}, device {device}, amp {amp}, compile {compile}, checkpointing {checkpoint}, "
            f"median of {repeats} steps after a warm-up; subsets uniform (sample_subsets)")
    hdr = (f"{'size':>4} {'formulation':>11} {'variant':>9} {'|A|':>4} | {'fwd s':>6} {'bwd s':>6} {'step s':>6} {'cpu s':>6} | "
           f"{'peak RSS MB':>11} {'+steps MB':>9} {'GPU GB':>6} | {'GFLOP/step':>10}")
    printer(hdr); printer('-' * len(hdr))
    rows = []
    for size in sizes:
        for variant in variants:
            for form in formulations:
                cfg = dict(size=size, widths=tuple(widths), bs=bs, repeats=repeats, formulation=form, variant=variant, device=device,
                           threads=threads, amp=amp, compile=compile, checkpoint=checkpoint, flops=flops, seed=seed,
                           inprocess=inprocess or device.startswith('cuda'))
                r = _run_in_child(cfg); rows.append(r)
                gpu = f"{r['gpu_peak_gb']:.2f}" if r['gpu_peak_gb'] is not None else '-'
                fl = f"{r['flops'] / 1e9:.1f}" if r['flops'] else '-'
                printer(f"{size:>4} {form:>11} {variant:>9} {r['mean_avail']:>4.2f} | {r['fwd']:>6.2f} {r['bwd']:>6.2f} {r['step']:>6.2f} "
                        f"{r['cpu']:>6.2f} | {r['peak_rss_mb']:>11.0f} {r['peak_rss_mb'] - r['base_rss_mb']:>9.0f} {gpu:>6} | {fl:>10}")
            if set(FORMULATIONS) <= set(formulations):
                c, a = (next(r for r in rows if r['size'] == size and r['variant'] == variant and r['formulation'] == f) for f in FORMULATIONS)
                fr = f", FLOPs {c['flops'] / a['flops']:.2f}x (exact expectation)" if c['flops'] and a['flops'] else ''
                printer(f"{'':>4} CLoE / all-encoders at {size}³ ({variant}): step {c['step'] / a['step']:.2f}x wall, "
                        f"{c['cpu'] / a['cpu']:.2f}x CPU time{fr}  (goal <= 0.8x)")
    return rows


def _ints(s): return tuple(int(v) for v in s.replace('-', ',').split(',') if v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sizes', default='32,48,64', help='cubic patch sides, e.g. 32,48,64,96,112')
    ap.add_argument('--widths', default='8,16,32,64')
    ap.add_argument('--bs', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--formulations', default='cloe,all', help="cloe, all (all-encoders-always) or both")
    ap.add_argument('--variants', default='split+cl', help=f"comma list of {VARIANTS}: the optimisations one by one")
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--amp', default='none', choices=('none', 'bf16'))
    ap.add_argument('--compile', action='store_true', help='torch.compile the model')
    ap.add_argument('--checkpoint', action='store_true', help='activation checkpointing (cloe_nb.blocks.set_checkpointing)')
    ap.add_argument('--no-flops', dest='flops', action='store_false', help='skip the FLOP count')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--omp-wait', default='PASSIVE', help="OMP_WAIT_POLICY of the measuring processes ('' keeps the environment's); "
                    "PASSIVE stops idle OpenMP threads spinning, which on a shared or oversubscribed CPU costs 2-3x")
    a = ap.parse_args()
    bench(_ints(a.sizes), _ints(a.widths), a.bs, a.repeats, tuple(a.formulations.split(',')), tuple(a.variants.split(',')),
          a.device, a.threads, a.amp, a.compile, a.checkpoint, a.flops, a.seed, omp_wait=a.omp_wait or None)


if __name__ == '__main__':
    main()
