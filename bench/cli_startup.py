#!/usr/bin/env python
"""Benchmark: how long each console script takes before it does anything — `--help` wall time (a fresh process,
median of `--repeats`) and the import time of its module (`python -X importtime`-free: a fresh `python -c import`),
plus which heavy libraries (torch, fastai, monai) its module imports.

    python bench/cli_startup.py                 # every cloe-* script, 5 repeats
    python bench/cli_startup.py --repeats 3 --out bench/results/cli_startup.md
"""
import statistics, subprocess, sys, time
from pathlib import Path
from fastcore.script import call_parse

SCRIPTS = {'cloe-phantom': 'cloe_nb.phantom', 'cloe-prepare': 'cloe_nb.preprocess', 'cloe-train': 'cloe_nb.train',
           'cloe-predict': 'cloe_nb.inference', 'cloe-evaluate': 'cloe_nb.evaluate', 'cloe-score': 'cloe_nb.evaluate'}

def _wall(cmd:list)->float:
    t0 = time.perf_counter(); subprocess.run(cmd, capture_output=True, check=True); return time.perf_counter() - t0

def _heavy(module:str)->str:
    code = f"import sys, {module}; print(','.join(m for m in ('torch', 'fastai', 'monai') if m in sys.modules))"
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() or '-'

@call_parse
def main(repeats:int=5,      # fresh processes per measurement (the median is reported)
         out:str=None):      # also write the markdown table here
    "Time `--help` of every console script and the import of its module, in fresh processes."
    exe = Path(sys.executable).parent
    rows = ['| script | `--help` s (median) | import of its module s (median) | heavy libraries imported |', '|---|---|---|---|']
    for script, module in SCRIPTS.items():
        helps = [_wall([str(exe/script), '--help']) for _ in range(repeats)]
        imps = [_wall([sys.executable, '-c', f'import {module}']) for _ in range(repeats)]
        rows.append(f"| {script} | {statistics.median(helps):.2f} | {statistics.median(imps):.2f} | {_heavy(module)} |")
        print(rows[-1], flush=True)
    base = statistics.median(_wall([sys.executable, '-c', 'pass']) for _ in range(repeats))
    rows.append(f"\nA bare `python -c pass` takes {base:.2f} s on this machine.")
    print(rows[-1])
    if out: Path(out).write_text('\n'.join(rows) + '\n')
