"""Numba kernels of the tile rasterizer (CPU). Imported lazily by :mod:`neural3d.splat.rasterize`.

The pipeline, all of it compiled:

1. :func:`prepare` (parallel over Gaussians): each Gaussian's parameters, pixel box and first
   four colours packed in one 64-byte row (one cache line: the blending reads the rows in depth
   order, i.e. at random places, and prefetches them a few entries ahead), its tile rectangle
   (the tiles its radius square touches, as 3DGS and gsplat bin) and a pixel box outside which
   its alpha is below 1/255 whatever the pixel -- so the binning and the blending loops may skip
   those tiles and pixels without changing the result.
2. :func:`depth_order`: the binned Gaussians sorted front to back by an LSD radix sort of their
   float32 depth bits (stable, so equal depths keep index order).
3. :func:`tile_ranges` (per-tile counts), :func:`sorted_rects` (the tile rectangles gathered in
   depth order) and :func:`fill` (parallel over bands of tile rows): a counting sort of the
   (Gaussian, tile) pairs by tile that visits Gaussians in depth order, so each tile's list comes
   out front to back -- the order the 3DGS radix sort of ``tile << 32 | depth`` keys gives.
   Only indices are written; the blending reads each entry's packed per-Gaussian row.
4. :func:`forward` (parallel over tiles, handed out one at a time): front-to-back compositing.
   A tile keeps all its pixels' state (centre, transmittance, stop flag, last entry, colour
   sums) in one array laid out ``[lane block, field, lane]`` with rows padded to ``_LF`` lanes
   (8 with AVX2, 16 with AVX-512: :func:`_forward_lanes`); each Gaussian is blended into the
   lane blocks of its box's rows by one
   branch-free loop that LLVM turns into vector code (:func:`_blend_lanes`, which also sums the
   first four colour channels), skipping blocks whose pixels have all stopped (recounted every
   ``_RECOUNT`` entries) and leaving the tile once all of them have. Stores the final
   transmittance and the last contributing entry per pixel.
5. :func:`backward` (parallel over tiles): walks each tile's list back to front, recovering each
   pixel's transmittance by division and the colour "behind" by the running recurrence, in two
   vectorised passes per 16-pixel block (one more per channel beyond the fourth) over a per-pixel
   state array laid out ``[block, field, lane]`` that also holds the pixel centres, last entries
   and the values one pass hands to the next (so the passes have no alias checks but one, with
   the sums). The gradient of each (Gaussian, tile) entry is summed per lane and written to its
   own row, so no two threads write the same memory; :func:`reduce_entries` (parallel over
   Gaussians) sums each Gaussian's rows. The result does not depend on the number of threads.

What keeps the lane loops vectorised (each cost 2-4x when lost, measured on AMD Zen 3 with
AVX2): no conditional load or store (an AVX2 masked move, microcoded on Zen), no reduction
across lanes inside the loop, few distinct arrays (LLVM's runtime alias checks have a limit,
and below it they still run before every block: the forward keeps one array per tile and has
none), constant offsets within an array, slices indexed from 0 (numba's wraparound test on an
offset index of unknown sign stops the vectoriser), ``error_model="numpy"`` (Python's
division-by-zero check is a branch), and loops large enough not to be fully unrolled first (a
small unrolled loop stays scalar). ``fastmath={"contract"}`` lets LLVM fuse multiply-adds
(FMA), which only rounds less.

All blending arithmetic is float32 with float32 constants (numba would promote Python float
literals to float64), in the reference's operation order up to fused multiply-adds; ``exp`` is
a vectorisable polynomial (:func:`_exp`, within ~1 ulp of libm's), so images agree with
:mod:`neural3d.splat._reference` to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_MAX_ALPHA = np.float32(0.99)
_MIN_ALPHA = np.float32(1.0 / 255.0)
_MIN_T = np.float32(1e-4)
_L = 16
"""Pixels the backward's loops handle at once (one AVX-512 or two AVX2 registers of float32;
tile rows are padded to a multiple of it)."""


def _forward_lanes() -> int:
    """Pixels the forward's blend handles at once: 16 with AVX-512, 8 (one register) otherwise.

    With AVX2 a 16-lane block takes two registers per value, and with the blend's ~25 constants
    the 16 registers spill on every block; 8 lanes per block (two blocks per tile row) made the
    forward ~18% faster on AMD Zen 3 (256x256, 100k Gaussians: 50.3 -> 41.2 ms on 2 threads,
    interleaved in one process; images bit-identical), and lets a box that covers half a tile
    row skip the other half. The backward stays at 16: at 8 it ran 2.3x slower there.
    """
    try:
        from llvmlite import binding

        return 16 if binding.get_host_cpu_features().get("avx512f", False) else 8
    except Exception:  # noqa: BLE001 - feature query unavailable: the AVX2-safe choice
        return 8


_LF = _forward_lanes()
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_P = (np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3),
          np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1))
_EXP_LO = np.float32(-87.0)
_REL_MARGIN = 1.0 + 1e-3
_ABS_MARGIN = 0.01
"""Widening (relative, pixels) of the boxes and row spans where a Gaussian's alpha >= 1/255."""
_RECOUNT = 8
"""The forward recounts each lane block's pixels still blending after this many entries (to skip
stopped blocks and leave finished tiles); counting after every block costs more than it saves."""
NUM_PARAMS = 6
"""Per-entry scalars before the colour: ``mx, my, a, b, c, opacity``."""


@njit(inline="always")
def _alpha_threshold(o):  # pragma: no cover - compiled
    """``t = 2 ln(255 o)``: a pixel's alpha reaches 1/255 only where ``q = d^T conic d <= t``.

    Negative when the Gaussian never reaches 1/255.
    """
    return 2.0 * math.log(255.0 * o) if o > 0 else -1.0


ROW = 16
"""Floats per Gaussian in the packed rows :func:`prepare` writes (64 bytes, one cache line)."""


@njit(parallel=True, cache=True)
def count_non_finite(a):  # pragma: no cover - compiled
    """How many values of the flat float32 array ``a`` are NaN or infinite.

    One parallel pass; torch's ``isfinite(t).all()`` makes a bool tensor and a second pass: ~1 ms
    for a 100k-Gaussian render's inputs on 2 threads against ~0.05 ms here.
    """
    bad = 0
    for i in prange(a.shape[0]):
        bad += not np.isfinite(a[i])
    return bad


@njit(parallel=True, cache=True)
def prepare(means2d, conics, opac, radii, colors, width, height, tile, gparams, rects, boxes,
            counts):  # pragma: no cover
    """Per Gaussian: packed row ``gparams [N, ROW]``, tiles ``rects [N, 4]``, box ``boxes [N, 4]``.

    ``gparams[g] = (mx, my, a, b, c, opacity, t, det, x0, x1, y0, y1, c0, c1, c2, c3)`` with
    ``t`` from :func:`_alpha_threshold`, ``det = ac - b^2``, the pixel box as floats and the
    first four colour channels (zero-padded): everything the forward reads of an entry, in one
    cache line. ``boxes[g] = (x0, x1, y0, y1)`` are the pixels (half-open ranges) whose centres
    lie in the box around the ellipse ``q <= t``: over that ellipse ``|dx| <= sqrt(t Sigma_xx)``
    (``Sigma`` the 2D covariance). The margin ``_REL_MARGIN``, ``_ABS_MARGIN`` is far above
    float32 rounding of ``q`` and ``exp`` (~1e-6 relative), so no pixel the blending would keep
    is ever cut. ``rects[g] = (tx0, tx1, ty0, ty1)`` are the tiles its radius square touches
    (the binning rule) that also hold pixels of its box.
    ``counts[g]`` is the number of tiles (0: not drawn).
    """
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    C = colors.shape[1]
    for g in prange(means2d.shape[0]):
        counts[g] = 0
        mx, my = float(means2d[g, 0]), float(means2d[g, 1])
        a, b, c = float(conics[g, 0]), float(conics[g, 1]), float(conics[g, 2])
        det = a * c - b * b
        t = _alpha_threshold(float(opac[g]))
        gparams[g, 0], gparams[g, 1], gparams[g, 2] = means2d[g, 0], means2d[g, 1], conics[g, 0]
        gparams[g, 3], gparams[g, 4], gparams[g, 5] = conics[g, 1], conics[g, 2], opac[g]
        gparams[g, 6], gparams[g, 7] = t, det
        for ch in range(4):
            gparams[g, 12 + ch] = colors[g, ch] if ch < C else _ZERO
        gparams[g, 8] = gparams[g, 9] = gparams[g, 10] = gparams[g, 11] = _ZERO
        boxes[g, 0] = boxes[g, 1] = boxes[g, 2] = boxes[g, 3] = 0
        r = float(radii[g])
        if r <= 0 or not (a > 0 and det > 0) or t < 0:
            continue
        ex = math.sqrt(t * c / det) * _REL_MARGIN + _ABS_MARGIN
        ey = math.sqrt(t * a / det) * _REL_MARGIN + _ABS_MARGIN
        x0 = int(max(0.0, math.ceil(min(mx - ex - 0.5, width))))
        x1 = int(min(float(width), max(math.floor(mx + ex - 0.5) + 1.0, 0.0)))
        y0 = int(max(0.0, math.ceil(min(my - ey - 0.5, height))))
        y1 = int(min(float(height), max(math.floor(my + ey - 0.5) + 1.0, 0.0)))
        if x0 >= x1 or y0 >= y1:
            continue
        tx0 = max(int(min(max(math.floor((mx - r) / tile), 0.0), tiles_x)), x0 // tile)
        tx1 = min(int(min(max(math.ceil((mx + r) / tile), 0.0), tiles_x)), (x1 - 1) // tile + 1)
        ty0 = max(int(min(max(math.floor((my - r) / tile), 0.0), tiles_y)), y0 // tile)
        ty1 = min(int(min(max(math.ceil((my + r) / tile), 0.0), tiles_y)), (y1 - 1) // tile + 1)
        if tx0 >= tx1 or ty0 >= ty1:
            continue
        rects[g, 0], rects[g, 1], rects[g, 2], rects[g, 3] = tx0, tx1, ty0, ty1
        boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3] = x0, x1, y0, y1
        gparams[g, 8], gparams[g, 9] = np.float32(x0), np.float32(x1)
        gparams[g, 10], gparams[g, 11] = np.float32(y0), np.float32(y1)
        counts[g] = (tx1 - tx0) * (ty1 - ty0)


@njit(cache=True)
def depth_order(depth_bits, counts):  # pragma: no cover
    """Indices of the Gaussians with ``counts > 0``, front to back (stable LSD radix sort).

    ``depth_bits [N]`` uint32 is the float32 depth reinterpreted; it is mapped to an unsigned
    key whose order is the float order (negative depths included), sorted 11 bits at a time.
    """
    n = 0
    for g in range(counts.shape[0]):
        n += counts[g] > 0
    idx = np.empty(n, np.int64)
    key = np.empty(n, np.uint32)
    j = 0
    for g in range(counts.shape[0]):
        if counts[g] > 0:
            bits = depth_bits[g]
            key[j] = bits ^ np.uint32(0xFFFFFFFF) if bits >> 31 else bits ^ np.uint32(0x80000000)
            idx[j] = g
            j += 1
    idx2, key2 = np.empty_like(idx), np.empty_like(key)
    for shift in (0, 11, 22):
        hist = np.zeros(2049, np.int64)
        for i in range(n):
            hist[((key[i] >> shift) & 2047) + 1] += 1
        for d in range(2048):
            hist[d + 1] += hist[d]
        for i in range(n):
            d = (key[i] >> shift) & 2047
            pos = hist[d]
            hist[d] = pos + 1
            idx2[pos], key2[pos] = idx[i], key[i]
        idx, idx2, key, key2 = idx2, idx, key2, key
    return idx


@njit(parallel=True, cache=True)
def tile_ranges(rects, counts, n_tiles, tiles_x, n_chunks):  # pragma: no cover
    """Tile ``t``'s entries are ``ranges[t]:ranges[t+1]`` of the ``[n_tiles + 1]`` result.

    The per-tile counts do not depend on the depth order, so ``n_chunks`` threads histogram
    contiguous runs of Gaussians in index order (no gather through the order) and the
    histograms are summed.
    """
    n = counts.shape[0]
    hist = np.zeros((n_chunks, n_tiles), np.int64)
    for j in prange(n_chunks):
        for g in range(n * j // n_chunks, n * (j + 1) // n_chunks):
            if counts[g] > 0:  # rects of undrawn Gaussians are not written
                for ty in range(rects[g, 2], rects[g, 3]):
                    for tx in range(rects[g, 0], rects[g, 1]):
                        hist[j, ty * tiles_x + tx] += 1
    ranges = np.zeros(n_tiles + 1, np.int64)
    for t in range(n_tiles):
        total = 0
        for j in range(n_chunks):
            total += hist[j, t]
        ranges[t + 1] = ranges[t] + total
    return ranges


@njit(parallel=True, cache=True)
def sorted_rects(order, rects):  # pragma: no cover
    """``[M, 5]`` int64 rows ``(tx0, tx1, ty0, ty1, first pair)`` of the Gaussians in ``order``.

    The (Gaussian, tile) pairs are listed in depth order, each Gaussian's tiles row-major in its
    rectangle: the ``i``-th Gaussian's pairs start at ``first pair`` (an exclusive prefix sum of
    the rectangles' sizes). One gather, so that :func:`fill`'s threads, which each walk the
    whole depth order, read contiguous memory rather than follow the order to random places.
    """
    m = order.shape[0]
    out = np.empty((m, 5), np.int64)
    for i in prange(m):
        for k in range(4):
            out[i, k] = rects[order[i], k]
    total = 0
    for i in range(m):
        out[i, 4] = total
        total += (out[i, 1] - out[i, 0]) * (out[i, 3] - out[i, 2])
    return out


@njit(parallel=True, cache=True)
def fill(order, srects, ranges, tiles_x, tiles_y, n_bands, ent_gauss,
         pair_slot):  # pragma: no cover
    """Write every (Gaussian, tile) entry's Gaussian ``ent_gauss [P]`` in tile-then-depth order.

    Band ``j`` of tile rows is filled by one thread that walks all Gaussians front to back
    (``srects`` from :func:`sorted_rects`, in depth order), so each tile's entries come out in
    depth order without a sort. ``pair_slot[srects[i, 4] + k] = e`` records where the ``k``-th
    tile (row-major in its rectangle) of the ``i``-th Gaussian in depth order went: written in
    order, as the walk goes.
    Only indices are written: the kernels read each entry's Gaussian from the packed
    per-Gaussian rows, which is cheaper than copying them per entry (the copies cost more memory
    traffic than the blending's reads save).
    """
    for j in prange(n_bands):
        r0, r1 = tiles_y * j // n_bands, tiles_y * (j + 1) // n_bands
        cursor = ranges[r0 * tiles_x:r1 * tiles_x].copy()
        for i in range(order.shape[0]):
            ty0, ty1 = srects[i, 2], srects[i, 3]
            if ty1 <= r0 or ty0 >= r1:
                continue
            tx0, tx1, first = srects[i, 0], srects[i, 1], srects[i, 4]
            g = order[i]
            for ty in range(max(ty0, r0), min(ty1, r1)):
                for tx in range(tx0, tx1):
                    local = (ty - r0) * tiles_x + tx
                    e = cursor[local]
                    cursor[local] = e + 1
                    pair_slot[first + (ty - ty0) * (tx1 - tx0) + tx - tx0] = e
                    ent_gauss[e] = g


@intrinsic
def _bits_to_float32(typingctx, bits):  # pragma: no cover - compiled
    """The float32 whose bit pattern is the int32 ``bits`` (a register move, vectorisable)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], sig.args[0], types.int32)
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):  # pragma: no cover - compiled
    """Ask the cache for ``arr[idx]`` of a 1-D array (``llvm.prefetch``: a hint, never a fault)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read, high locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    """``exp(x)`` in float32 for ``x <= 0`` (within ~1 ulp) from operations LLVM vectorises.

    libm's ``expf`` is a call LLVM cannot vectorise; this is the usual Cody-Waite reduction
    ``x = n ln2 + r`` with a degree-7 polynomial for ``e^r`` (Cephes ``expf`` coefficients) and
    ``2^n`` built in the exponent bits.
    """
    x = max(x, _EXP_LO)
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _EXP_P[0] * r + _EXP_P[1]
    for c in _EXP_P[2:]:
        p = p * r + c
    p = p * r * r + r + _ONE
    return p * _bits_to_float32((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(inline="always")
def _tile_setup(t, width, height, tile, lanes):  # pragma: no cover - compiled
    """Pixel bounds ``x0, x1, y0, y1`` of tile ``t`` and its row stride padded to ``lanes``."""
    tiles_x = (width + tile - 1) // tile
    x0 = (t % tiles_x) * tile
    y0 = (t // tiles_x) * tile
    wpad = (tile + lanes - 1) // lanes * lanes
    return x0, min(x0 + tile, width), y0, min(y0 + tile, height), wpad


@njit(inline="always")
def _entry_span(boxes, g, x0, x1, y0, y1):  # pragma: no cover - compiled
    """Rows ``[by0, by1)`` and lane blocks ``[c0, c1)`` of the tile inside Gaussian g's box."""
    by0, by1 = max(boxes[g, 2], y0), min(boxes[g, 3], y1)
    c0 = (max(boxes[g, 0], x0) - x0) // _L
    c1 = (min(boxes[g, 1], x1) - x0 + _L - 1) // _L
    return by0, by1, c0, c1


_S_PX, _S_PY, _S_T, _S_LIVE, _S_LAST, _S_W, _S_ACC = 0, 1, 2, 3, 4, 5, 6
"""Fields of the forward's per-pixel state ``st[block, field, lane]``: pixel centre x and y,
transmittance, not-stopped flag (1/0), last contributing entry (its index within the tile, as
a float: exact below 2^24), blend weight ``alpha T`` of the entry just blended, then the colour
sums, one field per channel."""


@njit(inline="always")
def _blend_lanes(s, mx, my, a, b, c, o, c0, c1, c2, c3, el):  # pragma: no cover - compiled
    """Blend one Gaussian into the ``_LF`` pixels of one lane block of the state ``s``.

    ``s`` is the block's slice of the tile state (:data:`_S_PX`), ``mx ... o`` the Gaussian's
    mean, conic and opacity, ``c0 ... c3`` its first four colours, ``el`` its entry index within
    the tile. Updates transmittance, stop flag, last entry, weight and the four colour sums.

    Written for LLVM's vectoriser: branch-free, each element loaded once and stored
    unconditionally (a conditional load or store becomes an AVX2 masked move, microcoded and
    ~10x slower on AMD Zen; ``+ 0`` keeps LLVM from turning the store of an unchanged value into
    one), no reduction inside (the caller recounts stopped pixels now and then), and every access
    at a constant offset into the one array ``s``, so LLVM proves them independent and emits no
    runtime alias checks (with one array per field those checks cost as much as the blending:
    ~20% of the kernel, measured on AMD Zen 3).
    """
    for i in range(_LF):
        dx = s[i] - mx
        dy = s[_LF + i] - my
        power = -_HALF * (a * dx * dx + c * dy * dy) - b * dy * dx
        alpha = min(_MAX_ALPHA, o * _exp(min(power, _ZERO)))
        tk, lv, ls = s[2 * _LF + i], s[3 * _LF + i], s[4 * _LF + i]
        test = tk * (_ONE - alpha)
        ok = (power <= _ZERO) & (alpha >= _MIN_ALPHA) & (lv != _ZERO)
        stop = ok & (test < _MIN_T)  # stop before this Gaussian
        use = ok & (test >= _MIN_T)
        wi = alpha * tk if use else _ZERO
        s[5 * _LF + i] = wi
        s[2 * _LF + i] = test if use else tk + _ZERO
        s[4 * _LF + i] = el if use else ls + _ZERO
        s[3 * _LF + i] = _ZERO if stop else lv + _ZERO
        s[6 * _LF + i] += c0 * wi
        s[7 * _LF + i] += c1 * wi
        s[8 * _LF + i] += c2 * wi
        s[9 * _LF + i] += c3 * wi


@njit(inline="always")
def _recount(st, F, alive):  # pragma: no cover - compiled
    """``alive[q]``: how many pixels of lane block ``q`` still blend; returns the total."""
    total = 0
    for q in range(alive.shape[0]):
        base = (q * F + _S_LIVE) * _LF
        n = 0
        for i in range(_LF):
            n += st[base + i] != _ZERO
        alive[q] = n
        total += n
    return total


@njit(inline="always")
def _init_tile(x0, x1, y0, y1, wpad, F):  # pragma: no cover - compiled
    """A tile's state (:data:`_S_PX`) and its blocks' live counts; padding pixels start stopped."""
    nblk = wpad // _LF
    nq = (y1 - y0) * nblk
    st = np.zeros(nq * F * _LF, np.float32)
    alive = np.empty(nq, np.int32)
    for q in range(nq):
        r, blk = q // nblk, q % nblk
        base = q * F * _LF
        n = 0
        for i in range(_LF):
            x = blk * _LF + i
            lv = x < x1 - x0
            st[base + _S_PX * _LF + i] = np.float32(x0 + x) + _HALF
            st[base + _S_PY * _LF + i] = np.float32(y0 + r) + _HALF
            st[base + _S_T * _LF + i] = _ONE
            st[base + _S_LIVE * _LF + i] = _ONE if lv else _ZERO
            st[base + _S_LAST * _LF + i] = -_ONE
            n += lv
        alive[q] = n
    return st, alive


@njit(inline="always")
def _store_tile(x0, x1, y0, y1, wpad, F, e0, st, image, trans, last):  # pragma: no cover
    """Write a tile's state into the image-sized outputs."""
    nblk = wpad // _LF
    for py in range(y0, y1):
        for px in range(x0, x1):
            x = px - x0
            base = ((py - y0) * nblk + x // _LF) * F * _LF + x % _LF
            trans[py, px] = st[base + _S_T * _LF]
            el = st[base + _S_LAST * _LF]
            last[py, px] = np.int32(el) + e0 if el >= _ZERO else -1
            for ch in range(image.shape[2]):
                image[py, px, ch] = st[base + (_S_ACC + ch) * _LF]


_PREFETCH = 8
"""Entries ahead whose packed row the forward asks the cache for (the rows are read in depth
order, at random places in memory: without it each entry waits on a cache miss)."""


@njit(parallel=True, cache=True, fastmath={"contract"}, error_model="numpy")
def forward(ranges, ent_gauss, gparams, colors, width, height, tile, image, trans,
            last):  # pragma: no cover
    """Composite every tile front to back.

    Writes ``image [H, W, C]`` (without background), final transmittance ``trans [H, W]`` and
    the last contributing entry ``last [H, W]`` (-1: none) of each pixel. Each tile keeps its
    pixels' state in one array (:data:`_S_PX`) in blocks of ``_LF`` lanes; an entry is blended
    into the blocks of its box's rows that still have pixels blending. A tile may hold at most
    2^24 entries (the last entry is kept as a float; the caller checks).
    """
    C = colors.shape[1]
    F = _S_ACC + max(C, 4)  # colour sums: four fused into the blending loop, the rest after
    flat = gparams.reshape(-1)
    for t in prange(ranges.shape[0] - 1):
        x0, x1, y0, y1, wpad = _tile_setup(t, width, height, tile, _LF)
        nblk = wpad // _LF
        st, alive = _init_tile(x0, x1, y0, y1, wpad, F)
        e0, e1 = ranges[t], ranges[t + 1]
        for e in range(e0, e1):
            if e + _PREFETCH < e1:
                _prefetch(flat, ent_gauss[e + _PREFETCH] * ROW)
            g = ent_gauss[e]
            p = flat[g * ROW:(g + 1) * ROW]
            by0, by1 = max(np.int64(p[10]), y0), min(np.int64(p[11]), y1)
            cb0 = (max(np.int64(p[8]), x0) - x0) // _LF
            cb1 = (min(np.int64(p[9]), x1) - x0 + _LF - 1) // _LF
            mx, my, a, b, c, o = p[0], p[1], p[2], p[3], p[4], p[5]
            c0, c1, c2, c3 = p[12], p[13], p[14], p[15]
            el = np.float32(e - e0)
            for r in range(by0 - y0, by1 - y0):
                for blk in range(cb0, cb1):
                    q = r * nblk + blk
                    if alive[q] == 0:
                        continue
                    base = q * F * _LF
                    _blend_lanes(st[base:base + (_S_ACC + 4) * _LF], mx, my, a, b, c, o, c0, c1,
                                 c2, c3, el)
                    for ch in range(4, C):
                        cc = colors[g, ch]
                        for i in range(_LF):
                            st[base + (_S_ACC + ch) * _LF + i] += cc * st[base + _S_W * _LF + i]
            if (e - e0) % _RECOUNT == _RECOUNT - 1 and _recount(st, F, alive) == 0:
                break  # every pixel of the tile has stopped
        _store_tile(x0, x1, y0, y1, wpad, F, e0, st, image, trans, last)


_F_T, _F_LAST_ALPHA, _F_D_ALPHA, _F_T_FINAL, _F_COLOUR = 0, 1, 2, 3, 4
_F_PX, _F_LAST, _F_LANE, _F_EXTRA = 16, 17, 18, 24
"""Fields of the backward's per-pixel state ``st[block, field, lane]``: running transmittance,
the alpha of the last Gaussian met (behind this one), dL/dalpha of the pixel, final
transmittance; per channel of the first four (:func:`_colour_fields`) the colour behind, the
last colour met and dL/dpixel; the pixel centre's x, the pixel's last contributing entry (its
index within the tile, a float: exact below 2^24), six scratch fields the passes over one
Gaussian hand on (alpha, blended or not, weight, Gaussian value, dx, dL/dalpha); then three
fields per channel beyond the fourth. All in one array at constant offsets, so LLVM emits no
runtime alias checks between them (see :func:`_blend_lanes`)."""


@njit(inline="always")
def _colour_fields(ch):  # pragma: no cover - compiled
    """State fields of channel ``ch``: colour behind, last colour, dL/dpixel.

    The first four channels' offsets are constants (so LLVM can prove the accesses of one lane
    loop independent); further channels follow, three fields each.
    """
    if ch < 4:
        return _F_COLOUR + ch, _F_COLOUR + 4 + ch, _F_COLOUR + 8 + ch
    f = _F_EXTRA + 3 * (ch - 4)
    return f, f + 1, f + 2


@njit(inline="always")
def _load_tile(x0, x1, y0, y1, wpad, e0, trans, last, grad_image, grad_alpha, C,
               F):  # pragma: no cover - compiled
    """One tile's backward state ``st`` (see :data:`_F_T`) and each row's last entry.

    Padding pixels get no contributor (last entry -1) and zero output gradients.
    """
    n = (y1 - y0) * wpad
    st = np.zeros(n * F, np.float32)
    for k in range(n):
        base = (k // _L) * F * _L + k % _L
        st[base + _F_T * _L] = _ONE
        st[base + _F_T_FINAL * _L] = _ONE
        st[base + _F_PX * _L] = np.float32(x0 + k % wpad) + _HALF
        st[base + _F_LAST * _L] = -_ONE
    row_last = np.full(y1 - y0, -1, np.int32)
    for py in range(y0, y1):
        for px in range(x0, x1):
            k = (py - y0) * wpad + px - x0
            base = (k // _L) * F * _L + k % _L
            st[base + _F_T * _L] = st[base + _F_T_FINAL * _L] = trans[py, px]
            st[base + _F_D_ALPHA * _L] = grad_alpha[py, px]
            e = last[py, px]
            st[base + _F_LAST * _L] = np.float32(e - e0) if e >= 0 else -_ONE
            row_last[py - y0] = max(row_last[py - y0], e)
            for ch in range(C):
                st[base + _colour_fields(ch)[2] * _L] = grad_image[py, px, ch]
    return st, row_last


@njit(inline="always")
def _unblend_lanes(mx, a, b, c, o, dy, el, st):  # pragma: no cover - compiled
    """Pass 1 of one Gaussian over a block's ``_L`` pixels, back to front.

    ``st``: the block's state (:data:`_F_T`); its transmittance is divided back to its value in
    front of this Gaussian, and the scratch fields get each pixel's alpha, whether it was
    blended (entry ``el`` at or before the pixel's last), weight, Gaussian value and dx, and a
    zero dL/dalpha for the passes that follow.
    """
    cdy, bdy = c * dy * dy, b * dy
    for i in range(_L):
        dx = st[_F_PX * _L + i] - mx
        power = -_HALF * (a * dx * dx + cdy) - bdy * dx
        gauss = _exp(min(power, _ZERO))
        alpha = min(_MAX_ALPHA, o * gauss)
        t0, ls = st[i], st[_F_LAST * _L + i]
        ok = (power <= _ZERO) & (alpha >= _MIN_ALPHA) & (ls >= el)
        tk = t0 / (_ONE - alpha) if ok else t0 + _ZERO  # "+ 0": see _colour_step
        st[i] = tk
        st[_F_LANE * _L + i] = alpha
        st[(_F_LANE + 1) * _L + i] = _ONE if ok else _ZERO
        st[(_F_LANE + 2) * _L + i] = alpha * tk if ok else _ZERO
        st[(_F_LANE + 3) * _L + i] = gauss
        st[(_F_LANE + 4) * _L + i] = dx
        st[(_F_LANE + 5) * _L + i] = _ZERO


@njit(inline="always")
def _colour_step(ch, i, ok, la, wv, dla, cc, st, g):  # pragma: no cover - compiled
    """One channel of one pixel: the "colour behind" recurrence and the colour's gradient.

    ``behind = a' c' + (1 - a') behind'`` from the previous (farther) Gaussian's alpha ``a'`` and
    colour ``c'``; returns ``dL/dalpha + (c - behind) dL/dpixel``; ``g`` gets ``w dL/dpixel``.
    """
    fb, fl, fd = _colour_fields(ch)
    jb, jl, jd = fb * _L + i, fl * _L + i, fd * _L + i
    bh, lc, di = st[jb], st[jl], st[jd]
    nb = la * lc + (_ONE - la) * bh
    # "+ 0" (not folded: -0 + 0 is +0) keeps LLVM from dropping the store of an unchanged value,
    # which would make the store conditional: an AVX2 masked store, microcoded on AMD Zen
    st[jb] = nb if ok else bh + _ZERO
    st[jl] = cc if ok else lc + _ZERO
    g[(NUM_PARAMS + ch) * _L + i] += wv * di
    return dla + (cc - nb) * di if ok else dla


@njit(inline="always")
def _colour_lanes(ch, cc, st, g):  # pragma: no cover - compiled
    """Pass 2, for a colour channel beyond the fourth (those run inside :func:`_param_lanes`)."""
    for i in range(_L):
        ok = st[(_F_LANE + 1) * _L + i] != _ZERO
        st[(_F_LANE + 5) * _L + i] = _colour_step(
            ch, i, ok, st[_F_LAST_ALPHA * _L + i], st[(_F_LANE + 2) * _L + i],
            st[(_F_LANE + 5) * _L + i], cc, st, g)


@njit(inline="always")
def _param_lanes(a, b, c, o, c0, c1, c2, c3, dy, st, g):  # pragma: no cover - compiled
    """Pass 3: the first four colour channels, then ``dL/dalpha`` to opacity, mean and conic.

    Sums go per lane into ``g[q * _L + i]`` (q: the 6 parameters, then the colours); ``c0 ...
    c3``: this Gaussian's first four colours (zero-padded). Two arrays, the state and the sums:
    one runtime alias check per block.
    """
    for i in range(_L):
        ok = st[(_F_LANE + 1) * _L + i] != _ZERO
        alpha, wv = st[_F_LANE * _L + i], st[(_F_LANE + 2) * _L + i]
        gauss, dx = st[(_F_LANE + 3) * _L + i], st[(_F_LANE + 4) * _L + i]
        la = st[_F_LAST_ALPHA * _L + i]
        dla = _colour_step(0, i, ok, la, wv, st[(_F_LANE + 5) * _L + i], c0, st, g)
        dla = _colour_step(1, i, ok, la, wv, dla, c1, st, g)
        dla = _colour_step(2, i, ok, la, wv, dla, c2, st, g)
        dla = _colour_step(3, i, ok, la, wv, dla, c3, st, g)
        # pixel alpha 1 - prod(1 - alpha_j) has d/dalpha_i = T_final / (1 - alpha_i)
        d = dla * st[i] + st[_F_D_ALPHA * _L + i] * st[_F_T_FINAL * _L + i] / (_ONE - alpha)
        st[_F_LAST_ALPHA * _L + i] = alpha if ok else la + _ZERO  # see _colour_step
        d = d if ok & (o * gauss <= _MAX_ALPHA) else _ZERO  # clamped alpha: no gradient
        d_pow = o * gauss * d
        g[5 * _L + i] += gauss * d
        g[i] += d_pow * (a * dx + b * dy)  # d power / d mx, with dx = px - mx
        g[_L + i] += d_pow * (c * dy + b * dx)
        g[2 * _L + i] -= _HALF * d_pow * dx * dx
        g[3 * _L + i] -= d_pow * dx * dy
        g[4 * _L + i] -= _HALF * d_pow * dy * dy


@njit(parallel=True, cache=True, fastmath={"contract"}, error_model="numpy")
def backward(ranges, ent_gauss, gparams, boxes, colors, width, height, tile, trans, last,
             grad_image, grad_alpha, entry_grads):  # pragma: no cover
    """``entry_grads [P, 6 + C]``: ``dL/d(mx, my, a, b, c, opacity, colour...)`` of every entry.

    ``grad_image [H, W, C]`` and ``grad_alpha [H, W]`` are the loss gradients of the outputs of
    :func:`forward` (background excluded: it enters through ``grad_alpha``). Each entry's sums
    run per lane over its rows, then across lanes.
    """
    C = colors.shape[1]
    Cq = max(C, 4)
    F = _F_EXTRA + 3 * (Cq - 4)
    flat = gparams.reshape(-1)
    for t in prange(ranges.shape[0] - 1):
        x0, x1, y0, y1, wpad = _tile_setup(t, width, height, tile, _L)
        e0 = ranges[t]
        st, row_last = _load_tile(x0, x1, y0, y1, wpad, e0, trans, last, grad_image,
                                  grad_alpha, C, F)
        sums = np.empty((NUM_PARAMS + Cq) * _L, np.float32)
        e_max = row_last.max() if row_last.shape[0] > 0 else -1
        for e in range(ranges[t + 1] - 1, e0 - 1, -1):
            if e - _PREFETCH >= e0:  # the list is walked back to front
                _prefetch(flat, ent_gauss[e - _PREFETCH] * ROW)
            sums[:] = _ZERO
            g = ent_gauss[e]
            by0, by1, c0, c1 = _entry_span(boxes, g, x0, x1, y0, y1)
            if e > e_max:  # behind every pixel's last contributor: zero gradient
                by1 = by0
            p = flat[g * ROW:(g + 1) * ROW]
            mx, my, a, b, c, o = p[0], p[1], p[2], p[3], p[4], p[5]
            k0, k1, k2, k3 = p[12], p[13], p[14], p[15]
            el = np.float32(e - e0)
            for py in range(by0, by1):
                if row_last[py - y0] < e:  # no pixel of this row got this far
                    continue
                dy = np.float32(py) + _HALF - my
                for blk in range(c0, c1):
                    base = (((py - y0) * wpad) // _L + blk) * F * _L
                    sb = st[base:base + F * _L]
                    _unblend_lanes(mx, a, b, c, o, dy, el, sb)
                    for ch in range(4, C):
                        _colour_lanes(ch, colors[g, ch], sb, sums)
                    _param_lanes(a, b, c, o, k0, k1, k2, k3, dy, sb, sums)
            for q in range(NUM_PARAMS + C):
                acc = _ZERO
                for i in range(_L):
                    acc += sums[q * _L + i]
                entry_grads[e, q] = acc


@njit(parallel=True, cache=True)
def reduce_entries(entry_grads, order, srects, pair_slot, out):  # pragma: no cover
    """``out[order[i]] = sum of entry_grads over the i-th Gaussian's entries`` (one writer a row).

    The ``i``-th Gaussian in depth order has the entries ``pair_slot[srects[i, 4]:next first]``
    (:func:`fill`). Rows of ``out`` of Gaussians not in ``order`` (not drawn) are left as they
    are: the caller zeroes them.
    """
    m = order.shape[0]
    total = pair_slot.shape[0]
    for i in prange(m):
        g = order[i]
        end = srects[i + 1, 4] if i + 1 < m else total
        for p in range(srects[i, 4], end):
            e = pair_slot[p]
            for q in range(out.shape[1]):
                out[g, q] += entry_grads[e, q]
