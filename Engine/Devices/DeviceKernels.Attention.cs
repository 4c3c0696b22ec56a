using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>The attention kernel (dense tiles and the sealed segments' λ indexes) and its group reductions.</summary>
internal sealed partial class DeviceKernels
{
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
