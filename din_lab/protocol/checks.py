"""Every check a configuration must pass before anything is deployed: names against what the lab
implements (data sets, models, partitions, behaviours, scorers), on top of the structural checks
:class:`~din_lab.config.ExperimentConfig` makes itself. Each failure is a ConfigError naming the field."""

from __future__ import annotations

from din_lab.config import ExperimentConfig
from din_lab.errors import ConfigError
from din_lab.learning import DATASETS, LAB_MODELS, dataset_name_ok, lab_model_spec, load_dataset, partition
from din_lab.roles.behaviours import EVALUATOR_BEHAVIOURS, PARTICIPANT_BEHAVIOURS
from din_lab.roles.encrypted_evaluation import HE_READY
from din_lab.scoring import SCORERS
from din_lab.scoring.scorers import EXACT_THRESHOLD


def check_config(config: ExperimentConfig) -> None:
    if not dataset_name_ok(config.dataset):
        raise ConfigError(f"dataset: unknown data set {config.dataset!r}; choose from {', '.join(DATASETS)} "
                          "or energy:HOUSEHOLDS")
    if config.model not in LAB_MODELS:
        raise ConfigError(f"model: unknown model {config.model!r}; choose from {', '.join(LAB_MODELS)}")
    if config.model == "cnn" and config.dataset != "digits":
        raise ConfigError("model: the cnn is for the 8x8 digits images; use logreg or mlp for "
                          f"{config.dataset!r}")
    if config.scorer not in SCORERS:
        raise ConfigError(f"scorer: unknown scorer {config.scorer!r}; choose from {', '.join(SCORERS)}")
    if config.evaluation == "he":
        if not lab_model_spec(config.model).he_ready:
            raise ConfigError(f"model: {config.model!r} has no CKKS evaluation (ReLU and convolutions are not "
                              f"polynomials); encrypted evaluation needs {HE_READY}: --model logreg or "
                              "--model mlp-square, trained that way from the start of the task; or run the plaintext "
                              "baseline (--evaluation plaintext), which publishes the test set in the clear")
        largest = config.subgroup_size + config.participants % config.subgroup_size  # the last takes the rest
        if config.model != "logreg" and config.scorer == "shapley" and config.contribution_game == "subgroup" \
                and largest > EXACT_THRESHOLD:
            raise ConfigError(f"subgroup_size: the square MLP under encrypted evaluation computes Shapley values "
                              f"exactly, one encrypted model per coalition, for subgroups of at most {EXACT_THRESHOLD}; "
                              f"the largest subgroup here has {largest} (use logreg, or the accuracy or loo scorer)")
    for _fraction, name in config.malicious_participants:
        if name not in PARTICIPANT_BEHAVIOURS:
            raise ConfigError(f"malicious_participants: unknown behaviour {name!r}; "
                              f"choose from {', '.join(PARTICIPANT_BEHAVIOURS)}")
    for _fraction, name in config.malicious_evaluators:
        if name not in EVALUATOR_BEHAVIOURS:
            raise ConfigError(f"malicious_evaluators: unknown behaviour {name!r}; "
                              f"choose from {', '.join(EVALUATOR_BEHAVIOURS)}")
    seed = 0 if config.seed is None else config.seed  # feasibility does not depend on the draw
    data = load_dataset(config.dataset, seed=seed)
    partition(data.y_train, num_participants=config.participants, spec=config.partition, seed=seed)
