"""Gantry's API types: the contract between users, the CRDs and the operator.

The pydantic models here are the single source of truth. The CRD manifests in `crds/`
are rendered from them (`make crds`), and the operator validates every object against
them again, so a rule lives in exactly one place.
"""

from gantry.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    StorageUri,
    parse_storage_uri,
)
from gantry.api.inferenceservice import (
    InferenceService,
    InferenceServicePhase,
    InferenceServiceSpec,
    InferenceServiceStatus,
    Precision,
)
from gantry.api.trainingjob import (
    RESERVED_ENV_NAMES,
    TrainingJob,
    TrainingJobPhase,
    TrainingJobSpec,
    TrainingJobStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "RESERVED_ENV_NAMES",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "InferenceService",
    "InferenceServicePhase",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "Precision",
    "StorageUri",
    "TrainingJob",
    "TrainingJobPhase",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "parse_storage_uri",
]
