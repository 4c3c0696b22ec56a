using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>The sizes a pass's kernels need, passed by value.</summary>
internal struct PassShape
{
    public int Rows, Embd, HeadDim, Heads, KvHeads, Layer;
    /// <summary>Tokens per cache page, floats per page, and floats per cached key (1 for a λk, D for a key vector).</summary>
    public int PageTokens, PageFloats, KeyWidth;
    public int TauAttention;
    public float InverseSqrtHeadDim;
    /// <summary>Floats of one stream's part of a λ index page, and of the page.</summary>
    public int IndexStreamFloats, IndexPageFloats;
}

/// <summary>One row of a pass: its position in its session, where its lane's page ids begin, and its domain.</summary>
internal struct DeviceRow
{
    public int Position, PageTable, Domain;
    /// <summary>Where its lane's λ index page ids begin in the pass's segment table, and how many sealed segments it has.</summary>
    public int SegmentTable, Segments;
}

/// <summary>
/// A domain's Laplacian in the device's CSR arrays (its D + 1 row starts at <see cref="RowStarts"/>, which index the
/// shared column and value arrays) and its resolved taumode settings.
/// </summary>
internal struct DeviceDomain
{
    public int RowStarts, Mode;
    public double Tau, Eps, Percentile;
    public float Temperature;
}

/// <summary>The sizes of a product: Y [rows, out] = epilogue(X [rows, in] · Wᵀ), W [out, in] row-major.</summary>
internal struct ProductShape
{
    public int Rows, In, Out, Epilogue;
    public float Softcap;
}

/// <summary>
/// The forward pass's kernels for ILGPU, each named after its formula in DESIGN.md §1 and loaded once per accelerator.
/// Plain scalar code (no System.Numerics vectors, which ILGPU does not compile on .NET 8 and later); a group reduces in
/// shared memory by halves, so group sizes are powers of two. Every kernel walks its work items in grid strides, so a
/// launch takes as many groups as the device runs at once (<see cref="IlgpuDevice.Groups"/>), whatever the work.
/// Numbers follow the SIMD kernels' formulas (λ in double, everything else in float); sums run in another order, so
/// results agree to rounding, not bit for bit.
/// </summary>
internal sealed class DeviceKernels
{
    /// <summary>Largest group a kernel is launched with: shared arrays are sized for it.</summary>
    public const int MaxGroupSize = 1024;

    /// <summary>The largest tile of a product: a group of tile × tile threads computes as many outputs.</summary>
    public const int MaxTile = 16;

    /// <summary>Keys an attention group scores at once, their weights in shared memory.</summary>
    public const int KeyTile = 1024;

    /// <summary>The largest head dimension: a group keeps a head's output sums in shared memory.</summary>
    public const int MaxHeadDim = 1024;

    public DeviceKernels(Accelerator accelerator)
    {
        Embed = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(EmbedKernel);
        AddInPlace = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(AddKernel);
        RmsNormRows = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(RmsNormKernel);
        Product = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ProductShape>(ProductKernel);
        CacheKeys = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<DeviceRow>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<DeviceDomain>, PassShape>(CacheKeysKernel);
        Attend = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceRow>, ArrayView<int>,
            ArrayView<float>, ArrayView<DeviceDomain>, ArrayView<float>, ArrayView<int>, PassShape>(AttendKernel);
    }

    /// <summary>Every kernel's entry method, in the order they are loaded (a check compiles each to PTX without a GPU).</summary>
    internal static IReadOnlyList<System.Reflection.MethodInfo> EntryPoints { get; } =
        new[] { nameof(EmbedKernel), nameof(AddKernel), nameof(RmsNormKernel), nameof(ProductKernel), nameof(CacheKeysKernel), nameof(AttendKernel) }
            .Select(name => typeof(DeviceKernels).GetMethod(name, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!)
            .ToArray();

    public Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> Embed { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> AddInPlace { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> RmsNormRows { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ProductShape> Product { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<DeviceRow>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<DeviceDomain>, PassShape> CacheKeys { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceRow>, ArrayView<int>,
        ArrayView<float>, ArrayView<DeviceDomain>, ArrayView<float>, ArrayView<int>, PassShape> Attend { get; }

    /// <summary>This thread's first item, and the stride to its next, when every thread of the grid walks the items.</summary>
    private static int FirstItem => Grid.IdxX * Group.DimX + Group.IdxX;
    private static int ItemStride => Grid.DimX * Group.DimX;

    /// <summary>x[t, i] = wte[token[t], i].</summary>
    private static void EmbedKernel(ArrayView<float> table, ArrayView<int> tokens, ArrayView<float> x, int width, int count)
    {
        for (int index = FirstItem; index < count; index += ItemStride)
            x[index] = table[(long)tokens[index / width] * width + index % width];
    }

    /// <summary>x += y.</summary>
    private static void AddKernel(ArrayView<float> x, ArrayView<float> y, int count)
    {
        for (int index = FirstItem; index < count; index += ItemStride) x[index] += y[index];
    }

    /// <summary>y[r] = x[rowOf[r]] / sqrt(mean(x[rowOf[r]]²) + 1e-6), a group per output row.</summary>
    private static void RmsNormKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<int> rowOf, int width, int rows)
    {
        var partial = SharedMemory.Allocate<float>(MaxGroupSize);
        int tid = Group.IdxX, size = Group.DimX;
        for (int r = Grid.IdxX; r < rows; r += Grid.DimX)
        {
            long source = (long)rowOf[r] * width, target = (long)r * width;
            float sumOfSquares = 0;
            for (int i = tid; i < width; i += size) sumOfSquares += x[source + i] * x[source + i];
            partial[tid] = sumOfSquares;
            float total = Sum(partial, tid, size);
            float scale = 1f / MathF.Sqrt(total / width + 1e-6f);
            for (int i = tid; i < width; i += size) y[target + i] = x[source + i] * scale;
        }
    }

    /// <summary>
    /// Y[t, o] = epilogue(Σₖ W[o, k] · X[t, k]): a group per tile × tile outputs (its width and height); W and X come
    /// in through shared memory a tile-wide slice of k at a time, each element read once per tile. The outputs' tiles
    /// go first, so the groups at work at once share their rows of X, and a decode step's few rows read W once.
    /// </summary>
    private static void ProductKernel(ArrayView<float> weights, ArrayView<float> input, ArrayView<float> output, ProductShape s)
    {
        const int Stride = MaxTile + 1;   // a padded row: the threads of a warp read different banks
        var w = SharedMemory.Allocate<float>(MaxTile * Stride);
        var x = SharedMemory.Allocate<float>(MaxTile * Stride);
        int tile = Group.DimX, tx = Group.IdxX, ty = Group.IdxY;
        int outputTiles = (s.Out + tile - 1) / tile, tiles = outputTiles * ((s.Rows + tile - 1) / tile);
        for (int index = Grid.IdxX; index < tiles; index += Grid.DimX)
        {
            int firstOutput = index % outputTiles * tile, firstRow = index / outputTiles * tile;
            float sum = 0;
            for (int k0 = 0; k0 < s.In; k0 += tile)
            {
                int k = k0 + tx, o = firstOutput + ty, t = firstRow + ty;
                w[ty * Stride + tx] = o < s.Out && k < s.In ? weights[(long)o * s.In + k] : 0f;
                x[ty * Stride + tx] = t < s.Rows && k < s.In ? input[(long)t * s.In + k] : 0f;
                Group.Barrier();
                for (int i = 0; i < tile; i++) sum += w[tx * Stride + i] * x[ty * Stride + i];
                Group.Barrier();
            }
            int output0 = firstOutput + tx, row = firstRow + ty;
            if (output0 < s.Out && row < s.Rows) output[(long)row * s.Out + output0] = Finish(sum, s.Epilogue, s.Softcap);
        }
    }

    private static float Finish(float v, int epilogue, float softcap)
    {
        if (epilogue == (int)Engine.Epilogue.ClampQkv) return Clamp(v, Engine.Kernels.QkvLimit);
        if (epilogue == (int)Engine.Epilogue.ReluSquared)
        {
            float r = MathF.Max(v, 0f);
            return r * r;
        }
        if (epilogue == (int)Engine.Epilogue.Logits)
        {
            v = Clamp(v, Engine.Kernels.LogitLimit);
            if (softcap > 0) v = Clamp(softcap * Tanh(v / softcap), Engine.Kernels.LogitLimit);
        }
        return v;
    }

    private static float Clamp(float v, float limit) => MathF.Max(MathF.Min(v, limit), -limit);

    /// <summary>tanh x = 1 − 2 / (e^{2x} + 1), exact at both ends (e^{2x} → ∞ gives 1, → 0 gives −1).</summary>
    private static float Tanh(float v) => 1f - 2f / (MathF.Exp(2f * v) + 1f);

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

    /// <summary>
    /// y = Σⱼ softmax(score)ⱼ vⱼ for one (row, query head) per group, over the keys of the row's session at positions ≤
    /// its own: score = −|λq − λkⱼ| / temperature (tau) or q·kⱼ / √D (causal), kv head ⌊h / (H/Hkv)⌋. The keys go
    /// <see cref="KeyTile"/> at a time, their weights in shared memory, with a running maximum (the online softmax), so
    /// a tile costs two reductions whatever the group's width; the output's D sums are in shared memory too, each
    /// dimension summed by one thread (d, d + group, …).
    /// </summary>
    private static void AttendKernel(ArrayView<float> queries, ArrayView<float> lambdaQueries, ArrayView<float> output, ArrayView<DeviceRow> rows,
        ArrayView<int> pages, ArrayView<float> cache, ArrayView<DeviceDomain> domains, ArrayView<float> index, ArrayView<int> segmentTable, PassShape s)
    {
        var weights = SharedMemory.Allocate<float>(KeyTile);
        var partial = SharedMemory.Allocate<float>(MaxGroupSize);
        var sums = SharedMemory.Allocate<float>(MaxHeadDim);
        for (int item = Grid.IdxX; item < s.Rows * s.Heads; item += Grid.DimX)
            AttendHead(item / s.Heads, item % s.Heads, queries, lambdaQueries, output, rows, pages, cache, domains, index, segmentTable, s, weights, partial, sums);
    }

    private static void AttendHead(int t, int h, ArrayView<float> queries, ArrayView<float> lambdaQueries, ArrayView<float> output, ArrayView<DeviceRow> rows,
        ArrayView<int> pages, ArrayView<float> cache, ArrayView<DeviceDomain> domains, ArrayView<float> index, ArrayView<int> segmentTable, PassShape s,
        ArrayView<float> weights, ArrayView<float> partial, ArrayView<float> sums)
    {
        int tid = Group.IdxX, size = Group.DimX, D = s.HeadDim;
        var row = rows[t];
        int keyCount = row.Position + 1, stream = s.Layer * s.KvHeads + h / (s.Heads / s.KvHeads);
        long query = ((long)t * s.Heads + h) * D;
        float lambdaQuery = s.TauAttention != 0 ? lambdaQueries[(long)t * s.Heads + h] : 0f;
        float temperature = s.TauAttention != 0 ? domains[row.Domain].Temperature : 1f;

        for (int d = tid; d < D; d += size) sums[d] = 0f;
        float max = float.NegativeInfinity, denominator = 0f;

        // The sealed segments through their λ indexes (DeviceLambdaIndex), then the positions after them densely.
        const int S = DeviceLambdaIndex.SegmentSize, B = DeviceLambdaIndex.BlockSize, Blocks = DeviceLambdaIndex.Blocks;
        int vectorsAbove = DeviceLambdaIndex.VectorsBelow + Blocks * D;
        for (int segment = 0; segment < row.Segments; segment++)
        {
            long at = (long)segmentTable[row.SegmentTable + segment] * s.IndexPageFloats + (long)stream * s.IndexStreamFloats;
            int lo = 0, hi = S;   // the first sorted key above λq (every thread finds the same)
            while (lo < hi)
            {
                int mid = (lo + hi) >> 1;
                if (index[at + mid] <= lambdaQuery) lo = mid + 1;
                else hi = mid;
            }
            int above = lo, straddle = above < S ? above / B : Blocks;
            float nearest = float.PositiveInfinity;
            if (above > 0) nearest = lambdaQuery - index[at + above - 1];
            if (above < S) nearest = MathF.Min(nearest, index[at + above] - lambdaQuery);
            float newMax = MathF.Max(max, -nearest / temperature);
            float local = 0;
            for (int b = tid; b < Blocks; b += size)
            {
                if (b < straddle) local += MathF.Exp(-(lambdaQuery - index[at + DeviceLambdaIndex.Highest + b]) / temperature - newMax) * index[at + DeviceLambdaIndex.SumBelow + b];
                else if (b > straddle) local += MathF.Exp(-(index[at + DeviceLambdaIndex.Lowest + b] - lambdaQuery) / temperature - newMax) * index[at + DeviceLambdaIndex.SumAbove + b];
            }
            if (straddle < Blocks)
                for (int jj = tid; jj < B; jj += size)
                {
                    float weight = MathF.Exp(-MathF.Abs(lambdaQuery - index[at + straddle * B + jj]) / temperature - newMax);
                    weights[jj] = weight;
                    local += weight;
                }
            partial[tid] = local;
            float segmentSum = Sum(partial, tid, size);   // its barriers also make the straddling block's weights visible
            float rescale = MathF.Exp(max - newMax);
            denominator = denominator * rescale + segmentSum;
            for (int d = tid; d < D; d += size)
            {
                float values = 0;
                for (int b = 0; b < straddle; b++)
                    values += MathF.Exp(-(lambdaQuery - index[at + DeviceLambdaIndex.Highest + b]) / temperature - newMax) * index[at + DeviceLambdaIndex.VectorsBelow + b * D + d];
                for (int b = straddle + 1; b < Blocks; b++)
                    values += MathF.Exp(-(index[at + DeviceLambdaIndex.Lowest + b] - lambdaQuery) / temperature - newMax) * index[at + vectorsAbove + b * D + d];
                if (straddle < Blocks)
                    for (int jj = 0; jj < B; jj++)
                    {
                        int position = segment * S + (int)index[at + DeviceLambdaIndex.Position + straddle * B + jj];
                        values += weights[jj] * cache[CacheSlot(pages, cache, row.PageTable, position, stream, s) + s.KeyWidth + d];
                    }
                sums[d] = sums[d] * rescale + values;
            }
            max = newMax;
            Group.Barrier();   // the next segment overwrites the weights
        }

        for (int first = row.Segments * S; first < keyCount; first += KeyTile)
        {
            int count = Math.Min(KeyTile, keyCount - first);
            float localMax = float.NegativeInfinity;
            for (int jj = tid; jj < count; jj += size)
            {
                long slot = CacheSlot(pages, cache, row.PageTable, first + jj, stream, s);
                float score;
                if (s.TauAttention != 0) score = -MathF.Abs(lambdaQuery - cache[slot]) / temperature;
                else
                {
                    float dot = 0;
                    for (int i = 0; i < D; i++) dot += queries[query + i] * cache[slot + i];
                    score = dot * s.InverseSqrtHeadDim;
                }
                weights[jj] = score;
                localMax = MathF.Max(localMax, score);
            }
            partial[tid] = localMax;
            float newMax = MathF.Max(max, Max(partial, tid, size));
            float localSum = 0;
            for (int jj = tid; jj < count; jj += size)
            {
                float weight = MathF.Exp(weights[jj] - newMax);
                weights[jj] = weight;
                localSum += weight;
            }
            partial[tid] = localSum;
            float tileSum = Sum(partial, tid, size);   // its barriers also make every weight visible to every thread
            float rescale = MathF.Exp(max - newMax);    // 0 on the first tile, where max is −∞
            denominator = denominator * rescale + tileSum;
            for (int d = tid; d < D; d += size)
            {
                float tileValues = 0;
                for (int jj = 0; jj < count; jj++)
                    tileValues += weights[jj] * cache[CacheSlot(pages, cache, row.PageTable, first + jj, stream, s) + s.KeyWidth + d];
                sums[d] = sums[d] * rescale + tileValues;
            }
            max = newMax;
            Group.Barrier();   // the next tile overwrites the weights
        }
        for (int d = tid; d < D; d += size) output[query + d] = sums[d] / denominator;
        Group.Barrier();   // the next item clears the sums
    }

    /// <summary>The sum of every thread's <paramref name="partial"/>[tid], returned to all of them.</summary>
    private static float Sum(ArrayView<float> partial, int tid, int size)
    {
        Group.Barrier();
        for (int half = size / 2; half > 0; half /= 2)
        {
            if (tid < half) partial[tid] += partial[tid + half];
            Group.Barrier();
        }
        float total = partial[0];
        Group.Barrier();
        return total;
    }

    /// <summary>The largest of every thread's <paramref name="partial"/>[tid], returned to all of them.</summary>
    private static float Max(ArrayView<float> partial, int tid, int size)
    {
        Group.Barrier();
        for (int half = size / 2; half > 0; half /= 2)
        {
            if (tid < half) partial[tid] = MathF.Max(partial[tid], partial[tid + half]);
            Group.Barrier();
        }
        float total = partial[0];
        Group.Barrier();
        return total;
    }
}
