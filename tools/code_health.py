#!/usr/bin/env python
"""Figures of the library's code health: lines over a length limit, per module, and the longest line.

Reads the exported modules (cloe_nb/*.py, without nbdev's generated _modidx.py) of the working tree, or of a
commit with --rev (through `git show`, nothing is checked out).

    python tools/code_health.py
    python tools/code_health.py --rev 5cece54 --limit 120
"""
import argparse, subprocess, sys
from pathlib import Path


def module_texts(rev:str|None=None)->dict:
    "Module path -> source text, from the working tree or from commit `rev`."
    if rev is None: return {str(p): p.read_text() for p in sorted(Path('cloe_nb').glob('*.py'))}
    names = subprocess.run(['git', 'ls-tree', '--name-only', rev, 'cloe_nb/'], capture_output=True, text=True, check=True)
    paths = [n for n in names.stdout.split() if n.endswith('.py')]
    return {p: subprocess.run(['git', 'show', f'{rev}:{p}'], capture_output=True, text=True, check=True).stdout for p in paths}


def long_lines(texts:dict, limit:int=120)->list:
    "Rows (module, lines, lines over `limit`, longest) for every module but _modidx.py."
    rows = []
    for path, text in texts.items():
        if path.endswith('_modidx.py'): continue
        lines = text.splitlines()
        rows.append((path, len(lines), sum(len(l) > limit for l in lines), max((len(l) for l in lines), default=0)))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rev', help='a git commit to read instead of the working tree')
    p.add_argument('--limit', type=int, default=120, help='line length limit (default 120)')
    a = p.parse_args(argv)
    rows = long_lines(module_texts(a.rev), a.limit)
    for path, n, over, longest in rows: print(f"{path:28s} {n:5d} lines {over:4d} over {a.limit}  longest {longest}")
    n, over = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"total: {over} of {n} library lines over {a.limit} characters ({100 * over / max(n, 1):.1f}%), "
          f"longest {max(r[3] for r in rows)} ({a.rev or 'working tree'})")


if __name__ == '__main__': sys.exit(main())
