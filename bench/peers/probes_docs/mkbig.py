"""Builds /tmp/pd/big1 (1 shard, 2 docs, 281,464 tokens; counts 1:100003 2:77777 3:50001 4:31337 5:12345 6:9999) with anygram; used by p17.py and the RNG checks."""
import numpy as np, anygram, shutil
rng = np.random.default_rng(1)
counts = {1: 100003, 2: 77777, 3: 50001, 4: 31337, 5: 12345, 6: 9999}
flat = np.concatenate([np.full(c, t, dtype=np.uint16) for t, c in counts.items()]); rng.shuffle(flat)
np.save('/tmp/pd/big.npy', flat); np.save('/tmp/pd/big.offsets.npy', np.array([0, len(flat) // 2, len(flat)], dtype=np.int64))
shutil.rmtree('/tmp/pd/big1', ignore_errors=True)
anygram.build_index('/tmp/pd/big.npy', '/tmp/pd/big1', token_width=2, vocab_size=1000, eos_token_id=0, shards=1)
