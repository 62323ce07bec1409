"""Compare learned subnetworks with circuit-discovery outputs (EAP-IG, auto-circuit, ACDC).

Canonical names (see :mod:`sc_interp.circuits.naming`): nodes ``input``, ``a{L}.h{H}``,
``m{L}``, ``m{L}.n{I}``, ``logits``; edges ``src->dst`` with ``<q>/<k>/<v>`` on head inputs.

Example:
    >>> import sc_interp.circuits as circuits
    >>> circ = circuits.load({"A0.1->MLP 1": 0.3, "Resid Start->A0.1.V": -1.0})
    >>> sorted(circ.top(1).nodes)
    ['a0.h1', 'input']
"""

from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits.compare import compare
from sc_interp.circuits.formats import load, to_eap_json

__all__ = ["Circuit", "compare", "load", "to_eap_json"]
