"""Which steps of which symptom family an adapter gets wrong, on every host (docs/decisions.md).

Not part of the test suite. The closed loop (`simulate --policy adapter:V`) samples tasks; this asks
the decide question of every step of every family of a simulated scenario on all its hosts, with
the right previous action, greedy, in one batch. A family's task success is the share of hosts on
which every step is right, which is what the closed loop converges to.

    python benchmarks/decide_probe.py --data-root data --scenario troubleshooting [--version v0001]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def probe(model_dir: Path, adapter_dir: Path | None, scenario: str) -> tuple[dict[str, float], Counter]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swarm_learn_assets.core.llm.prompts import decide_prompt, parse_decision
    from swarm_learn_assets.simulate.swarm import CATALOGUE, HOSTS_PER_FAMILY
    from swarm_learn_assets.training.lora import generate_chat

    spec = next((s for s in CATALOGUE if s.name == scenario), None)
    if spec is None:
        raise SystemExit(f"{scenario}: not a simulated scenario ({', '.join(s.name for s in CATALOGUE)})")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    network = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        network = PeftModel.from_pretrained(network, adapter_dir)
    questions, keys = [], []
    for family in spec.families:
        for host in range(1, HOSTS_PER_FAMILY + 1):
            ctx = family.on(host)
            for position, action in enumerate(ctx.order):
                previous = ctx.order[position - 1] if position else None
                questions.append([{"role": "user", "content": decide_prompt(ctx.symptom, spec.actions, previous)}])
                keys.append((family.slug, host, position, action))
    answers = generate_chat(network, tokenizer, questions, 32)
    solved: dict[str, dict[int, bool]] = defaultdict(lambda: defaultdict(lambda: True))
    wrong: Counter = Counter()
    for (family, host, position, action), answer in zip(keys, answers):
        decision = parse_decision(answer)
        right = decision is not None and decision.action == action
        solved[family][host] &= right
        if not right:
            wrong[(family, position, action, decision.action if decision else None)] += 1
    return {f: sum(hosts.values()) / HOSTS_PER_FAMILY for f, hosts in solved.items()}, wrong


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--version", help="adapter version (default: the applied one; 'base' for no adapter)")
    args = p.parse_args()

    from swarm_learn_assets.core.storage.layout import DataLayout
    from swarm_learn_assets.training.base_model import resolve_base_model
    from swarm_learn_assets.training.registry import AdapterRegistry

    registry = AdapterRegistry(DataLayout(args.data_root).adapters_root, args.scenario)
    if args.version == "base":
        adapter = None
    else:
        version = registry.get(args.version) if args.version else registry.current
        if version is None:
            raise SystemExit(f"{args.scenario}: no {'version ' + args.version if args.version else 'applied adapter'}")
        adapter = version.path
    families, wrong = probe(resolve_base_model().path, adapter, args.scenario)
    print(json.dumps({"adapter": str(adapter), "task_success": sum(families.values()) / len(families),
                      "families": families}, indent=2))
    for (family, position, expected, answered), hosts in wrong.most_common():
        print(f"wrong: {family} step {position + 1} ({expected}) answered {answered} on {hosts} host(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
