#!/usr/bin/env python3
"""Build an index with infini-gram's OWN indexer, fully offline.

This is a thin driver around the installed `infini_gram` PyPI package
(`infini_gram.indexing`: tokenize step + `rust_indexing` make-part/merge/concat).
No infini-gram code is copied here; the package is called as-is in a subprocess.

The only change to its behaviour is the tokenizer source: `indexing.py` only
knows the names 'gpt2'/'llama'/'olmo' and loads them from the HuggingFace hub.
A tiny launcher (run with `python3 -c`) replaces
`transformers.AutoTokenizer.from_pretrained` by a loader of a local
`tokenizer.json` (`transformers.PreTrainedTokenizerFast(tokenizer_file=...)`,
with `add_special_tokens=False` forced, so no BOS/EOS is ever added), then runs
`infini_gram.indexing.main()` with `--tokenizer gpt2`.
`tokenizer_json=None` means raw UTF-8 bytes with token_dtype 'u8' (token_dtype is then ignored).

API:
    build_with_infinigram(jsonl_paths_or_dir, save_dir, tokenizer_json=None,
                          token_dtype='u16', shards=1, add_metadata=True,
                          mem_gib=8, cpus=None, batch_size=None,
                          python=sys.executable, quiet=True)
        -> dict(seconds=float, peak_rss_bytes=int, peak_tree_rss_bytes=int,
                valid=bool, shards=[per-shard size checks], save_dir=str, data_dir=str,
                cmd=list, log=str)

    `valid` is False when infini-gram's own table.N is known to be wrong: it splits
    the suffix sort into P = batches*cpus parts overlapping by 100000 bytes and
    the result is only correct when (P-1)*S + 100000 <= ds_size (S = ds_size/P),
    i.e. roughly tokenized.N >= cpus*100 KB. Use cpus=1 for small corpora.
    token_dtype 'u32' needs a 32 GiB allocation per make-part job (FACTS.md).

    `seconds` is the wall time of the whole subprocess (tokenize + make-part +
    merge + concat). `peak_rss_bytes` is the largest max-RSS of any single process
    of the tree (GNU `/usr/bin/time -v` "Maximum resident set size", i.e. wait4's
    ru_maxrss, which propagates the max over waited-for descendants; falls back to
    resource.getrusage(RUSAGE_CHILDREN)). `peak_tree_rss_bytes` is the peak of the
    SUM of RSS over the live process tree, sampled from /proc every 20 ms
    (approximate; may miss short spikes).

CLI:
    python3 infinigram_build.py INPUT [INPUT ...] --save-dir DIR
        [--tokenizer-json gpt2-tokenizer.json] [--token-dtype u16]
        [--shards 1] [--no-metadata] [--mem-gib 8] [--cpus N] [--verify N]

Inputs: a directory (indexed as-is: indexing.py globs `{dir}/**/*.json*`
sorted, and the metadata "path" is relative to it), or files (*.jsonl,
*.jsonl.gz, *.jsonl.zst; .json is NOT accepted by indexing.py). Files are
symlinked into a fresh data dir `<save_dir>.data/` under their basenames (so the
metadata "path" is the basename), or as `{i:05d}_{basename}` when the basenames
are not unique or not already in sorted order (indexing.py sorts the paths).
"""
import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

INDEX_FILE_PREFIXES = ('tokenized.', 'table.', 'offset.', 'metadata.', 'metaoff.', 'unigram.')

# Launcher executed with `python3 -c LAUNCHER TOKENIZER_JSON -- <indexing argv...>`.
_LAUNCHER = r'''
import sys
tok_file = sys.argv[1]
assert sys.argv[2] == '--'
argv = sys.argv[3:]
if tok_file:
    import transformers
    def _from_pretrained(*args, **kwargs):
        t = transformers.PreTrainedTokenizerFast(tokenizer_file=tok_file)
        enc = t.encode
        def encode(text, *a, **kw):
            kw['add_special_tokens'] = False
            return enc(text, *a, **kw)
        t.encode = encode
        return t
    transformers.AutoTokenizer.from_pretrained = staticmethod(_from_pretrained)
import infini_gram.indexing as ix
sys.argv = ['infini_gram.indexing'] + argv
ix.main()
'''


def _tree_rss_bytes(root_pid):
    """Sum of RSS (bytes) of root_pid and all its descendants, from /proc."""
    children = {}
    rss = {}
    page = os.sysconf('SC_PAGE_SIZE')
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                s = f.read()
            rest = s[s.rindex(')') + 2:].split()
            ppid = int(rest[1])
            rss[int(d)] = int(rest[21]) * page
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def _prepare_data_dir(inputs, data_dir):
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.path.abspath(os.fspath(p)) for p in inputs]
    if len(inputs) == 1 and os.path.isdir(inputs[0]):
        return inputs[0].rstrip('/')
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    bases = [os.path.basename(p) for p in inputs]
    # indexing.py sorts the globbed paths and stores the path relative to data_dir in metadata "path":
    # keep the plain basenames when that preserves the given order, else prefix them with their index.
    plain = len(set(bases)) == len(bases) and sorted(bases) == bases
    for i, p in enumerate(inputs):
        if not os.path.isfile(p):
            raise FileNotFoundError(p)
        base = bases[i]
        if not (base.endswith('.jsonl') or base.endswith('.gz') or base.endswith('.zst')) or '.json' not in base:
            raise ValueError(f'indexing.py only reads *.jsonl, *.json*.gz, *.json*.zst: {p}')
        os.symlink(p, os.path.join(data_dir, base if plain else f'{i:05d}_{base}'))
    return data_dir


def build_with_infinigram(jsonl_paths_or_dir, save_dir, tokenizer_json=None, token_dtype='u16', shards=1,
                          add_metadata=True, mem_gib=8, cpus=None, batch_size=None,
                          python=sys.executable, quiet=True, overwrite=True):
    save_dir = os.path.abspath(save_dir).rstrip('/')
    if tokenizer_json is None:
        token_dtype = 'u8'  # no tokenizer = UTF-8 bytes; token_dtype is ignored
    else:
        tokenizer_json = os.path.abspath(tokenizer_json)
        if not os.path.isfile(tokenizer_json):
            raise FileNotFoundError(tokenizer_json)
    assert token_dtype in ('u8', 'u16', 'u32')
    os.makedirs(save_dir, exist_ok=True)
    existing = [f for f in os.listdir(save_dir) if f.startswith(INDEX_FILE_PREFIXES)]
    if existing:
        # indexing.py silently SKIPS steps whose outputs exist: never reuse stale files.
        if not overwrite:
            raise FileExistsError(f'{save_dir} already holds index files: {existing}')
        for f in existing:
            os.remove(os.path.join(save_dir, f))
    for f in os.listdir(save_dir):  # leftovers of a failed run (temp_dir == save_dir)
        if f.startswith(('parts-', 'merged-')):
            shutil.rmtree(os.path.join(save_dir, f), ignore_errors=True)
    data_dir = _prepare_data_dir(jsonl_paths_or_dir, save_dir + '.data')
    if cpus is None:
        cpus = os.cpu_count()
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = 1048576 if hard_nofile == resource.RLIM_INFINITY else min(1048576, hard_nofile)

    ix_argv = ['--data_dir', data_dir, '--save_dir', save_dir, '--token_dtype', token_dtype,
               '--shards', str(shards), '--cpus', str(cpus), '--mem', str(mem_gib), '--ulimit', str(ulimit)]
    if tokenizer_json is not None:
        ix_argv += ['--tokenizer', 'gpt2']  # any known name: from_pretrained is patched to load tokenizer_json
    if add_metadata:
        ix_argv += ['--add_metadata']
    if batch_size is not None:
        ix_argv += ['--batch_size', str(batch_size)]
    cmd = [python, '-c', _LAUNCHER, tokenizer_json or '', '--'] + ix_argv

    time_bin = '/usr/bin/time' if os.access('/usr/bin/time', os.X_OK) else None
    time_log = save_dir + '.time.txt'
    full_cmd = ([time_bin, '-v', '-o', time_log] + cmd) if time_bin else cmd
    env = dict(os.environ)
    env.setdefault('TOKENIZERS_PARALLELISM', 'false')
    env['HF_HUB_OFFLINE'] = '1'
    env['TRANSFORMERS_OFFLINE'] = '1'

    t0 = time.perf_counter()
    proc = subprocess.Popen(full_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    peak_tree = [0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            try:
                peak_tree[0] = max(peak_tree[0], _tree_rss_bytes(proc.pid))
            except Exception:
                pass
            done.wait(0.02)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    th.join()
    log = out.decode('utf-8', 'replace')
    if not quiet:
        sys.stderr.write(log)

    peak = None
    if time_bin and os.path.exists(time_log):
        with open(time_log) as f:
            tlog = f.read()
        for line in tlog.splitlines():
            if 'Maximum resident set size' in line:
                peak = int(line.rsplit(':', 1)[1]) * 1024
        os.remove(time_log)
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    # indexing.py prints "Something went wrong" and exit(1) on rust failures.
    if proc.returncode != 0 or 'Something went wrong' in log:
        raise RuntimeError(f'infini-gram indexing failed (rc={proc.returncode}):\n{log[-4000:]}')
    for s in range(shards):
        for name in ('tokenized', 'table', 'offset') + (('metadata', 'metaoff') if add_metadata else ()):
            if not os.path.exists(os.path.join(save_dir, f'{name}.{s}')):
                raise RuntimeError(f'missing {name}.{s} in {save_dir}:\n{log[-4000:]}')
    shard_info = [_shard_validity(save_dir, s, token_dtype, cpus, mem_gib) for s in range(shards)]
    valid = all(si['table_size_ok'] and si['parts_ok'] for si in shard_info)
    if not valid:
        sys.stderr.write('WARNING: infini-gram produced a table.N that is known to be wrong for this size '
                         '(ds_size < ~(parts-1)*S + 100000); rebuild with cpus=1. %r\n' % shard_info)
    return dict(seconds=seconds, peak_rss_bytes=peak, peak_tree_rss_bytes=peak_tree[0], valid=valid,
                shards=shard_info, save_dir=save_dir, data_dir=data_dir,
                cmd=cmd[:1] + ['-c', '<launcher>'] + cmd[3:], log=log)


HACK = 100000  # overlap (bytes) between make-part ranges in infini-gram 2.6.0 (see FACTS.md b/c)


def _shard_validity(save_dir, s, token_dtype, cpus, mem_gib):
    """Cheap validity test of table.s, from the sizes only (FACTS.md b, c): the table must hold
    tok_cnt entries of ceil(log2(ds_size)/8) bytes, and infini-gram's make-part split into
    P = batches*cpus parts of S bytes is only correct when (P-1)*S + HACK <= ds_size."""
    import math
    width = {'u8': 1, 'u16': 2, 'u32': 4}[token_dtype]
    ds_size = os.path.getsize(os.path.join(save_dir, f'tokenized.{s}'))
    sa_size = os.path.getsize(os.path.join(save_dir, f'table.{s}'))
    tok_cnt = ds_size // width
    ptr_size = math.ceil(math.log2(ds_size) / 8) if ds_size > 1 else 0
    mem_bytes = mem_gib * 1024 ** 3
    batches = 1
    while batches * (mem_bytes // (12 if width == 1 else 8)) < ds_size:
        batches *= 2
    parts = batches * cpus
    S = ds_size // parts
    if S % width:
        S += width - S % width
    return dict(shard=s, ds_size=ds_size, tok_cnt=tok_cnt, ptr_size=ptr_size, table_bytes=sa_size,
                table_size_ok=sa_size == tok_cnt * ptr_size, parts=parts,
                parts_ok=parts == 1 or (parts - 1) * S + HACK <= ds_size)


def _iter_jsonl(path):
    if path.endswith('.zst'):
        import io
        import zstandard
        with open(path, 'rb') as f:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding='utf-8'):
                if line.strip():
                    yield json.loads(line)
    else:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def verify_tokenization(save_dir, texts, tokenizer_json, token_dtype='u16', shard=0):
    """Check that documents 0..len(texts)-1 of shard `shard` equal
    tokenizers.Tokenizer.from_file(tokenizer_json).encode(t, add_special_tokens=False).ids
    (or the UTF-8 bytes when tokenizer_json is None). Returns the number checked."""
    import numpy as np
    dt = {'u8': np.uint8, 'u16': np.uint16, 'u32': np.uint32}[token_dtype]
    width = np.dtype(dt).itemsize
    ds = np.fromfile(os.path.join(save_dir, f'tokenized.{shard}'), dtype=np.uint8)
    od = np.fromfile(os.path.join(save_dir, f'offset.{shard}'), dtype='<u8')
    ends = list(od[1:]) + [len(ds)]
    sep = np.iinfo(dt).max
    tk = None
    if tokenizer_json is not None:
        import tokenizers
        tk = tokenizers.Tokenizer.from_file(tokenizer_json)
    for i, text in enumerate(texts):
        doc = ds[od[i]:ends[i]].view(dt)
        assert doc[0] == sep, f'doc {i} does not start with the separator'
        want = list(text.encode('utf-8')) if tk is None else tk.encode(text, add_special_tokens=False).ids
        got = doc[1:].tolist()
        assert got == want, f'doc {i}: tokenization differs (got {len(got)} tokens, want {len(want)})'
        assert len(doc) * width == ends[i] - od[i]
    return len(texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('inputs', nargs='+')
    ap.add_argument('--save-dir', required=True)
    ap.add_argument('--tokenizer-json', default=None)
    ap.add_argument('--token-dtype', default=None, choices=['u8', 'u16', 'u32'])
    ap.add_argument('--shards', type=int, default=1)
    ap.add_argument('--no-metadata', action='store_true')
    ap.add_argument('--mem-gib', type=int, default=8)
    ap.add_argument('--cpus', type=int, default=None)
    ap.add_argument('--batch-size', type=int, default=None)
    ap.add_argument('--verify', type=int, default=0, help='verify tokenization of the first N docs (single input file, shards=1)')
    ap.add_argument('-v', '--verbose', action='store_true')
    a = ap.parse_args()
    dtype = a.token_dtype or ('u8' if a.tokenizer_json is None else 'u16')
    r = build_with_infinigram(a.inputs, a.save_dir, tokenizer_json=a.tokenizer_json, token_dtype=dtype,
                              shards=a.shards, add_metadata=not a.no_metadata, mem_gib=a.mem_gib, cpus=a.cpus,
                              batch_size=a.batch_size, quiet=not a.verbose)
    if a.verify:
        texts = []
        for d in _iter_jsonl(os.path.abspath(a.inputs[0])):
            texts.append(d['text'])
            if len(texts) >= a.verify:
                break
        r['verified_docs'] = verify_tokenization(r['save_dir'], texts, a.tokenizer_json, dtype)
    r.pop('log')
    print(json.dumps(r))


if __name__ == '__main__':
    main()
