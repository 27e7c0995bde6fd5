#!/usr/bin/env python
"""Check the docs site as a reader gets it: stored outputs, page headers, sidebar, Colab badges, links, markdown.

Run after `nbdev-proc-nbs` (CI does): reads the notebooks in nbs/ (their stored outputs are what the site shows)
and the processed copies in _proc/ (what show_doc renders at build time). Prints one line per problem and exits 1
if there is any.

    nbdev-proc-nbs && python tools/check_docs.py
    python tools/check_docs.py --nbs nbs --proc _proc
"""
import argparse, ast, json, re, sys
from pathlib import Path

REPO_BLOB = 'colab.research.google.com/github/cloe-nb/cloe_nb/blob/main/nbs/'
OUTPUT_RULES = {   # what no stored output may contain: rule -> pattern
    'a traceback': r'Traceback \(most recent call last\)',
    'a warning': r'\b\w*Warning: |warnings\.warn\(',
    'a progress-bar dump': r'\|[█-]{10,}\|| \d+\.\d\d% \[\d+/\d+ |<progress ',
    'raw recorder values': r"^\s*\[\d+(, (?:[-\d.e]+|nan|None))+, '\d\d:\d\d'\]\s*$",
    'a local path': r'(?<![\w.])(?:/tmp/|/work/|/home/|/root/|/Users/|[A-Z]:\\\\Users)|\.venv/|site-packages/',
}
PROSE_RULES = {   # markdown prose (outside code spans/blocks and math) that pandoc mangles
    'a bare --flag (pandoc makes it an en-dash; put it in backticks)': r'(?<![\w`-])--[a-z]',
    'a bare glob * (pandoc makes it italics; put it in backticks)': r'(?<![\w`*\\])\*[._]\w',
}
MATH_RULES = {'\\_ inside math (shows a literal backslash: write _ or \\text{...} without escapes)': r'\\_'}
DOC_RULES = {   # rendered show_doc output (from _proc)
    'an untyped argument shown as NoneType': r'NoneType',
    'a string annotation': r""":\s*'[A-Za-z_.|]+'|->\s*'[A-Za-z_.|]+'""",
    'a class shown as def': None,   # checked in code below
    'fastai Callback arguments listed': r'\bafter_create\b.*\bbefore_fit\b',
}


def _private_names()->set:
    try: from cloe_nb._modidx import d
    except ImportError: return set()
    return {k.split('.')[-1] for s in d['syms'].values() for k in s if k.split('.')[-1].startswith('_') and not k.endswith('__')}
PRIVATE = _private_names()


def load(p:Path)->dict: return json.loads(p.read_text())
def src(c:dict)->str: return ''.join(c['source'])
def out_text(o:dict)->str:
    if 'text' in o: return ''.join(o['text'])
    if o.get('output_type') == 'error': return '\n'.join(o.get('traceback', [])) or 'Traceback (most recent call last)'
    return '\n'.join(''.join(v) if isinstance(v, list) else str(v) for k, v in o.get('data', {}).items() if k.startswith('text'))


def prose(md:str)->tuple:
    "Markdown split into (prose outside code and math, the math parts)."
    md = re.sub(r'```.*?```', ' ', md, flags=re.S)
    md = re.sub(r'`[^`]+`', ' ', md)
    md = re.sub(r'<[^>\n]+>', ' ', md)                   # html tags and autolinks
    md = re.sub(r'\]\([^)\s]*\)', '] ', md)              # link targets
    math = re.findall(r'\$\$.*?\$\$|\$[^$\n]+\$', md, flags=re.S)
    return re.sub(r'\$\$.*?\$\$|\$[^$\n]+\$', ' ', md, flags=re.S), math


def check_outputs(name:str, nb:dict)->list:
    probs = []
    for i, c in enumerate(nb['cells']):
        for o in c.get('outputs', []):
            t = out_text(o)
            if o.get('output_type') == 'error': probs.append(f'{name}: cell {i}: output is an error ({o.get("ename")})')
            for what, pat in OUTPUT_RULES.items():
                if re.search(pat, t, flags=re.M): probs.append(f'{name}: cell {i}: output contains {what}: {_excerpt(t, pat)}')
    return probs


def _excerpt(t:str, pat:str)->str:
    m = re.search(pat, t, flags=re.M)
    return repr(t[max(0, m.start() - 30):m.end() + 30]) if m else ''


def check_header(name:str, nb:dict)->list:
    md = next((src(c) for c in nb['cells'] if c['cell_type'] == 'markdown'), '')
    probs = [] if re.match(r'\s*# \S', md) else [f'{name}: the first markdown cell is not a "# Title"']
    if not re.search(r'(?m)^> \S', md): probs.append(f'{name}: no "> summary" line under the title')
    return probs


def check_markdown(name:str, nb:dict)->list:
    probs = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'markdown': continue
        text, math = prose(src(c))
        for what, pat in PROSE_RULES.items():
            if re.search(pat, text): probs.append(f'{name}: cell {i}: {what}: {_excerpt(text, pat)}')
        for what, pat in MATH_RULES.items():
            if any(re.search(pat, m) for m in math): probs.append(f'{name}: cell {i}: {what}')
        for m in re.finditer(r'`([\w.]+)`', src(c)):   # nbdev links backticked names of the index; a private one has no anchor
            if m.group(1).split('.')[-1].startswith('_') and m.group(1).split('.')[-1] in PRIVATE:
                probs.append(f'{name}: cell {i}: links a private name: `{m.group(1)}`')
        for m in re.finditer(r'\[[^\]]*\]\(([^)\s]+)\)', src(c)):
            if re.search(r'(^|[#/.])_[a-z]', m.group(1).split('/')[-1]): probs.append(f'{name}: cell {i}: links a private name: {m.group(0)}')
    return probs


def check_imports(name:str, nb:dict)->list:
    "nbdev's docs build runs every cell holding an import, and warns when one also holds other code: keep imports alone."
    probs = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code' or re.search(r'(?m)^#\|\s*(export|exporti|exports|exec_doc|eval:\s*false)', src(c)): continue
        try: body = ast.parse('\n'.join(l for l in src(c).splitlines() if not l.lstrip().startswith(('%', '!')))).body
        except SyntaxError: continue
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body) and any(isinstance(n, (ast.Expr, ast.Assign)) for n in body):
            probs.append(f'{name}: cell {i}: imports and other code in one cell')
    return probs


def check_badge(name:str, nb:dict)->list:
    md = '\n'.join(src(c) for c in nb['cells'][:4] if c['cell_type'] == 'markdown')
    tutorial = 'tutorial' in name or re.match(r'\s*# Tutorial', md)
    if not tutorial: return []
    links = re.findall(re.escape(REPO_BLOB) + r'([\w./-]+)', md)
    if not links: return [f'{name}: tutorial without a Colab badge near its top']
    return [f'{name}: Colab badge points at {l}, not at {name}' for l in links if l != name]


def sidebar_entries(path:Path)->list:
    return re.findall(r'^\s*-\s+([\w./-]+\.ipynb)\s*$', path.read_text(), flags=re.M)


def check_sidebar(nbs:Path)->list:
    entries = sidebar_entries(nbs/'sidebar.yml')
    names = {p.name for p in nbs.glob('*.ipynb') if not p.name.startswith('_')}
    probs = [f'sidebar.yml: {e} does not exist' for e in entries if not (nbs/e).exists()]
    probs += [f'sidebar.yml: {n} is not in the sidebar' for n in sorted(names - set(entries))]
    probs += [f'sidebar.yml: {e} listed twice' for e in sorted({e for e in entries if entries.count(e) > 1})]
    return probs


def check_show_doc(name:str, nb:dict)->list:
    probs = []
    for i, c in enumerate(nb['cells']):
        for o in c.get('outputs', []):
            md = ''.join(o.get('data', {}).get('text/markdown', ''))
            if not md.startswith('---') or '```python' not in md: continue
            title = re.search(r'^#+ (\S+)', md, flags=re.M)
            sig = re.search(r'```python\n(.*?)```', md, flags=re.S).group(1)
            sig = '\n'.join(l.split(' # ')[0] for l in sig.split('\n'))   # the code, not the docments
            for what, pat in DOC_RULES.items():
                if pat and re.search(pat, sig, flags=re.S): probs.append(f'{name}: show_doc of {title and title.group(1)}: {what}')
            doc = md.split('```', 2)[-1]
            if re.search(r'\*\*', re.sub(r'`[^`]+`', '', doc)): probs.append(f'{name}: show_doc of {title and title.group(1)}: ** in a docstring (renders bold)')
            head = title.group(1).split('.')[-1] if title else ''
            if head[:1].isupper() and re.match(rf'def {re.escape(head)}\(', sig) and not re.search(r'^[A-Z_0-9]+$', head):
                probs.append(f'{name}: show_doc of {head}: a class shown as def')
    return probs


def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--nbs', default='nbs', help='the notebooks folder (stored outputs)')
    ap.add_argument('--proc', default='_proc', help="nbdev-proc-nbs's output folder ('' to skip the show_doc checks)")
    a = ap.parse_args(argv)
    nbs, proc = Path(a.nbs), Path(a.proc) if a.proc else None
    if proc is not None and not proc.is_dir(): sys.exit(f'--proc {proc}: not found; run nbdev-proc-nbs first (or pass --proc "")')
    probs = check_sidebar(nbs)
    for p in sorted(nbs.glob('*.ipynb')):
        if p.name.startswith('_'): continue
        nb = load(p)
        for f in (check_outputs, check_header, check_markdown, check_imports, check_badge): probs += f(p.name, nb)
        if proc is not None and (proc/p.name).exists(): probs += check_show_doc(p.name, load(proc/p.name))
    for l in probs: print(l)
    print(f'check_docs: {len(probs)} problem(s) in {len(list(nbs.glob("*.ipynb")))} notebooks')
    return 1 if probs else 0


if __name__ == '__main__': sys.exit(main())
