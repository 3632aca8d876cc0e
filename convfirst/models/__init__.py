"""Model zoo: ConvNeXt, EfficientNet, MBConvNet and ConvFirstNet in Flax NNX, built from `specs`.

    from convfirst.models import create_model, list_models
    model = create_model("convfirst_tiny", dtype=jnp.bfloat16, impl="auto")
"""
from convfirst.models.registry import create_model, list_models, model_info, model_spec, register_model

# Importing the families registers their models.
from convfirst.models import convfirst, convnext, efficientnet  # noqa: E402,F401  isort: skip

__all__ = ["create_model", "list_models", "model_info", "model_spec", "register_model"]
