using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// Exact sublinear tau attention for one layer and kv head (DESIGN.md §1, "Exact sublinear decode").
///
/// Scores depend only on |λq − λj|, so split the keys at λq:
/// Σⱼ e^{−|λq−λj|/T} vⱼ = e^{−λq/T} Σ_{λj≤λq} e^{λj/T} vⱼ + e^{λq/T} Σ_{λj&gt;λq} e^{−λj/T} vⱼ.
/// Keys live in λ-sorted runs whose sizes are powers of two times <see cref="BlockSize"/> (a binary counter: a full
/// tail becomes a run, equal runs merge), so each run holds a contiguous range of positions and there are at most
/// log₂(T/B) + 1 of them. Every run keeps, at each block boundary, the exponential sums of the blocks before it
/// (relative to their largest λ) and after it (relative to their smallest λ), so nothing overflows. A query costs,
/// per run, one binary search, two stored sums and one block of B keys: O(D·B·log T) for any context length T.
/// Partial results merge like online softmax, in double, and the result equals the dense softmax up to rounding.
///
/// Runs never change once built, so a fork shares them with its parent. The structure is a function of the keys in
/// position order only (truncation rebuilds the run it cuts), so replaying a session rebuilds it exactly.
///
/// Runs stop merging at <see cref="SegmentSize"/> keys: such a run is a sealed segment, the unit that context shards
/// hold. A query merges one partial per segment (and one for the open runs after them) in position order, each
/// rounded to the float partial a shard sends, so the answer is bitwise the same whether the segments are here or
/// held by shards (<see cref="ExternalCount"/> positions, whose partials the caller passes in).
/// </summary>
public sealed class LambdaIndex
{
    public const int BlockSize = 64;

    /// <summary>Keys per sealed segment: 256 blocks. Larger makes shards coarser; smaller adds a partial per segment to every query.</summary>
    public const int SegmentSize = 16384;

    private readonly int width;
    private readonly float temperature;
    private readonly List<Run> runs = [];
    private readonly float[] tailLambdas = new float[BlockSize];
    private readonly float[] tailValues;
    private readonly double[] merged;
    private readonly float[] blockWeights = new float[BlockSize];
    private readonly float[] blockSum;
    private readonly double[] groupMerged;
    private readonly float[] groupVector;
    private int tailCount;

    public LambdaIndex(int width, float temperature)
    {
        this.width = width;
        this.temperature = temperature;
        tailValues = new float[BlockSize * width];
        merged = new double[width];
        blockSum = new float[width];
        groupMerged = new double[width];
        groupVector = new float[width];
    }

    /// <summary>Keys added, counting the <see cref="ExternalCount"/> held elsewhere.</summary>
    public int Count { get; private set; }

    /// <summary>Keys at positions [0, ExternalCount) are held elsewhere (by context shards), whole segments of them.</summary>
    public int ExternalCount { get; private set; }

    /// <summary>Sealed segments held here, oldest first (they are the leading runs).</summary>
    public int SealedSegments
    {
        get
        {
            int sealedCount = 0;
            while (sealedCount < runs.Count && runs[sealedCount].Size == SegmentSize) sealedCount++;
            return sealedCount;
        }
    }

    /// <summary>Exact bytes held: keys, values, positions, the block sums of every run, and the tail.</summary>
    public long Bytes => runs.Sum(r => r.Bytes) + (long)tailCount * (width + 1) * sizeof(float);

    public void Add(float lambda, ReadOnlySpan<float> value)
    {
        tailLambdas[tailCount] = lambda;
        value.CopyTo(tailValues.AsSpan(tailCount * width, width));
        tailCount++;
        Count++;
        if (tailCount < BlockSize) return;

        var run = Run.FromPositionOrder(Count - BlockSize, tailLambdas, tailValues, width, temperature);
        tailCount = 0;
        while (runs.Count > 0 && runs[^1].Size == run.Size && run.Size < SegmentSize)
        {
            run = Run.Merge(runs[^1], run, width, temperature);
            runs.RemoveAt(runs.Count - 1);
        }
        runs.Add(run);
    }

    /// <summary>output = Σⱼ softmaxⱼ(−|λq − λj| / T) vⱼ over every key added. Not thread-safe: one query at a time.</summary>
    public void Attend(float lambdaQuery, Span<float> output) => Attend(lambdaQuery, null, 0, output);

    /// <summary>
    /// Attention over every key: the external ones through their segments' partials (entries
    /// [<paramref name="first"/>, first + ExternalCount / SegmentSize) of <paramref name="external"/>, in position order),
    /// then each sealed segment here, then the open runs and the tail.
    /// </summary>
    public void Attend(float lambdaQuery, SoftmaxPartials? external, int first, Span<float> output)
    {
        var total = new Partial(double.NegativeInfinity, 0);
        Array.Clear(merged);
        int externalSegments = ExternalCount / SegmentSize;
        if (externalSegments > 0)
        {
            if (external is null || external.Width != width || first + externalSegments > external.Count)
                throw new InvalidOperationException($"the λ index needs the partials of {externalSegments} external segments");
            for (int e = first; e < first + externalSegments; e++)
                total.Merge(external.LogScales[e], external.Sums[e], external.Vector(e), merged);
        }

        int sealedCount = SealedSegments;
        for (int r = 0; r < sealedCount; r++)
        {
            var group = new Partial(double.NegativeInfinity, 0);
            Array.Clear(groupMerged);
            runs[r].Query(lambdaQuery, temperature, ref group, groupMerged, blockWeights, blockSum);
            MergeGroup(group, ref total);
        }
        if (sealedCount < runs.Count || tailCount > 0)
        {
            var open = new Partial(double.NegativeInfinity, 0);
            Array.Clear(groupMerged);
            for (int r = sealedCount; r < runs.Count; r++) runs[r].Query(lambdaQuery, temperature, ref open, groupMerged, blockWeights, blockSum);
            if (tailCount > 0)
                Elementwise(lambdaQuery, tailLambdas.AsSpan(0, tailCount), tailValues.AsSpan(0, tailCount * width), width, temperature, ref open, groupMerged, blockWeights, blockSum);
            MergeGroup(open, ref total);
        }
        for (int i = 0; i < width; i++) output[i] = (float)(merged[i] / total.Sum);
    }

    /// <summary>Merges a group's partial as a shard would send it: its vector rounded to float.</summary>
    private void MergeGroup(Partial group, ref Partial total)
    {
        for (int i = 0; i < width; i++) groupVector[i] = (float)groupMerged[i];
        total.Merge(group.Max, group.Sum, groupVector, merged);
    }

    /// <summary>The oldest <paramref name="count"/> sealed segments, to be held by a context shard; they stay here until <see cref="DetachSegments"/>.</summary>
    public LambdaSegment[] PeekSegments(int count)
    {
        if (count > SealedSegments) throw new InvalidOperationException($"{count} segments asked, {SealedSegments} sealed");
        return runs.Take(count).Select(r => new LambdaSegment(r, width, temperature)).ToArray();
    }

    /// <summary>Forgets the oldest <paramref name="count"/> sealed segments: a context shard holds them now.</summary>
    public void DetachSegments(int count)
    {
        if (count > SealedSegments) throw new InvalidOperationException($"{count} segments asked, {SealedSegments} sealed");
        runs.RemoveRange(0, count);
        ExternalCount += count * SegmentSize;
    }

    /// <summary>Forgets every key held here; the first <paramref name="externalCount"/> positions are held elsewhere.</summary>
    public void Rebase(int externalCount)
    {
        if (externalCount % SegmentSize != 0) throw new ArgumentOutOfRangeException(nameof(externalCount), "external keys come in whole segments");
        runs.Clear();
        tailCount = 0;
        Count = ExternalCount = externalCount;
    }

    /// <summary>Forgets keys at positions ≥ <paramref name="count"/>; runs below the cut stay, the one it falls in is rebuilt.</summary>
    public void Truncate(int count)
    {
        if (count >= Count) return;
        if (count < ExternalCount) throw new InvalidOperationException($"position {count} is held by a context shard: rebase instead");
        int kept = KeptRuns(count);
        var rest = ExtractPositionOrder(count, from: kept == 0 ? ExternalCount : runs[kept - 1].Start + runs[kept - 1].Size);
        runs.RemoveRange(kept, runs.Count - kept);
        Count = kept == 0 ? ExternalCount : runs[^1].Start + runs[^1].Size;
        tailCount = 0;
        for (int i = 0; i < rest.Lambdas.Length; i++) Add(rest.Lambdas[i], rest.Values.AsSpan(i * width, width));
    }

    /// <summary>An independent index of the first <paramref name="count"/> keys; whole runs are shared, not copied.</summary>
    public LambdaIndex CopyPrefix(int count)
    {
        if (ExternalCount > 0) throw new InvalidOperationException("an index with keys in context shards cannot be copied here");
        var copy = new LambdaIndex(width, temperature);
        int kept = KeptRuns(count);
        copy.runs.AddRange(runs.Take(kept));
        copy.Count = kept == 0 ? 0 : runs[kept - 1].Start + runs[kept - 1].Size;
        var rest = ExtractPositionOrder(count, from: copy.Count);
        for (int i = 0; i < rest.Lambdas.Length; i++) copy.Add(rest.Lambdas[i], rest.Values.AsSpan(i * width, width));
        return copy;
    }

    /// <summary>How many leading runs lie wholly below position <paramref name="count"/>.</summary>
    private int KeptRuns(int count)
    {
        int kept = 0;
        while (kept < runs.Count && runs[kept].Start + runs[kept].Size <= count) kept++;
        return kept;
    }

    /// <summary>Keys at positions [from, count) in position order (they lie in the runs from <paramref name="from"/> on, and the tail).</summary>
    private (float[] Lambdas, float[] Values) ExtractPositionOrder(int count, int from)
    {
        count = Math.Min(count, Count);
        int n = Math.Max(0, count - from);
        var lambdas = new float[n];
        var values = new float[n * width];
        foreach (var run in runs)
        {
            if (run.Start + run.Size <= from) continue;
            for (int i = 0; i < run.Size; i++)
            {
                int p = run.Positions[i];
                if (p < from || p >= count) continue;
                lambdas[p - from] = run.Lambdas[i];
                run.Values.AsSpan(i * width, width).CopyTo(values.AsSpan((p - from) * width, width));
            }
        }
        int tailStart = Count - tailCount;
        for (int i = 0; i < tailCount; i++)
        {
            int p = tailStart + i;
            if (p < from || p >= count) continue;
            lambdas[p - from] = tailLambdas[i];
            tailValues.AsSpan(i * width, width).CopyTo(values.AsSpan((p - from) * width, width));
        }
        return (lambdas, values);
    }

    /// <summary>A softmax partial in log scale: the true weight sum is e^Max · Sum (the vector is kept beside it).</summary>
    internal struct Partial(double max, double sum)
    {
        public double Max = max;
        public double Sum = sum;

        /// <summary>Adds e^logScale·(sum, vector) to the running total, rescaling whichever side has the smaller scale.</summary>
        public void Merge(double logScale, double sum, ReadOnlySpan<float> vector, Span<double> total)
        {
            if (sum == 0) return;
            if (logScale > Max)
            {
                double shrink = Math.Exp(Max - logScale);
                for (int i = 0; i < total.Length; i++) total[i] = total[i] * shrink + vector[i];
                Sum = Sum * shrink + sum;
                Max = logScale;
            }
            else
            {
                double scale = Math.Exp(logScale - Max);
                for (int i = 0; i < total.Length; i++) total[i] += vector[i] * scale;
                Sum += sum * scale;
            }
        }
    }

    /// <summary>
    /// Keys scored one by one (a split block or the tail), merged as one partial relative to their best score. Scores are
    /// formed in double: at tiny temperatures |λq − λj|/T reaches thousands, and a float would round away the small
    /// differences between the best keys that decide the weights.
    /// </summary>
    internal static void Elementwise(float lambdaQuery, ReadOnlySpan<float> lambdas, ReadOnlySpan<float> values, int width, float temperature,
        ref Partial total, Span<double> merged, Span<float> weights, Span<float> sum)
    {
        double best = double.NegativeInfinity;
        foreach (float lambda in lambdas) best = Math.Max(best, -Math.Abs((double)lambdaQuery - lambda) / temperature);
        double weightSum = 0;
        sum.Clear();
        for (int j = 0; j < lambdas.Length; j++)
        {
            double w = Math.Exp(-Math.Abs((double)lambdaQuery - lambdas[j]) / temperature - best);
            weightSum += w;
            weights[j] = (float)w;
            TensorPrimitives.MultiplyAdd(values.Slice(j * width, width), weights[j], sum, sum);
        }
        total.Merge(best, weightSum, sum, merged);
    }

    /// <summary>
    /// An immutable λ-sorted run of keys from a contiguous range of positions, with the exponential sums of whole blocks:
    /// Before[b−1] = Σ over blocks &lt; b of e^{(λj − λ_last)/T} vⱼ, relative to the last (largest) λ before boundary b;
    /// After[b]    = Σ over blocks ≥ b of e^{−(λj − λ_first)/T} vⱼ, relative to the first (smallest) λ from boundary b.
    /// </summary>
    internal sealed class Run
    {
        public required int Start { get; init; }
        public required float[] Lambdas { get; init; }
        public required float[] Values { get; init; }
        public required int[] Positions { get; init; }
        public required float[] Before { get; init; }
        public required double[] BeforeSum { get; init; }
        public required float[] After { get; init; }
        public required double[] AfterSum { get; init; }

        public int Size => Lambdas.Length;
        public long Bytes => (long)Size * sizeof(float) * (1 + Values.Length / Size) + Size * sizeof(int)
            + (long)(Before.Length + After.Length) * sizeof(float) + (long)(BeforeSum.Length + AfterSum.Length) * sizeof(double);

        public static Run FromPositionOrder(int start, float[] lambdas, float[] values, int width, float temperature)
        {
            var order = Enumerable.Range(0, lambdas.Length).ToArray();
            var keys = (float[])lambdas.Clone();
            Array.Sort(keys, order);   // introsort is not stable: ties are put in position order below
            SortTies(keys, order);
            var sortedValues = new float[values.Length];
            for (int i = 0; i < order.Length; i++) values.AsSpan(order[i] * width, width).CopyTo(sortedValues.AsSpan(i * width, width));
            return Build(start, keys, sortedValues, order.Select(o => start + o).ToArray(), width, temperature);
        }

        /// <summary>Merges two runs of adjacent position ranges (a before b), ties in λ by position.</summary>
        public static Run Merge(Run a, Run b, int width, float temperature)
        {
            int n = a.Size + b.Size, i = 0, j = 0;
            var lambdas = new float[n];
            var values = new float[n * width];
            var positions = new int[n];
            for (int k = 0; k < n; k++)
            {
                bool fromA = j >= b.Size || (i < a.Size && a.Lambdas[i] <= b.Lambdas[j]);   // equal λ: a's positions come first
                var (run, index) = fromA ? (a, i++) : (b, j++);
                lambdas[k] = run.Lambdas[index];
                positions[k] = run.Positions[index];
                run.Values.AsSpan(index * width, width).CopyTo(values.AsSpan(k * width, width));
            }
            return Build(a.Start, lambdas, values, positions, width, temperature);
        }

        private static void SortTies(float[] keys, int[] order)
        {
            for (int i = 0; i < keys.Length;)
            {
                int j = i + 1;
                while (j < keys.Length && keys[j] == keys[i]) j++;
                if (j - i > 1) Array.Sort(order, i, j - i);
                i = j;
            }
        }

        private static Run Build(int start, float[] lambdas, float[] values, int[] positions, int width, float temperature)
        {
            int blocks = lambdas.Length / BlockSize;
            // Before has a row per boundary 1…blocks, After per boundary 0…blocks−1: the empty ends are not stored.
            var before = new float[blocks * width];
            var beforeSum = new double[blocks];
            var after = new float[blocks * width];
            var afterSum = new double[blocks];
            var acc = new double[width];
            double sum = 0;

            // Before[b] = Before[b−1]·e^{(λ_{bB−1} − λ_{(b+1)B−1})/T} + Σ_{j in block b} e^{(λj − λ_{(b+1)B−1})/T} vⱼ
            for (int b = 0; b < blocks; b++)
            {
                double reference = lambdas[(b + 1) * BlockSize - 1];
                if (b > 0)
                {
                    double shrink = Math.Exp((lambdas[b * BlockSize - 1] - reference) / temperature);
                    for (int i = 0; i < width; i++) acc[i] *= shrink;
                    sum *= shrink;
                }
                for (int j = b * BlockSize; j < (b + 1) * BlockSize; j++)
                {
                    double w = Math.Exp((lambdas[j] - reference) / temperature);
                    sum += w;
                    for (int i = 0; i < width; i++) acc[i] += w * values[j * width + i];
                }
                for (int i = 0; i < width; i++) before[b * width + i] = (float)acc[i];
                beforeSum[b] = sum;
            }

            // After[b] = After[b+1]·e^{−(λ_{(b+1)B} − λ_{bB})/T} + Σ_{j in block b} e^{−(λj − λ_{bB})/T} vⱼ
            Array.Clear(acc);
            sum = 0;
            for (int b = blocks - 1; b >= 0; b--)
            {
                double reference = lambdas[b * BlockSize];
                if (b < blocks - 1)
                {
                    double shrink = Math.Exp(-(lambdas[(b + 1) * BlockSize] - reference) / temperature);
                    for (int i = 0; i < width; i++) acc[i] *= shrink;
                    sum *= shrink;
                }
                for (int j = b * BlockSize; j < (b + 1) * BlockSize; j++)
                {
                    double w = Math.Exp(-(lambdas[j] - reference) / temperature);
                    sum += w;
                    for (int i = 0; i < width; i++) acc[i] += w * values[j * width + i];
                }
                for (int i = 0; i < width; i++) after[b * width + i] = (float)acc[i];
                afterSum[b] = sum;
            }
            return new Run
            {
                Start = start, Lambdas = lambdas, Values = values, Positions = positions,
                Before = before, BeforeSum = beforeSum, After = after, AfterSum = afterSum,
            };
        }

        public void Query(float lambdaQuery, float temperature, ref Partial total, Span<double> merged, Span<float> weights, Span<float> sum)
        {
            int width = merged.Length, blocks = Size / BlockSize;
            int below = UpperBound(lambdaQuery);        // keys with λ ≤ λq
            int split = below / BlockSize;              // the block the split falls in (== blocks when all are below)
            if (split > 0)
                total.Merge((Lambdas[split * BlockSize - 1] - (double)lambdaQuery) / temperature, BeforeSum[split - 1],
                    Before.AsSpan((split - 1) * width, width), merged);
            if (split < blocks)
            {
                Elementwise(lambdaQuery, Lambdas.AsSpan(split * BlockSize, BlockSize), Values.AsSpan(split * BlockSize * width, BlockSize * width),
                    width, temperature, ref total, merged, weights, sum);
                if (split + 1 < blocks)
                    total.Merge(-(Lambdas[(split + 1) * BlockSize] - (double)lambdaQuery) / temperature, AfterSum[split + 1],
                        After.AsSpan((split + 1) * width, width), merged);
            }
        }

        private int UpperBound(float value)
        {
            int lo = 0, hi = Size;
            while (lo < hi)
            {
                int mid = (lo + hi) >>> 1;
                if (Lambdas[mid] <= value) lo = mid + 1;
                else hi = mid;
            }
            return lo;
        }
    }
}
