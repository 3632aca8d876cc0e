"""ConvFirst-JAX: fast convolutional networks in JAX (ConvFirst, ConvNeXt, EfficientNet), block-fusion
kernels, cost model and efficiency analysis.

    import convfirst
    model = convfirst.create_model("convnext_tiny")

The model API is imported lazily, so `import convfirst` (e.g. by the CLI) does not load JAX/Flax.
"""
_MODEL_API = ("create_model", "list_models", "model_info", "model_spec")

__all__ = list(_MODEL_API)


def __getattr__(name):
    if name in _MODEL_API:
        from convfirst import models

        return getattr(models, name)
    raise AttributeError(f"module 'convfirst' has no attribute {name!r}")
