#!/usr/bin/env python
"""Train the phantom demo model that ships with the package (`cloe_nb/data/demo/`).

One fixed recipe, seeds fixed: phantom BraTS cases generated with dataset seed 7401 (used by nothing else),
CPU demo widths 8-16-32-64, 48³ patches, batch 2, RFNet's Adam, training-time corruption of one modality in
30% of the samples (so that the gate sees unreliable experts while it learns). The run folder is kept under
OUT; its last.pth and config.json are copied (atomically) to `cloe_nb/data/demo/` with a provenance file.
Resumable: run it again and it continues from the run's last.pth.

    python bench/demo_model.py                         # ~1 h on 2 CPU cores
    python bench/demo_model.py --epochs 30             # continue a finished run for more epochs
"""
import json, time
from datetime import date
from pathlib import Path
from fastcore.script import call_parse

DATA_SEED = 7401    # phantom dataset seed of the demo model's training pool (the tutorial holds out seed 7402)
RECIPE = dict(epochs=24, iters_per_epoch=50, patch=48, widths=(8, 16, 32, 64), bs=2, lr=3e-3, fg_ratio=0.8, p_full=0.5,
              p_corrupt=0.3, valid_fraction=0.1, seed=0, ablation='full')


@call_parse
def main(out:str='bench/runs/demo_model',  # where the phantom data and the run folder go
         n_cases:int=40,                   # phantom training pool (10% of it validates)
         size:int=64,                      # phantom volume side
         epochs:int|None=None,             # override the recipe's epochs (a finished run grows)
         install:bool=True,                # copy the result to cloe_nb/data/demo/
         install_only:bool=False):         # only copy a finished run (no training)
    "Train the shipped phantom demo model and install it as package data."
    import torch
    from cloe_nb.phantom import make_phantom_dataset
    from cloe_nb.preprocess import prepare_dataset, is_cache
    from cloe_nb.train import train
    from cloe_nb.core import atomic_write
    torch.set_num_threads(2)
    root = Path(out); root.mkdir(parents=True, exist_ok=True)
    raw, cache, run = root/'raw', root/'cache', root/'run'
    if not is_cache(cache):
        if not raw.exists(): make_phantom_dataset(raw, 'brats2020', n_cases, size, DATA_SEED)
        prepare_dataset(raw, cache, progress=False)
    recipe = dict(RECIPE, **({'epochs': epochs} if epochs else {}))
    if not install_only:
        t0 = time.time()
        train(cache, run, resume_run=(run/'last.pth').exists(), progress=False, **recipe)
        print(f"trained in {time.time() - t0:.0f} s")
    if not install: return
    dest = Path(__file__).resolve().parents[1]/'cloe_nb'/'data'/'demo'
    dest.mkdir(parents=True, exist_ok=True)
    ck = torch.load(run/'last.pth', map_location='cpu', weights_only=True)
    slim = {k: ck[k] for k in ('format', 'model', 'model_config', 'epoch', 'modalities', 'convention') if k in ck}   # no optimiser state: a few MB
    atomic_write(dest/'last.pth', lambda tmp: torch.save(slim, tmp))
    cfg = json.loads((run/'config.json').read_text()) | dict(data=None)   # no path of this machine in the package
    atomic_write(dest/'config.json', lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=1)))
    log = (run/'log.csv').read_text()
    atomic_write(dest/'log.csv', lambda tmp: Path(tmp).write_text(log))
    prov = dict(script='bench/demo_model.py', date=str(date.today()), data_seed=DATA_SEED, n_cases=n_cases, size=size,
                recipe={k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()}, torch=torch.__version__)
    atomic_write(dest/'provenance.json', lambda tmp: Path(tmp).write_text(json.dumps(prov, indent=1)))
    print(f"installed {dest} ({(dest/'last.pth').stat().st_size / 1e6:.1f} MB)")
