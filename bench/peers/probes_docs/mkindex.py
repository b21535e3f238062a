"""Tiny infini-gram v4 (u16) index writer for black-box probes.
build(dir, shards) with shards = list of list-of-docs (each doc a list of token ids < 65535).
Metadata line i of shard s: {"path": "s<s>.jsonl", "linenum": i, "metadata": {"id": <global>}}."""
import os, json, math, struct

def build(d, shards, meta=True):
    import shutil; shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    g = 0
    for s, docs in enumerate(shards):
        data = bytearray(); offs = []; mlines = []
        for i, doc in enumerate(docs):
            offs.append(len(data))
            data += b'\xff\xff' + b''.join(struct.pack('<H', t) for t in doc)
            mlines.append(json.dumps({"path": f"s{s}.jsonl", "linenum": i, "metadata": {"id": g}}) + "\n"); g += 1
        data = bytes(data); n = len(data)
        ps = max(1, math.ceil(math.log2(n) / 8)) if n > 1 else 1
        sa = sorted(range(0, n, 2), key=lambda p: data[p:])
        open(f'{d}/tokenized.{s}', 'wb').write(data)
        open(f'{d}/table.{s}', 'wb').write(b''.join(p.to_bytes(ps, 'little') for p in sa))
        open(f'{d}/offset.{s}', 'wb').write(b''.join(struct.pack('<Q', o) for o in offs))
        if meta:
            mb = b''; mo = []
            for l in mlines:
                mo.append(len(mb)); mb += l.encode()
            open(f'{d}/metadata.{s}', 'wb').write(mb)
            open(f'{d}/metaoff.{s}', 'wb').write(b''.join(struct.pack('<Q', o) for o in mo))

def engine(d):
    from infini_gram.engine import InfiniGramEngine
    return InfiniGramEngine(index_dir=d, eos_token_id=0, vocab_size=1000, token_dtype='u16')
