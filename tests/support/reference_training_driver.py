"""A reference-training run in a process of its own, for the resume test.

    python reference_training_driver.py WORKDIR PIDFILE

Trains the plan of :func:`digits_plan` (eight 20-tree forests on digits) with one
spawned worker, writes ``{"driver": pid, "workers": [pids]}`` to PIDFILE once the
worker is up, and prints ``{"trained": ..., "skipped": ...}`` as JSON when done.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from privaudit.attacks.membership import (
    ReferenceTrainingPlan,
    SklearnRecipe,
    run_reference_training,
)
from privaudit.executor import LocalProcessExecutor

N_MODELS = 8


def digits_plan() -> tuple[np.ndarray, np.ndarray, ReferenceTrainingPlan]:
    data = load_digits()
    features, labels = data.data / 16.0, data.target
    recipe = SklearnRecipe(estimator="random_forest", params={"n_estimators": 20})
    plan = ReferenceTrainingPlan.for_dataset(
        features, labels, recipe=recipe, n_models=N_MODELS, seed=11
    )
    return features, labels, plan


def main() -> None:
    workdir, pidfile = sys.argv[1], Path(sys.argv[2])
    features, labels, plan = digits_plan()
    with LocalProcessExecutor(max_workers=1, devices=[]) as executor:
        executor.start()
        pids = {"driver": os.getpid(), "workers": executor.worker_pids}
        pidfile.with_suffix(".tmp").write_text(json.dumps(pids))
        pidfile.with_suffix(".tmp").replace(pidfile)
        result = run_reference_training(plan, features, labels, workdir=workdir, executor=executor)
    print(json.dumps({"trained": result.trained, "skipped": result.skipped}))


if __name__ == "__main__":
    main()
