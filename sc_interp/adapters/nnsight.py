"""nnsight adapter: ``NNsight`` / ``LanguageModel`` wrap a torch module in place.

Masks attach to the wrapped module, so they act inside ``model.trace(...)`` like anywhere
else. :func:`apply_in_trace` writes a MaskSet's neuron/head masks as nnsight interventions
on the module outputs (or, for sites with ``io="input"`` such as Hugging Face heads and
neurons, the module inputs) inside an open local trace. For remote execution (NDIF), where
neither hooks nor sc-interp code travel, use ``sc.ablate`` / ``sc.isolate`` with
``remote=`` (:mod:`sc_interp._trace_path`). nnsight is never imported here: wrappers are
recognised by class.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def is_nnsight(model: object) -> bool:
    """True for an nnsight wrapper: any ``Envoy`` (``NNsight``, ``LanguageModel``...).

    In nnsight 0.8 ``LanguageModel`` does not derive from ``NNsight``; both derive from
    ``nnsight.intervention.envoy.Envoy``.
    """
    return any(
        cls.__module__.startswith("nnsight") and cls.__name__ in ("Envoy", "NNsight")
        for cls in type(model).__mro__
    )


def unwrap(model: object) -> nn.Module:
    """The torch module an nnsight wrapper runs."""
    module = getattr(model, "_module", None)
    if not isinstance(module, nn.Module):
        from sc_interp.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"this nnsight object ({type(model).__qualname__}) does not expose its torch module"
        )
    return module


def envoy_at(model: Any, path: str) -> Any:
    """The nnsight Envoy for the module at ``path`` (as in ``named_modules()``)."""
    envoy = model
    for part in path.split(".") if path else []:
        # a submodule named like an Envoy attribute (BERT's ``attention.output``) is served
        # under another attribute (``E_output``); the child map has it by its real name
        child = getattr(envoy, "_child_map", {}).get(part)
        envoy = child if child is not None else getattr(envoy, part)
    return envoy


def apply_in_trace(model: Any, masks: Any) -> None:
    """Apply a MaskSet's (or Subnetwork's) neuron/head masks as nnsight interventions.

    Call inside ``with model.trace(...):`` before reading outputs. The MaskSet should be
    detached, since attached masks already act through hooks. Weight masks cannot be
    applied this way. This runs sc-interp code inside the trace, so it is for local traces:
    a remote (NDIF) request would have to carry sc-interp; there, use
    ``sc.isolate(model, sub, remote=True)`` (and :meth:`TracePlan.interventions` for a
    trace of your own), whose requests hold only torch operations.

    Example:
        >>> with nn_model.trace(x):  # doctest: +SKIP
        ...     apply_in_trace(nn_model, masks)
        ...     out = nn_model.output.save()
    """
    from sc_interp.errors import AttachError, ConfigError, UnsupportedModelError

    if not is_nnsight(model):
        raise UnsupportedModelError(
            f"apply_in_trace takes an nnsight model (NNsight, LanguageModel) inside "
            f"'with model.trace(...)', got {type(model).__name__}; for other models attach "
            "the masks (sc.attach_masks or Subnetwork.attach)"
        )
    to_maskset = getattr(masks, "to_maskset", None)  # a Subnetwork: a detached MaskSet of it
    if callable(to_maskset):
        masks = to_maskset(model)
    if not (hasattr(masks, "sites") and hasattr(masks, "_masked_activation")):
        raise ConfigError(
            f"apply_in_trace takes a MaskSet or a Subnetwork, got {type(masks).__name__}"
        )
    weight_sites = [s.name for s in masks.sites.values() if s.kind != "activation"]
    if weight_sites:
        unit = masks.config.unit
        raise ConfigError(
            f"{unit} masks cannot run as trace interventions ({weight_sites[:3]}...); "
            "use unit='neuron' or 'head', or attach the masks to the local model"
        )
    if masks.attached:
        raise ConfigError(
            "this MaskSet is attached, so its hooks already act; detach it before "
            "applying it as trace interventions"
        )
    for name, site in masks.sites.items():
        envoy = envoy_at(model, site.module)
        try:
            if site.io == "input":  # e.g. a Hugging Face head: the output projection's input
                envoy.input = masks._masked_activation(name, envoy.input)
            else:
                envoy.output = masks._masked_activation(name, envoy.output)
        except ValueError as exc:
            if "interleaving" not in str(exc):
                raise
            raise AttachError(
                "apply_in_trace must be called inside 'with model.trace(...):' (it writes "
                "interventions into the open trace)"
            ) from None
