"""Selection functions for the population likelihood (members chosen by magnitude/colour cuts).

A cluster's member list is rarely complete: catalogues are cut in magnitude
and colour, and the brightest stars are often missing (saturated in Gaia,
absent from a membership file).  brutus's population likelihood normalises
each member's isochrone density over EVERY valid row of the isochrone,

    p(d_i | theta) = sum_j J_j L_ij / sum_j J_j ,

i.e. it assumes every star the isochrone can make could have been observed.
When the bright end was not observed, isochrones whose upper mass range is
shorter (older ones) normalise over less mass and score higher: the age is
pulled to where the turn-off meets the brightest member.  With a selection
function ``S_j = P(selected | row j, theta)`` the member density is
conditional on being selected,

    p(d_i | theta, selected) = sum_j J_j L_ij / sum_j J_j S_j

(the observed members passed the cut, so only the normaliser changes;
``isochrone_population_loglike(..., selection=...)``).  The field
(outlier) term is left as it is: its mixture weight is read as the field
fraction AMONG the selected stars.

Caveat: this conditional likelihood ignores HOW MANY stars were selected.
Where a model puts almost no star inside the cuts, ``sum_j J_j S_j`` is tiny
and nothing penalises it; with a poor model fit the field component can then
take every star (a real Pleiades fit with the selection and ``imf="kroupa"``
went to a field fraction of 0.99, benchmarks/README.md).  A Poisson term for
the number of selected members, or a field model normalised over the same
cuts, is not implemented.

`box_selection` builds ``ln S`` for the usual magnitude and colour cuts,
with edges as soft as the errors (an observed magnitude scatters across a
cut; NUTS also needs a smooth density).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["box_selection", "row_log_selection"]


#: logistic scale per Gaussian sigma: sigmoid(1.702 x) approximates Phi(x) to < 0.01
_PROBIT = 1.702


def _edges(x, lo, hi, width):
    out = 0.0
    if lo is not None:
        out = out + jax.nn.log_sigmoid(_PROBIT * (x - lo) / width)
    if hi is not None:
        out = out + jax.nn.log_sigmoid(_PROBIT * (hi - x) / width)
    return out


def box_selection(mag=None, colour=None, width=0.02):
    """``ln S(mags)`` for magnitude and colour cuts with soft (logistic) edges.

    Parameters
    ----------
    mag : dict {band index: (lo, hi)}, optional
        Apparent-magnitude limits per band (None for an open side), e.g.
        ``{0: (None, 12.0)}``: G brighter than 12; ``{0: (6.0, None)}``: no
        star brighter than G = 6.
    colour : dict {(i, j): (lo, hi)}, optional
        Limits on ``m_i - m_j`` [mag], e.g. ``{(1, 2): (0.4, 2.0)}`` for
        0.4 < BP - RP < 2.0.
    width : float
        1-sigma error of the cut quantity [mag]: each edge is
        ``P(observed value inside | model value) ~ Phi((x - lo) / width)``
        (a logistic of the same slope).  Use the error the LIKELIHOOD assumes
        at the cut, i.e. the photometric error with ``err_floor`` added in
        quadrature (sqrt(2) times that for a colour): a sharper edge than the
        likelihood's own error lets members scatter in the numerator from
        rows the normaliser has cut away, which biases the age near the cut
        (tests/test_cluster_selection.py).  Must be > 0.

    Returns
    -------
    callable ``f(mags) -> (n_pts,)``: ``mags`` (n_pts, n_filt) apparent
    magnitudes of the model rows (at the cluster's distance and extinction);
    jnp, differentiable.
    """
    if not width > 0:
        raise ValueError(f"width: must be > 0 mag, got {width!r}")
    mag = dict(mag or {})
    colour = dict(colour or {})
    if not mag and not colour:
        raise ValueError("box_selection: give at least one magnitude or colour limit")
    for key, lim in list(mag.items()) + list(colour.items()):
        if len(lim) != 2 or (lim[0] is not None and lim[1] is not None and not lim[0] < lim[1]):
            raise ValueError(f"box_selection: limits for {key!r} must be (lo, hi) with lo < hi, got {lim!r}")

    def log_selection(mags):
        out = jnp.zeros(mags.shape[:-1], mags.dtype)
        for i, (lo, hi) in mag.items():
            out = out + _edges(mags[..., i], lo, hi, width)
        for (i, j), (lo, hi) in colour.items():
            out = out + _edges(mags[..., i] - mags[..., j], lo, hi, width)
        return out

    return log_selection


def row_log_selection(selection, mags, ok):
    """``ln S_j`` of each grid row from its apparent magnitudes ``mags`` (n_pts, n_filt);
    rows without a valid SED (``ok`` False) get 0 (they carry no weight anyway)."""
    ls = jnp.asarray(selection(mags))
    if ls.shape != ok.shape:
        raise ValueError(f"selection must return one log-probability per grid row, shape {ok.shape}; "
                         f"got {ls.shape}")
    return jnp.where(ok, ls, 0.0)
