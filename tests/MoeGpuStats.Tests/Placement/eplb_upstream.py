# DeepSeek's own EPLB (deepseek_eplb.py, beside this file) on the cases of a JSON file, for
# ExpertPlacementTests: reads [{"loads": [[...], ...], "replicas": R, "groups": G, "nodes": N, "gpus": P}, ...]
# and prints, per case, {"physical_to_logical": [[...]], "replica_counts": [[...]]} as one JSON array.
#   python3 eplb_upstream.py CASES.json        (needs torch)
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deepseek_eplb import rebalance_experts  # noqa: E402

results = []
for case in json.load(open(sys.argv[1])):
    phy2log, _, logcnt = rebalance_experts(torch.tensor(case["loads"], dtype=torch.int64), case["replicas"],
                                           case["groups"], case["nodes"], case["gpus"])
    results.append({"physical_to_logical": phy2log.tolist(), "replica_counts": logcnt.tolist()})
json.dump(results, sys.stdout)
