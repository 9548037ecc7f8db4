"""A small trained reference model (class-conditional FLUX transformer on Fashion-MNIST) for honest quality checks."""

from .model import (
    FASHION_MNIST_CLASSES,
    REFERENCE_VARIANTS,
    ClassLabelEmbedder,
    build_reference_transformer,
    reference_label_embedder_config,
    reference_transformer_config,
)
from .pipeline import (
    REFERENCE_WEIGHTS_DIR,
    FashionFluxPipeline,
    reference_scheduler_config,
    reference_weight_names,
    resolve_class_ids,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "REFERENCE_VARIANTS",
    "REFERENCE_WEIGHTS_DIR",
    "ClassLabelEmbedder",
    "FashionFluxPipeline",
    "build_reference_transformer",
    "reference_label_embedder_config",
    "reference_scheduler_config",
    "reference_transformer_config",
    "reference_weight_names",
    "resolve_class_ids",
]
