#!/usr/bin/env python
"Developer tool: edit notebooks as percent-format text, and execute them to store outputs for the docs."
import json, os, re, sys
from pathlib import Path
from fastcore.script import call_parse

_MD = re.compile(r'^# %% \[markdown\]\s*$')
_CODE = re.compile(r'^# %%\s*$')

def nb_to_py(nb:dict)->str:
    "Render a notebook as percent-format text (markdown lines prefixed with `# `)."
    out = []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'markdown':
            out.append('# %% [markdown]\n' + '\n'.join(('# ' + l) if l else '#' for l in src.split('\n')))
        else: out.append('# %%\n' + src)
    return '\n\n'.join(out) + '\n'

def _cell(kind, lines):
    while lines and not lines[-1].strip(): lines.pop()
    while lines and not lines[0].strip(): lines.pop(0)
    if kind == 'markdown': lines = [l[2:] if l.startswith('# ') else l[1:] if l.startswith('#') else l for l in lines]
    src = '\n'.join(lines)
    c = dict(cell_type=kind, metadata={}, source=src)
    if kind == 'code': c.update(execution_count=None, outputs=[])
    return c

def py_to_nb(text:str)->dict:
    "Parse percent-format text into a notebook dict (no outputs)."
    cells, kind, lines = [], None, []
    for l in text.split('\n'):
        if _MD.match(l) or _CODE.match(l):
            if kind: cells.append(_cell(kind, lines))
            kind, lines = ('markdown' if _MD.match(l) else 'code'), []
        else: lines.append(l)
    if kind: cells.append(_cell(kind, lines))
    return dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
                nbformat=4, nbformat_minor=5)

def _write(path, nb):
    tmp = Path(str(path) + '.tmp')
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); os.replace(tmp, path)

def _keep_outputs(nb:dict, old:dict):
    "Carry stored outputs over from `old` to the cells of `nb` whose source is unchanged."
    outs = {}
    for c in old['cells']:
        if c['cell_type'] == 'code': outs.setdefault(''.join(c['source']) if isinstance(c['source'], list) else c['source'], c)
    for c in nb['cells']:
        o = outs.get(c['source']) if c['cell_type'] == 'code' else None
        if o is not None: c['outputs'], c['execution_count'] = o.get('outputs', []), o.get('execution_count')

_SKIP = re.compile(r'^#\|\s*(eval:\s*false|gpu)\s*$', re.M)
def _skip(cell)->bool:
    "Cells the docs show without running: `#| eval: false` and `#| gpu`."
    return cell.cell_type == 'code' and bool(_SKIP.search(cell.source))

def _notebook_bars():
    "fastprogress as in Jupyter (HTML tables), not console text: what a notebook run in Jupyter stores."
    import fastprogress.fastprogress as fp
    fp.IN_NOTEBOOK, fp.master_bar, fp.progress_bar = True, fp.NBMasterBar, fp.NBProgressBar

def _final_bars(outputs:list)->list:
    "Jupyter updates a progress display in place; execnb appends every update: keep only what Jupyter would show at the end."
    html = lambda o: ''.join(o.get('data', {}).get('text/html', '')) if o.get('output_type') == 'display_data' else None
    gone = lambda h: h is not None and ('<progress ' in h or not h.strip())   # a bar, or a bar cleared when it ended
    return [o for o in outputs if not gone(html(o))]

@call_parse
def main(cmd:str,  # py2nb | nb2py | run
         src:str,  # source file
         dest:str=None):  # destination (py2nb/nb2py); default: same name, other suffix
    "py2nb: text -> notebook (keeping stored outputs of unchanged cells); nb2py: notebook -> text; run: execute a notebook in place, storing outputs."
    src = Path(src)
    if cmd == 'py2nb':
        dest = Path(dest or src.with_suffix('.ipynb'))
        nb = py_to_nb(src.read_text())
        if dest.exists(): _keep_outputs(nb, json.loads(dest.read_text()))
        _write(dest, nb)
    elif cmd == 'nb2py': Path(dest or src.with_suffix('.py')).write_text(nb_to_py(json.loads(src.read_text())))
    elif cmd == 'run':
        from execnb.shell import CaptureShell
        from execnb.shell import read_nb, write_nb
        src = src.resolve()   # absolute: a notebook may change the working folder
        os.chdir(src.parent)
        nb = read_nb(src.name)
        _notebook_bars()
        CaptureShell().run_all(nb, exc_stop=True, preproc=_skip)
        for c in nb.cells:
            if c.cell_type == 'code': c.outputs = _final_bars(c.get('outputs', []))
        tmp = str(src) + '.tmp'; write_nb(nb, tmp); os.replace(tmp, src)
    else: sys.exit(f"nbpy: unknown command {cmd!r}; expected py2nb, nb2py or run")
