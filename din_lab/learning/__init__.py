"""din_lab.learning: the machine-learning side of DIN (DESIGN.md section 3), with no chain, storage
or cryptography in it (it imports only numpy, torch, scikit-learn and ``din_lab.errors``).

- :mod:`~din_lab.learning.datasets`: bundled data (scikit-learn's digits, breast cancer, wine) and a
  seeded synthetic household-energy set; :func:`load_dataset` gives a scaled train/test split.
- :mod:`~din_lab.learning.partition`: IID, Dirichlet label skew, quantity skew, pathological shards.
- :mod:`~din_lab.learning.models`: :class:`ModelSpec` and :func:`build_model` (logistic regression,
  MLP with ReLU or the HE-friendly square activation, a small CNN for the 8x8 digits).
- :mod:`~din_lab.learning.params`: a model as one float32 vector (parameters sorted by name,
  row-major): :func:`flatten`, :func:`unflatten`, :class:`ParamLayout`.
- :mod:`~din_lab.learning.training`: local training of many participants at once
  (:func:`train_local_batched`), the same as the per-participant reference loop
  (:func:`train_local_loop`) to float32 rounding; :class:`TrainingConfig`, :data:`DEFAULT_TRAINING`.
- :mod:`~din_lab.learning.evaluation`: accuracy, loss, macro F1 of one or many parameter sets.
- :mod:`~din_lab.learning.aggregation`: FedAvg, hierarchical (subgroups then global), coordinate
  median, trimmed mean, all on ``(N, D)`` stacks of flat vectors.

A plain FedAvg round::

    data = load_dataset("digits", seed=0)
    parts = partition(data.y_train, num_participants=20, spec="iid", seed=0)
    model = build_model(ModelSpec(name="logreg"), num_features=data.num_features,
                        num_classes=data.num_classes, seed=0)
    global_params = flatten(model)
    local = train_local_batched(model, [(data.X_train[p], data.y_train[p]) for p in parts],
                                global_params=global_params, seed=1)
    global_params = fedavg(local.params, weights=local.num_samples)
    evaluate(model, data.X_test, data.y_test, params=global_params).accuracy
"""

from din_lab.learning.aggregation import (
    AGGREGATORS,
    aggregate,
    coordinate_median,
    fedavg,
    finite_mask,
    hierarchical,
    trimmed_mean,
)
from din_lab.learning.datasets import (
    DATASETS,
    ENERGY_CLASSES,
    ENERGY_FEATURES,
    Dataset,
    dataset_name_ok,
    load_dataset,
    make_energy,
)
from din_lab.learning.evaluation import Metrics, evaluate, evaluate_many
from din_lab.learning.models import ACTIVATIONS, LAB_MODELS, MODELS, ModelSpec, build_model, lab_model_spec
from din_lab.learning.params import ParamLayout, flatten, stacked_state, unflatten
from din_lab.learning.partition import PARTITIONS, label_counts, parse_partition, partition
from din_lab.learning.training import (
    DEFAULT_TRAINING,
    OPTIMIZERS,
    LocalTrainingResult,
    TrainingConfig,
    torch_threads,
    train_local_batched,
    train_local_loop,
)

__all__ = [
    "ACTIVATIONS",
    "AGGREGATORS",
    "DATASETS",
    "DEFAULT_TRAINING",
    "ENERGY_CLASSES",
    "ENERGY_FEATURES",
    "MODELS",
    "OPTIMIZERS",
    "PARTITIONS",
    "Dataset",
    "LocalTrainingResult",
    "Metrics",
    "ModelSpec",
    "ParamLayout",
    "TrainingConfig",
    "aggregate",
    "build_model",
    "lab_model_spec",
    "LAB_MODELS",
    "dataset_name_ok",
    "coordinate_median",
    "evaluate",
    "evaluate_many",
    "fedavg",
    "finite_mask",
    "flatten",
    "hierarchical",
    "label_counts",
    "load_dataset",
    "make_energy",
    "parse_partition",
    "partition",
    "stacked_state",
    "torch_threads",
    "train_local_batched",
    "train_local_loop",
    "trimmed_mean",
    "unflatten",
]
