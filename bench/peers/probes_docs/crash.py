"""Run each expression in a fresh subprocess against an index: python3 crash.py DIR < exprs"""
import sys, subprocess, json
CHILD = r'''
import sys; sys.path.insert(0, sys.argv[3])
from mkindex import engine
e = engine(sys.argv[1])
def sh(d):
    if isinstance(d, list): return [sh(x) for x in d]
    return {k:v for k,v in d.items() if k not in ('metadata','blocked')} if isinstance(d, dict) and 'doc_ix' in d else d
try: print('RESULT', sh(eval(sys.argv[2])))
except Exception as ex: print('RESULT EXC', repr(ex)[:200])
'''
import os
here = os.path.dirname(os.path.abspath(__file__))
for line in sys.stdin.read().strip().splitlines():
    p = subprocess.run([sys.executable, '-c', CHILD, sys.argv[1], line, here], capture_output=True, text=True, timeout=60)
    out = [l for l in p.stdout.splitlines() if l.startswith('RESULT')]
    print(line, '=>', out[0][7:] if out else f'CRASH rc={p.returncode} {p.stderr.strip()[-200:]}')
