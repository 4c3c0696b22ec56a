using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>The key kernel: RoPE, rms, λ over the CSR Laplacian in every τ mode, and the keys into their pages.</summary>
internal sealed partial class DeviceKernels
{
    /// <summary>
    /// Per head vector of every row, a thread each (the H query heads, then the kv heads): rope(·, pos), then rms; a query
    /// of tau attention gets its λq, a key goes into its session's cache page as λk (tau) or the vector itself, with its value.
    /// </summary>
    private static void CacheKeysKernel(ArrayView<float> queries, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> angles,
        ArrayView<DeviceRow> rows, ArrayView<int> pages, ArrayView<float> cache, ArrayView<float> lambdaQueries,
        ArrayView<int> laplacianIndex, ArrayView<double> laplacianValues, ArrayView<DeviceDomain> domains, PassShape s)
    {
        int vectors = s.Heads + s.KvHeads;
        for (int index = FirstItem; index < s.Rows * vectors; index += ItemStride)
            CacheKey(index / vectors, index % vectors, queries, keys, values, angles, rows, pages, cache, lambdaQueries, laplacianIndex, laplacianValues, domains, s);
    }

    private static void CacheKey(int t, int h, ArrayView<float> queries, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> angles,
        ArrayView<DeviceRow> rows, ArrayView<int> pages, ArrayView<float> cache, ArrayView<float> lambdaQueries,
        ArrayView<int> laplacianIndex, ArrayView<double> laplacianValues, ArrayView<DeviceDomain> domains, PassShape s)
    {
        int D = s.HeadDim, half = D / 2;
        bool query = h < s.Heads;
        long at = query ? ((long)t * s.Heads + h) * D : ((long)t * s.KvHeads + h - s.Heads) * D;
        var x = query ? queries : keys;

        // Half-split RoPE with the row's cos θᵢ (first half of its angles) and sin θᵢ (second half).
        long angle = (long)t * D;
        for (int i = 0; i < half; i++)
        {
            float a = x[at + i], b = x[at + i + half], cos = angles[angle + i], sin = angles[angle + half + i];
            x[at + i] = a * cos + b * sin;
            x[at + i + half] = b * cos - a * sin;
        }
        float sumOfSquares = 0;
        for (int i = 0; i < D; i++) sumOfSquares += x[at + i] * x[at + i];
        float scale = 1f / MathF.Sqrt(sumOfSquares / D + 1e-6f);
        for (int i = 0; i < D; i++) x[at + i] *= scale;

        var row = rows[t];
        if (query)
        {
            if (s.TauAttention != 0) lambdaQueries[(long)t * s.Heads + h] = Lambda(x, at, D, laplacianIndex, laplacianValues, domains[row.Domain]);
            return;
        }
        long slot = CacheSlot(pages, cache, row.PageTable, row.Position, s.Layer * s.KvHeads + h - s.Heads, s);
        if (s.TauAttention != 0) cache[slot] = Lambda(x, at, D, laplacianIndex, laplacianValues, domains[row.Domain]);
        else for (int i = 0; i < D; i++) cache[slot + i] = x[at + i];
        for (int i = 0; i < D; i++) cache[slot + s.KeyWidth + i] = values[at + i];
    }

    /// <summary>Where position j of a stream (layer · Hkv + kv head) is cached: its page, then [stream][token in page][key, value].</summary>
    private static long CacheSlot(ArrayView<int> pages, ArrayView<float> cache, int pageTable, int position, int stream, PassShape s)
    {
        long page = pages[pageTable + position / s.PageTokens];
        return page * s.PageFloats + ((long)stream * s.PageTokens + position % s.PageTokens) * (s.KeyWidth + s.HeadDim);
    }

    /// <summary>
    /// λ = E / (E + τ), E = max(xᵀLx, 0) / (xᵀx + eps) in double over the CSR Laplacian (O(nnz)), τ by the domain's mode
    /// and floored at 1e-10 then at eps: <see cref="Taumode.Lambda"/>.
    /// </summary>
    private static float Lambda(ArrayView<float> x, long at, int D, ArrayView<int> index, ArrayView<double> values, DeviceDomain domain)
    {
        double quadratic = 0, norm2 = 0;
        for (int i = 0; i < D; i++)
        {
            double rowDot = 0;
            for (int k = index[domain.RowStarts + i]; k < index[domain.RowStarts + i + 1]; k++)
                rowDot += values[k] * x[at + index[k]];
            double xi = x[at + i];
            quadratic += xi * rowDot;
            norm2 += xi * xi;
        }
        double energy = Math.Max(quadratic, 0.0) / (norm2 + domain.Eps);
        double tau = Math.Max(Math.Max(SelectTau(x, at, D, domain), Taumode.TauFloor), domain.Eps);
        return (float)(energy / (energy + tau));
    }

    /// <summary>τ before flooring: <see cref="Taumode.SelectTau{T}"/>, the order statistics found by counting (O(D²), no scratch).</summary>
    private static double SelectTau(ArrayView<float> x, long at, int D, DeviceDomain domain)
    {
        if (domain.Mode == (int)TaumodeKind.Fixed) return domain.Tau;
        int n = 0;
        double sum = 0;
        for (int i = 0; i < D; i++)
            if (IsFinite(x[at + i]))
            {
                n++;
                sum += x[at + i];
            }
        if (n == 0) return Taumode.TauFloor;
        if (domain.Mode == (int)TaumodeKind.Mean) return sum / n;
        if (domain.Mode == (int)TaumodeKind.Median)
        {
            double upper = OrderStatistic(x, at, D, n / 2);
            return n % 2 == 1 ? upper : 0.5 * (OrderStatistic(x, at, D, n / 2 - 1) + upper);
        }
        int k = (int)Math.Floor((n - 1) * domain.Percentile + 0.5);
        return OrderStatistic(x, at, D, Math.Min(Math.Max(k, 0), n - 1));
    }

    /// <summary>The k-th smallest (0-based) finite component: the one with at most k below it and more than k at or below it.</summary>
    private static double OrderStatistic(ArrayView<float> x, long at, int D, int k)
    {
        for (int i = 0; i < D; i++)
        {
            float v = x[at + i];
            if (!IsFinite(v)) continue;
            int below = 0, equal = 0;
            for (int j = 0; j < D; j++)
            {
                float u = x[at + j];
                if (!IsFinite(u)) continue;
                if (u < v) below++;
                else if (u == v) equal++;
            }
            if (below <= k && k < below + equal) return v;
        }
        return 0;
    }

    /// <summary>v − v is 0 for a finite v and NaN for ±∞ and NaN.</summary>
    private static bool IsFinite(float v) => v - v == 0f;
}
