"""The host loop of ``BruteForce.fit``: batches of stars, local devices, output rows.

Stars are fitted in batches of a static size B (`batch_size_for`); each batch
runs stage 1 and stage 2 of `bruteforce` on one device.  With several local
devices (GPUs, or CPU devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) or several host threads
per device (`threads_for`: 2 on accelerators) each host thread takes the next
batch, with the grid replicated on every device (`DeviceContext`).  A star's
results depend only on its own data and its
key ``fold_in(key, i)``, never on which batch or device fitted it, so they
equal a one-device run (tested).  Rows are written by the main thread in
batch order as they finish (h5py is not thread-safe), at most two batches
per thread in flight.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import sys
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.selection import selected_indices_host
from .fit_io import STATUS

__all__ = ["DeviceContext", "batch_size_for", "run_fit"]

_DRAW_KEYS = ("samps_dist", "samps_red", "samps_dred", "samps_logp")


class DeviceContext(NamedTuple):
    """Arrays a batch needs, resident on one device (the grid replicated)."""

    device: object
    grid: object  # BandMajorGrid
    lnprior: jax.Array  # (Nmodel,)
    feh: jax.Array | None
    loga: jax.Array | None
    opts: tuple  # (avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh)


def batch_size_for(nmodels, nfilt, itemsize, mem_lim, ntodo, device=None, nthreads=1):
    """Default stars per batch, a power of two no larger than needed (the last batch is
    padded).  On CPU from ``mem_lim`` [MB], at most 64.  On an accelerator (``device``)
    from its memory (``mem_lim`` bounds host memory, which there holds only per-star
    outputs): at most 1024, ``nthreads`` batches in flight within ~70 % of the memory
    JAX may use, at ~12 values per star and model (measured: 42.6 GiB peak for two
    batches of 1024 stars x 600k models, float32, H200; benchmarks/README.md)."""
    if device is not None and device.platform != "cpu":
        from .bruteforce import device_bytes_limit

        limit = device_bytes_limit(device) or 16 << 30  # 16 GiB without memory statistics
        per_star = nmodels * (nfilt + 4) * itemsize
        b = int(max(1, min(1024, 0.7 * limit / max(nthreads, 1) // max(per_star, 1))))
        b = 1 << (b.bit_length() - 1)
    else:
        per_star = nmodels * (6 * nfilt + 48) * itemsize
        b = int(max(1, min(64, mem_lim * 2**20 // max(per_star, 1))))
    return min(b, 1 << int(math.ceil(math.log2(max(ntodo, 1)))))


def threads_for(bf, device):
    """Host threads fitting batches concurrently on ``device``: ``bf.threads_per_device``,
    default 2 on accelerators (one thread's dispatch and host syncs overlap the other's
    device work: 3,263 against 3,067 stars/s, H200, batches of 1024), 1 on CPU (XLA:CPU
    already uses every core; 105.9 against 105.7 ms/star with 2)."""
    if bf.threads_per_device is not None:
        return max(1, int(bf.threads_per_device))
    return 1 if device.platform == "cpu" else 2


def _contexts(bf, devices, lnp_static, feh, loga, st, av_gauss, rv_gauss):
    dt = jnp.dtype(bf.dtype)
    avg = av_gauss if av_gauss is not None else (0.0, 1e6)
    rvg = rv_gauss if rv_gauss is not None else (3.32, 1e6)
    opts = [np.asarray(x, dt) for x in (st["avlim"], avg, st["rvlim"], rvg, st["ltol"], st["ltol_subthresh"],
                                        st["logl_initthresh"] if st["logl_initthresh"] is not None else 0.005)]
    host = [np.asarray(lnp_static, dt), None if feh is None else np.asarray(feh, dt),
            None if loga is None else np.asarray(loga, dt), opts]
    out = []
    for d in devices:
        lnp, fh, la, op = jax.device_put(host, d)
        out.append(DeviceContext(d, jax.device_put(bf._grid, d), lnp, fh, la, tuple(op)))
    return out


def fit_batch(bf, ctx, inp, rows, B, key, st, host_gather):
    """Stage 1 and stage 2 of the stars ``rows`` (padded to B) on ``ctx.device`` ->
    dict of output rows (numpy)."""
    from .bruteforce import _bucket, _groups, _stage1, _stage2, default_group_bytes

    gbytes = bf.group_bytes if bf.group_bytes is not None else default_group_bytes(ctx.device)
    # stars one after another on CPU (faster there: `_stage1`, `_stage2`), vmapped on accelerators
    serial = bf._serial_stars if bf._serial_stars is not None else ctx.device.platform == "cpu"
    with jax.default_device(ctx.device):
        dt = bf.dtype
        itemsize = jnp.dtype(dt).itemsize
        pad = np.concatenate([rows, np.full(B - rows.size, rows[0])])
        opts = ctx.opts
        # Host arrays reach the device in ONE transfer per stage (jax.device_put of a tuple), and
        # index arrays go to the jitted calls as numpy: each jnp.asarray of a numpy array runs a
        # jitted identity (`lax.stage`), which cost ~0.6 ms of host time per call on an H100
        # (44 calls, 26 of the 237 ms of host time of a 512-star batch, benchmarks/README.md).
        f = lambda x: np.asarray(x, dt)  # noqa: E731
        flux, err, mask, plx, plxe = jax.device_put(
            (f(inp.flux[pad]), f(inp.err[pad]), np.asarray(inp.mask[pad]), f(inp.plx[pad]), f(inp.plxe[pad])),
            ctx.device)
        s1 = _stage1(ctx.grid, ctx.lnprior, flux, err, mask, plx, plxe, *opts, wt_thresh=st["wt_thresh"],
                     cdf_thresh=st["cdf_thresh"] if st["wt_thresh"] is None else None,
                     dim_prior=bool(st["logl_dim_prior"]), no_init_thresh=st["logl_initthresh"] is None,
                     nrows=rows.size, group_bytes=gbytes, serial=serial, lazy_scale_err=bf._lazy_scale_err)
        fit, base, lsel, sel, nsel, chi2min, nbands = s1
        nsel_h = np.asarray(nsel)
        coords, dust_d, dust_mu, dust_sd, dust_avlim, shrink = jax.device_put(
            (f(inp.coords[pad]), f(inp.dust_d), f(inp.dust_mu[pad]), f(inp.dust_sd[pad]), f(inp.dust_avlim),
             f(st["precision_shrinkage"])), ctx.device)
        args2 = (sel, lsel, base, fit.scale, fit.av, fit.rv, fit.icov, ctx.feh, ctx.loga, plx, plxe, coords, dust_d,
                 dust_mu, dust_sd, opts[0], opts[2], dust_avlim, shrink)
        static = dict(nmc=int(st["Nmc_prior"]), ndraws=int(st["Ndraws"]), mode=st["subsample_mode"],
                      use_gal=inp.use_gal, use_dust=inp.use_dust,
                      gal_kwargs=(("R_solar", float(st["R_solar"])), ("Z_solar", float(st["Z_solar"]))),
                      serial=serial)
        # (K bucket, capped) per star, decided here so that no vmapped group runs both
        # selection branches; on CPU the uncapped selections are gathered by numpy
        ks = [(_bucket(int(nsel_h[j]), st["max_models"]), bool(nsel_h[j] > st["max_models"]))
              for j in range(rows.size)]
        sel_h = np.asarray(sel) if host_gather else None
        # star i: fold_in(key, key_offset + i)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jax.device_put(pad + int(st["key_offset"]),
                                                                                  ctx.device))
        outs = []  # every group is dispatched before any result is read back (no sync per group)
        for (K, capped), ids, n in _groups(ks, lambda k: 24 * k[0] * int(st["Nmc_prior"]) * itemsize,
                                           gbytes):
            pre = None
            if host_gather and not capped:
                pre = np.stack([selected_indices_host(sel_h[j], K)[0] for j in ids])
            outs.append((ids, n, _stage2(ids, keys, pre, nsel, *args2, K=int(K), capped=capped,
                                         **static)))
        res = {}
        for ids, n, o in jax.device_get(outs):
            for k, v in o.items():
                res.setdefault(k, np.empty((rows.size,) + v.shape[1:], v.dtype))[ids[:n]] = v[:n]
        n = rows.size
        if not st["save_dar_draws"]:
            for k in _DRAW_KEYS:
                res.pop(k)
        res["obj_chi2min"] = np.asarray(chi2min)[:n]
        res["obj_Nbands"] = np.asarray(nbands)[:n].astype(np.int16)
        ok = np.isfinite(res["obj_log_evid"])
        res["obj_status"] = np.where(ok, STATUS["ok"], STATUS["no_valid_model"]).astype(np.int8)
        return res


def run_fit(bf, out, inp, key, lnp_static, feh, loga, st, av_gauss, rv_gauss, mem_lim, batch_size, running_io,
            verbose, devices, bar=None):
    """Fit every pending star of ``out`` and write its rows (see module docstring);
    ``bar``: a tqdm progress bar to advance (default: one of its own)."""
    from tqdm.auto import tqdm

    ndata, nfilt = inp.flux.shape
    done = out.done()
    nb = inp.nbands
    # stars without a usable band: flagged, never fitted
    bad = np.flatnonzero(~done & (nb == 0))
    if bad.size:
        out.write(bad, {"obj_Nbands": np.zeros(bad.size, np.int16),
                        "obj_status": np.full(bad.size, STATUS["no_bands"], np.int8)})
    todo = np.flatnonzero(~done & (nb > 0))
    devices = list(devices)
    nthreads = threads_for(bf, devices[0])
    if batch_size is None:
        batch_size = batch_size_for(bf.nmodels, nfilt, jnp.dtype(bf.dtype).itemsize, mem_lim, todo.size,
                                    devices[0], nthreads)
    B = int(max(1, batch_size))  # an explicit batch_size is used as is: one compile per size
    batches = [todo[s:s + B] for s in range(0, todo.size, B)]
    devices = devices[: max(1, len(batches))]
    ctxs = _contexts(bf, devices, lnp_static, feh, loga, st, av_gauss, rv_gauss)
    ctxs = [c for c in ctxs for _ in range(nthreads)][: max(1, len(batches))]  # a device's threads share its context
    host_gather = bf._host_gather if bf._host_gather is not None else devices[0].platform == "cpu"
    pending = []
    own = bar is None
    if own:
        bar = tqdm(total=ndata, disable=not verbose, unit="star", desc="BruteForce.fit", file=sys.stderr)
    bar.update(int(done.sum() + bad.size))

    def finish(rows, res):
        if running_io:
            out.write(rows, res)
        else:
            pending.append((rows, res))
        bar.update(rows.size)

    if len(ctxs) == 1:
        for rows in batches:
            finish(rows, fit_batch(bf, ctxs[0], inp, rows, B, key, st, host_gather))
    else:
        local = threading.local()
        counter = itertools.count()

        def work(rows):
            if not hasattr(local, "ctx"):  # each worker thread keeps one device
                local.ctx = ctxs[next(counter) % len(ctxs)]
            return fit_batch(bf, local.ctx, inp, rows, B, key, st, host_gather)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ctxs)) as pool:
            inflight = []
            for rows in batches:
                inflight.append((rows, pool.submit(work, rows)))
                while len(inflight) >= 2 * len(ctxs):
                    r, fut = inflight.pop(0)
                    finish(r, fut.result())
            for r, fut in inflight:
                finish(r, fut.result())
    if own:
        bar.close()
    for rows, res in pending:
        out.write(rows, res)
