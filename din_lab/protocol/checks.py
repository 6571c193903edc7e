"""Every check a configuration must pass before anything is deployed: names against what the lab
implements (data sets, models, partitions, behaviours, scorers), on top of the structural checks
:class:`~din_lab.config.ExperimentConfig` makes itself. Each failure is a ConfigError naming the field."""

from __future__ import annotations

from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.learning import DATASETS, MODELS, dataset_name_ok, load_dataset, partition
from din_lab.roles.behaviours import EVALUATOR_BEHAVIOURS, PARTICIPANT_BEHAVIOURS
from din_lab.scoring import SCORERS


def check_config(config: ExperimentConfig) -> None:
    if not dataset_name_ok(config.dataset):
        raise ConfigError(f"dataset: unknown data set {config.dataset!r}; choose from {', '.join(DATASETS)} "
                          "or energy:HOUSEHOLDS")
    if config.model not in MODELS:
        raise ConfigError(f"model: unknown model {config.model!r}; choose from {', '.join(MODELS)}")
    if config.model == "cnn" and config.dataset != "digits":
        raise ConfigError("model: the cnn is for the 8x8 digits images; use logreg or mlp for "
                          f"{config.dataset!r}")
    if config.scorer not in SCORERS:
        raise ConfigError(f"scorer: unknown scorer {config.scorer!r}; choose from {', '.join(SCORERS)}")
    if config.evaluation != "plaintext":
        raise ConfigError("evaluation: encrypted evaluation ('he') arrives with the encrypted-evaluation issue; "
                          "this version evaluates in plaintext")
    for _fraction, name in config.malicious_participants:
        if name not in PARTICIPANT_BEHAVIOURS:
            raise ConfigError(f"malicious_participants: unknown behaviour {name!r}; "
                              f"choose from {', '.join(PARTICIPANT_BEHAVIOURS)}")
    for _fraction, name in config.malicious_evaluators:
        if name not in EVALUATOR_BEHAVIOURS:
            raise ConfigError(f"malicious_evaluators: unknown behaviour {name!r}; "
                              f"choose from {', '.join(EVALUATOR_BEHAVIOURS)}")
    data = load_dataset(config.dataset, seed=config.seed)
    partition(data.y_train, num_participants=config.participants, spec=config.partition, seed=config.seed)
