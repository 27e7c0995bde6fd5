#!/usr/bin/env python
"""The science benchmark: does the consistency gate learn reliability, and does full CLoE beat mean fusion?

Trains every configuration with the same data, seeds and step budget on phantom BraTS cases generated with seeds
that no test or tutorial uses, then on held-out phantom cases: the 15-subset Dice table (whole volume) and, for
models with a gate, the corruption test of `cloe_nb.evaluate.corruption_case` (noise, flip, bias field on one
modality at a time; the model's weights against uniform weights of the same experts). Resumable: a finished
(configuration, seed) is not run again. Prints one table and writes it, with date and machine line, to OUT.

    python bench/science.py                                   # default grid below (~1.5 h on 2 cores)
    python bench/science.py --configs full,mean_fusion --seeds 0,1,2
    python bench/science.py --table-only                      # rebuild the table from the finished runs

A configuration is an ablation/baseline name of `cloe_nb.model`, optionally with '+' options:
`full+raw` (the paper-literal gate input), `full+centered`, `full+pc` (training-time corruption, p = 0.3),
`full+fastai` (fastai's Adam instead of RFNet's), `full+nocon` (no L_con: beta = 0).
"""
import json, time
from fastcore.script import call_parse
from train_step import machine   # the machine line of every bench printout (bench/ is on the path)
from datetime import date
from pathlib import Path
import pandas as pd
import torch

DEFAULT_CONFIGS = 'full,mean_fusion,full+raw,full+pc,no_gating,no_fusion,early_fusion,no_mec,no_rec'
DATA_SEEDS = dict(train=7301, test=7302)    # phantom dataset seeds used by nothing else in the repository
OPTIONS = {'raw': dict(score_transform='raw'), 'centered': dict(score_transform='centered'),
           'pc': dict(p_corrupt=0.3), 'fastai': dict(optimizer='fastai'), 'nocon': dict(beta=0.)}


def make_data(root:Path, n_train:int, n_test:int, size:int)->tuple:
    "Phantom training pool and held-out cases, preprocessed once (reused when present)."
    from cloe_nb.phantom import make_phantom_dataset
    from cloe_nb.preprocess import prepare_dataset, is_cache
    caches = []
    for part, n in (('train', n_train), ('test', n_test)):
        raw, cache = root/f'{part}-raw', root/f'{part}-cache'
        if not is_cache(cache):
            if not raw.exists(): make_phantom_dataset(raw, 'brats2020', n, size, DATA_SEEDS[part])
            prepare_dataset(raw, cache, progress=False)
        caches.append(cache)
    return tuple(caches)


def parse_config(name:str)->tuple:
    "'full+raw+pc' -> ('full', {score_transform: 'raw', p_corrupt: 0.3})."
    base, *opts = name.split('+')
    unknown = [o for o in opts if o not in OPTIONS]
    if unknown: raise SystemExit(f"--configs: unknown option(s) {unknown} in {name!r}; expected {list(OPTIONS)}")
    return base, {k: v for o in opts for k, v in OPTIONS[o].items()}


def run_one(name:str, seed:int, train_cache:Path, test_cache:Path, out:Path, budget:dict, eval_roi:int)->dict:
    "Train one (configuration, seed), evaluate it on the held-out cases, return its record."
    from cloe_nb.train import train
    from cloe_nb.evaluate import evaluate_run
    base, opts = parse_config(name)
    run = out/'runs'/f'{name}-s{seed}'
    t0 = time.time()
    if not (run/'last.pth').exists() or json.loads((run/'config.json').read_text())['epochs'] > len(pd.read_csv(run/'log.csv')):
        train(train_cache, run, resume_run=(run/'last.pth').exists(), progress=False, ablation=base, seed=seed, **budget, **opts)
    t_train = time.time() - t0
    gated = base not in ('mean_fusion', 'early_fusion', 'no_fusion')
    res = evaluate_run(run/'last.pth', test_cache, out=run/'eval', roi=eval_roi,
                       corrupt='noise,flip,bias' if gated else None, progress=False)
    avg = res['dice']['Avg']
    rec = dict(config=name, seed=seed, train_s=round(t_train, 1), eval_s=round(time.time() - t0 - t_train, 1),
               **{f'{r}_avg': float(avg[r]) for r in avg.index})
    c = res['corruption']
    if c is not None:
        bad = c.drop(index='none', level=0)
        rec.update(corrupt_weight=float(bad.weight_full.mean()), corrupt_weight_max=float(bad.weight_full.max()),
                   corrupt_WT_gain=float(bad.WT_gain.mean()), clean_WT_gain=float(c.loc['none'].WT_gain.mean()),
                   clean_max_dev=float(c.loc['none'].max_dev_full.mean()), clean_cases_dev=float(c.loc['none'].cases_dev_gt_005.mean()),
                   **{f'corrupt_weight_{k}': float(bad.loc[k].weight_full.mean()) for k in bad.index.get_level_values(0).unique()},
                   **{f'corrupt_WT_gain_{k}': float(bad.loc[k].WT_gain.mean()) for k in bad.index.get_level_values(0).unique()})
    return rec


def table(records:list)->pd.DataFrame:
    "Rows = configurations, columns = mean ± spread (std over seeds) of each figure."
    df = pd.DataFrame(records)
    cols = [c for c in ('WT_avg', 'TC_avg', 'ET_avg', 'corrupt_weight', 'corrupt_WT_gain', 'clean_max_dev', 'clean_cases_dev', 'clean_WT_gain',
                        'corrupt_weight_noise', 'corrupt_weight_flip', 'corrupt_weight_bias', 'train_s') if c in df]
    g = df.groupby('config', sort=False)
    def fmt(s):
        if not s.notna().any(): return '–'
        d = 3 if ('weight' in s.name or 'dev' in s.name) else 1
        return f"{s.mean():.{d}f} ± {s.std(ddof=0):.{d}f}"
    t = g[cols].agg(fmt)
    t.insert(0, 'seeds', g.seed.apply(lambda s: ','.join(map(str, sorted(s)))))
    t['mean3'] = g.apply(lambda d: f"{d[['WT_avg', 'TC_avg', 'ET_avg']].mean(axis=1).mean():.1f}")
    return t


legend = """
WT/TC/ET_avg: 15-subset Avg Dice (%) on the held-out cases, whole volume. corrupt_weight: the corrupted expert's fusion weight with all
four modalities available (uniform = 0.25), mean over noise/flip/bias and the four modalities. corrupt_WT_gain: WT Dice (points) of the
model's fusion minus uniform fusion of the same experts, over the subsets that hold the corrupted modality and another. clean_max_dev:
largest |w - 1/4| on clean held-out cases (all modalities), mean over cases; clean_cases_dev: fraction of cases where it exceeds 0.05;
clean_WT_gain: the gate's WT gain over uniform on clean data (11 multi-modality subsets). ± is the std over seeds; mean3 = mean of the
three Avg columns.
"""


@call_parse
def main(out:str='bench/results/science',  # results folder (records.jsonl, table.md, the phantom data)
         configs:str=DEFAULT_CONFIGS,      # configurations, comma-separated
         seeds:str='0,1,2',                # training seeds, comma-separated
         n_train:int=20,                   # phantom cases in the training pool (4/5 train, 1/5 validation)
         n_test:int=5,                     # held-out phantom cases
         size:int=64,                      # phantom volume side (the CPU demo: 64)
         epochs:int=8,                     # training epochs
         patch:int=48,                     # training patch side (the CPU demo: 48)
         iters:int=20,                     # iterations per epoch
         eval_roi:int=64,                  # evaluation window (64: one window covers a cropped 64³ phantom)
         seed_major:bool=False,            # all configurations of a seed before the next seed (default: by configuration)
         table_only:bool=False):           # only rebuild the table from records.jsonl
    "Train every configuration on the same phantom data, seeds and step budget; tabulate Dice and gate behaviour."
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    rec_path = out/'records.jsonl'
    records = [json.loads(l) for l in rec_path.read_text().splitlines()] if rec_path.exists() else []
    done = {(r['config'], r['seed']) for r in records}
    budget = dict(epochs=epochs, iters_per_epoch=iters, patch=patch, widths='8,16,32,64', bs=2, lr=3e-3, fg_ratio=0.8, p_full=0.5)
    head = (f"# science benchmark, {date.today()}\n# {machine()}\n# data: {n_train} training-pool + {n_test} held-out phantom cases at {size}³ "
            f"(dataset seeds {DATA_SEEDS}); budget {epochs} epochs x {iters} iterations, {budget}; evaluation window {eval_roi}\n")
    if not table_only:
        train_cache, test_cache = make_data(out/'data', n_train, n_test, size)
        configs, seeds = configs.split(','), [int(s) for s in seeds.split(',')]
        order = [(c, s) for s in seeds for c in configs] if seed_major else [(c, s) for c in configs for s in seeds]
        for name, seed in order:
            if (name, seed) in done: continue
            t0 = time.time()
            rec = run_one(name, seed, train_cache, test_cache, out, budget, eval_roi)
            records.append(rec)
            with open(rec_path, 'a') as f: f.write(json.dumps(rec) + '\n')
            print(f"{name} seed {seed}: {time.time() - t0:.0f} s, {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rec.items()})}", flush=True)
    if not records: raise SystemExit(f"science: no records in {rec_path}; run without --table-only first")
    t = table(records)
    from cloe_nb.metrics import table_to_markdown
    text = head + table_to_markdown(t) + legend
    (out/'table.md').write_text(text)
    print(text)

