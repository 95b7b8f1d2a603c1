"""Writes small inputs for README's commands into a folder (the current one by default), as a router would save them:
ids.npy ([steps, tokens, k], 64 experts, top-4), trace.npy ([steps, layers, tokens, k], 58 layers of 256, top-8, int16),
passes.npz (one [tokens, layers, k] array per forward pass, as vLLM returns routed experts), layers.npz (one
[steps, tokens, k] array per layer, as a hook per layer saves them), trace.jsonl (a serving hook's lines, one per layer
of a pass) and eplb_example.npy (EPLB's own example load). Needs NumPy.

    python3 scripts/sample_inputs.py [FOLDER]
"""
import json
import os
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(f"sample_inputs.py needs NumPy, which {sys.executable} does not have: install it (pip install numpy, "
             "or Debian's python3-numpy for /usr/bin/python3) or run the script with a Python that has it.")

rng = np.random.default_rng(0)


def top_k(*shape, experts, k):
    """k distinct experts per token, drawn as a softmax router's top-k (Gumbel top-k of logits), the lower ids a
    little likelier (e^0.3 = 1.35 times the highest): a mildly skewed router that reaches every expert."""
    scores = rng.gumbel(size=(*shape, experts)) + np.linspace(0.3, 0.0, experts)
    return np.argsort(-scores, axis=-1)[..., :k]


def main(folder):
    os.makedirs(folder, exist_ok=True)
    path = lambda name: os.path.join(folder, name)
    np.save(path("ids.npy"), top_k(100, 32, experts=64, k=4).astype(np.int32))
    np.save(path("trace.npy"), top_k(20, 58, 16, experts=256, k=8).astype(np.int16))
    np.savez(path("passes.npz"), *[top_k(tokens, 58, experts=256, k=8).astype(np.int16) for tokens in (128, 16, 15)])
    np.savez(path("layers.npz"), **{f"layer_{layer}": top_k(20, 16, experts=256, k=8).astype(np.int16) for layer in range(58)})
    with open(path("trace.jsonl"), "w") as lines:
        for step in range(3):
            for layer in range(4):
                lines.write(json.dumps({"step": step, "layer": layer, "topk_ids": top_k(8, experts=16, k=2).tolist()}) + "\n")
    np.save(path("eplb_example.npy"), np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                                                [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]))
    print("wrote", " ".join(path(name) for name in ("ids.npy", "trace.npy", "passes.npz", "layers.npz", "trace.jsonl", "eplb_example.npy")))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
