"""Records a plan of steps into a MoeModelStats on the managed engine and writes what ModelMetricsCollector serves
after each phase, as prometheus_client's generate_latest() writes it: the Python half of the C# test
NativeApiTests.ThePythonCollectorServesTheDotNetEndpointsSamples, which records the same plan into a
ModelRoutingStats and scrapes the CLI's endpoint.

    python3 exposition_of_steps.py PLAN.json OUT_DIR      # writes OUT_DIR/scrape0.txt, scrape1.txt, ...

PLAN.json: {"layers", "experts", "window", "expert_capacity", "top_experts", "expert_series", "recent_steps" (null for none),
"phases": [{"reset": bool, "steps": [{"ids": [layers * tokens * top_k ints], "tokens", "top_k",
"load_balance_losses": [layers floats], "router_z_losses": [layers floats]}]}]}; each phase resets first where it says
so, records its steps, then is scraped. Exit status 3 (with the reason on stderr) where prometheus_client is absent.
NumPy is not needed: the ids go in as array.array behind __array_interface__."""
import array
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402

try:
    from prometheus_client import CollectorRegistry, generate_latest
except ImportError as error:
    print(f"prometheus_client is not installed for {sys.executable}: {error}", file=sys.stderr)
    sys.exit(3)


class Ids:
    """int32 ids shaped [layers, tokens, k] over an array.array, as the wrapper reads NumPy's."""

    def __init__(self, values, shape):
        self.values = array.array("i", values)
        self.__array_interface__ = {"version": 3, "shape": tuple(shape), "typestr": ("<" if sys.byteorder == "little" else ">") + "i4",
                                    "strides": None, "data": (self.values.buffer_info()[0], False)}


def main(plan_path, out_dir):
    with open(plan_path) as file:
        plan = json.load(file)
    layers = plan["layers"]
    with moegs.MoeModelStats(layers, plan["experts"], expert_capacity=plan["expert_capacity"], window=plan["window"],
                             accelerator="managed") as model:
        registry = CollectorRegistry()
        registry.register(moegs.ModelMetricsCollector(model, top_experts=plan["top_experts"], expert_series=plan["expert_series"],
                                                      recent_steps=plan.get("recent_steps")))
        for index, phase in enumerate(plan["phases"]):
            if phase["reset"]:
                model.reset()
            for step in phase["steps"]:
                model.record(Ids(step["ids"], (layers, step["tokens"], step["top_k"])),
                             load_balance_losses=step["load_balance_losses"], router_z_losses=step["router_z_losses"])
            with open(os.path.join(out_dir, f"scrape{index}.txt"), "wb") as file:
                file.write(generate_latest(registry))


if __name__ == "__main__":
    main(*sys.argv[1:])
