"""Membership inference on digits: privaudit against ART on the identical target.

Both audits attack the same random forest (model 0 of
``privaudit.attacks.membership.digits_forest``: 100 trees on a random half of
scikit-learn's bundled digits, chosen by LiRA's seeded keep matrix) and get the same
reference budget: K forests of the same recipe trained on random halves of the same
1797 examples.

* privaudit: ``run_digits_demo`` (K reference forests from the keep matrix; LOSS, the
  shadow-model attack, LiRA and RMIA).
* ART (adversarial-robustness-toolbox, which has neither LiRA nor RMIA): its
  ``ShadowModels`` trains K shadow forests on random halves of the same data
  (``disjoint_datasets=False``, ``member_ratio=0.5``), and
  ``MembershipInferenceBlackBox`` learns an attack model (``--art-attacks``: rf, gb,
  nn, lr, dt, knn, svm; default rf,gb) on the shadow outputs, then scores the target's
  outputs. ART's default ``nn`` trains a torch network for 100 epochs: add it with
  ``--art-attacks rf,gb,nn`` (about 13 minutes on two cores). The rule-based attack
  (correct prediction ⇒ member) needs no shadow model.

The table gives AUC and TPR at 1%, 0.1% and 0% FPR (the last ROC point with FPR <= x,
evaluated on the target's 1797 examples: with fewer than 1000 non-members TPR@0.1% is
the TPR at zero false positives) and the wall time of each whole audit: data, target,
reference/shadow training, every attack and the metrics; for ART also the time of an
audit with one attack (shadow training plus that attack).

    .venv/bin/python -m pip install adversarial-robustness-toolbox      # the peer
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/membership.py              # ~1-2 min

Writes ``benchmarks/results/membership.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.membership import (
    MembershipMetrics,
    digits_forest,
    digits_keep_matrix,
    membership_metrics,
    run_digits_demo,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "membership.json"


def art_audit(n_reference: int, seed: int, attack_types: list[str]) -> dict[str, Any]:
    """ART's shadow-model pipeline on the target of the privaudit demo."""
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
        ShadowModels,
    )
    from art.estimators.classification.scikitlearn import ScikitlearnRandomForestClassifier
    from sklearn.datasets import load_digits

    started = time.perf_counter()
    data = load_digits()
    features, labels = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    onehot = np.eye(10)[labels]
    n_models = n_reference + 1
    keep = digits_keep_matrix(n_models=n_models, n_examples=labels.size, seed=seed)
    target = ScikitlearnRandomForestClassifier(digits_forest(seed, 0, n_models=n_models))
    # ART clones the (fitted) target as the shadow template, as its examples do.
    shadows = ShadowModels(target, num_shadow_models=n_reference, random_state=seed)
    members, nonmembers = shadows.generate_shadow_dataset(features, onehot, member_ratio=0.5)
    seconds = {"train": time.perf_counter() - started}
    target_pred = target.predict(features)
    metrics: dict[str, MembershipMetrics] = {}
    for kind in attack_types:
        begun = time.perf_counter()
        attack = MembershipInferenceBlackBox(target, attack_model_type=kind)
        attack.fit(
            x=members[0],
            y=members[1],
            test_x=nonmembers[0],
            test_y=nonmembers[1],
            pred=members[2],
            test_pred=nonmembers[2],
        )
        proba = np.asarray(attack.infer(features, onehot, pred=target_pred, probabilities=True))
        metrics[f"art-blackbox-{kind}"] = membership_metrics(
            keep[0], proba.reshape(len(labels), -1)[:, -1]
        )
        seconds[f"art-blackbox-{kind}"] = time.perf_counter() - begun
    begun = time.perf_counter()
    rule = MembershipInferenceBlackBoxRuleBased(target)
    proba = np.asarray(rule.infer(features, onehot, probabilities=True))
    metrics["art-rule-based"] = membership_metrics(keep[0], proba.reshape(len(labels), -1)[:, -1])
    seconds["art-rule-based"] = time.perf_counter() - begun
    return {"metrics": metrics, "seconds": seconds, "total": time.perf_counter() - started}


def row(name: str, result: MembershipMetrics, seconds: float) -> dict[str, Any]:
    return {
        "attack": name,
        "auc": result.auc,
        "tpr_at_1pct_fpr": result.tpr(0.01),
        "tpr_at_0.1pct_fpr": result.tpr(0.001),
        "tpr_at_0_fpr": result.tpr(0.0),
        "seconds": seconds,
        "metrics": result.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-reference", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--art-attacks", default="rf,gb")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args()
    machine = _machine.machine_info(
        ["privaudit", "adversarial-robustness-toolbox", "scikit-learn", "numpy", "torch"]
    )
    busy_before, wall_before = _machine.busy_cpu_seconds(), time.perf_counter()

    # Every model is trained with n_jobs=1 in both audits; thread pools (BLAS, torch)
    # are left at their defaults.
    ours = run_digits_demo(n_reference=options.n_reference, seed=options.seed)
    peer = art_audit(options.n_reference, options.seed, options.art_attacks.split(","))
    elapsed = time.perf_counter() - wall_before
    busy_after = _machine.busy_cpu_seconds()

    rows = [row(name, m, ours.seconds[name]) for name, m in ours.metrics.items()]
    rows += [row(name, m, peer["seconds"][name]) for name, m in peer["metrics"].items()]
    for entry in rows:
        if entry["attack"].startswith("art-blackbox"):
            entry["audit_seconds_with_this_attack_only"] = (
                peer["seconds"]["train"] + entry["seconds"]
            )
    header = f"{'attack':<24}{'AUC':>7}{'TPR@1%':>8}{'TPR@0.1%':>10}{'TPR@0%':>8}{'s':>8}"
    print(header)
    print("-" * len(header))
    for entry in rows:
        print(
            f"{entry['attack']:<24}{entry['auc']:>7.3f}{entry['tpr_at_1pct_fpr']:>8.3f}"
            f"{entry['tpr_at_0.1pct_fpr']:>10.3f}{entry['tpr_at_0_fpr']:>8.3f}"
            f"{entry['seconds']:>8.2f}"
        )
    ours_rows = [entry for entry in rows if not entry["attack"].startswith("art-")]
    art_rows = [entry for entry in rows if entry["attack"].startswith("art-")]
    best_ours = max(ours_rows, key=lambda entry: entry["auc"])
    best_art = max(art_rows, key=lambda entry: entry["auc"])
    best_art_low = max(entry["tpr_at_0.1pct_fpr"] for entry in art_rows)
    first = next(iter(ours.metrics.values()))
    verdicts = {
        "best_auc_at_least_art": best_ours["auc"] >= best_art["auc"],
        "best_tpr_at_0.1pct_at_least_art": best_ours["tpr_at_0.1pct_fpr"] >= best_art_low,
    }
    other_cpu = None
    if busy_before is not None and busy_after is not None:
        # CPU seconds of the whole machine minus this process's, over the run.
        own = time.process_time()
        other_cpu = max(0.0, (busy_after - busy_before) - own) / elapsed
    other_text = "?" if other_cpu is None else f"{other_cpu:.2f}"
    print(
        f"{first.n_members} members, {first.n_nonmembers} non-members, K = "
        f"{options.n_reference}; whole audit: privaudit {ours.total_seconds:.1f} s "
        f"(training {ours.seconds['train']:.1f} s), ART {peer['total']:.1f} s "
        f"(training {peer['seconds']['train']:.1f} s); best: {best_ours['attack']} vs "
        f"{best_art['attack']}; other CPU ≈ {other_text} cores of {os.cpu_count()}; "
        f"verdicts: {verdicts}"
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine,
        "settings": {
            "n_reference": options.n_reference,
            "seed": options.seed,
            "art_attacks": options.art_attacks,
        },
        "n_members": first.n_members,
        "n_nonmembers": first.n_nonmembers,
        "privaudit_total_seconds": ours.total_seconds,
        "art_total_seconds": peer["total"],
        "privaudit_train_seconds": ours.seconds["train"],
        "art_train_seconds": peer["seconds"]["train"],
        "other_cpu_cores": other_cpu,
        "rows": rows,
        "best": {"privaudit": best_ours["attack"], "art": best_art["attack"]},
        "verdicts": verdicts,
    }
    options.output.write_text(json.dumps(document, indent=2, default=str))
    print(f"wrote {options.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
