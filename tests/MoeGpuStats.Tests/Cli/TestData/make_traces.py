"""Writes the routing traces the replay tests read, with real NumPy (1.24 made the committed files).

One model of 3 MoE layers, 8 experts, top-2, over 4 forward passes of 7, 3, 2 and 1 tokens (a prefill,
then decode batches that shrink as requests finish), saved in each format `moegs replay` reads:

  trace_ids.json            the ids themselves, [steps][layers][tokens][k], what the tests record directly
  passes.npz                np.savez, a member per pass, [tokens, layers, k] int16 (as vLLM returns them)
  passes_compressed.npz     np.savez_compressed, a member per pass, [layers, tokens, k] int32
  passes_step.jsonl         a line per token: step, layer (in a shuffled order), request_id, topk_ids, topk_weights
  passes_position.jsonl     a line per token: layer, token_pos (a pass starts where it is 0 again), topk_ids
  passes_lists.jsonl        a line per layer and pass: layer, topk_ids [tokens][k], gate_weights (no pass field)
  layers.npz                np.savez with keywords layer_0..layer_2, a member per layer, [steps, tokens, k]
                            uint8: 5 passes of 4 tokens each (one array per layer needs one size)
  layers_ids.json           layers.npz's ids, [steps][layers][tokens][k]
  mixed_k.npz               np.savez, two passes whose k differs (2, then 3): replay refuses it

Run from this folder: /usr/bin/python3 make_traces.py
"""
import json

import numpy as np

LAYERS, EXPERTS, K = 3, 8, 2
rng = np.random.default_rng(21)


def route(tokens, layer, padding=True):
    """Top-k ids without repeats per token, skewed per layer, a few empty slots (-1) unless told not."""
    weights = np.arange(1, EXPERTS + 1, dtype=float) ** (layer + 1)
    weights /= weights.sum()
    ids = np.stack([rng.choice(EXPERTS, size=K, replace=False, p=weights) for _ in range(tokens)])
    if padding:
        ids[rng.random(ids.shape) < 0.08] = -1
    return ids


def gate(ids):
    weights = rng.random(ids.shape)
    return np.round(weights / weights.sum(axis=-1, keepdims=True), 4)


tokens_per_pass = [7, 3, 2, 1]
passes = [np.stack([route(t, layer) for layer in range(LAYERS)]) for t in tokens_per_pass]  # [layers, tokens, k]

with open("trace_ids.json", "w") as f:
    json.dump({"experts": EXPERTS, "top_k": K, "steps": [p.tolist() for p in passes]}, f)

np.savez("passes.npz", *[p.transpose(1, 0, 2).astype(np.int16) for p in passes])
np.savez_compressed("passes_compressed.npz", *[p.astype(np.int32) for p in passes])

with open("passes_step.jsonl", "w") as f:
    for step, p in enumerate(passes):
        for layer in rng.permutation(LAYERS):
            for token in range(p.shape[1]):
                ids = p[layer, token]
                f.write(json.dumps({"step": step, "layer": int(layer), "request_id": f"req-{token % 3}",
                                    "topk_ids": ids.tolist(), "topk_weights": gate(ids).tolist()}) + "\n")

with open("passes_position.jsonl", "w") as f:
    for p in passes:
        for layer in range(LAYERS):
            for token in range(p.shape[1]):
                f.write(json.dumps({"layer": layer, "token_pos": token, "topk_ids": p[layer, token].tolist()}) + "\n")

with open("passes_lists.jsonl", "w") as f:
    for p in passes:
        for layer in range(LAYERS):
            f.write(json.dumps({"layer": layer, "topk_ids": p[layer].tolist(), "gate_weights": gate(p[layer]).tolist()}) + "\n")

# uint8 has no -1: these ids have no empty slots.
fixed = np.stack([np.stack([route(4, layer, padding=False) for layer in range(LAYERS)]) for _ in range(5)])  # [steps, layers, tokens, k]
np.savez("layers.npz", **{f"layer_{layer}": fixed[:, layer].astype(np.uint8) for layer in range(LAYERS)})
with open("layers_ids.json", "w") as f:
    json.dump({"experts": EXPERTS, "top_k": K, "steps": fixed.astype(np.int64).tolist()}, f)

np.savez("mixed_k.npz", route(3, 0).astype(np.int32), np.zeros((2, 3), dtype=np.int32))
