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
public sealed partial class LambdaIndex
{
    public const int BlockSize = 64;

    /// <summary>Keys per sealed segment: 256 blocks. Larger makes shards coarser; smaller adds a partial per segment to every query.</summary>
    public const int SegmentSize = 16384;

    private readonly int width;
    private readonly float temperature;
    private readonly float slope;
    private readonly List<Run> runs = [];
    private readonly float[] tailLambdas = new float[BlockSize];
    private readonly int[] tailPositions = new int[BlockSize];
    private readonly float[] tailValues;
    private readonly double[] merged;
    private readonly float[] blockWeights = new float[BlockSize];
    private readonly float[] blockSum;
    private readonly double[] groupMerged;
    private readonly float[] groupVector;
    private int tailCount;

    /// <param name="recencySlope">m of the recency bias −m·(i − j) on every score (0: none); the sums carry e^(m·j) exactly.</param>
    public LambdaIndex(int width, float temperature, float recencySlope = 0)
    {
        this.width = width;
        this.temperature = temperature;
        slope = recencySlope;
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
        tailPositions[tailCount] = Count;
        value.CopyTo(tailValues.AsSpan(tailCount * width, width));
        tailCount++;
        Count++;
        if (tailCount < BlockSize) return;

        var run = Run.FromPositionOrder(Count - BlockSize, tailLambdas, tailValues, width, temperature, slope);
        tailCount = 0;
        while (runs.Count > 0 && runs[^1].Size == run.Size && run.Size < SegmentSize)
        {
            run = Run.Merge(runs[^1], run, width, temperature, slope);
            runs.RemoveAt(runs.Count - 1);
        }
        runs.Add(run);
    }

    /// <summary>
    /// output = Σⱼ softmaxⱼ(−|λq − λj| / T − m·(i − j)) vⱼ over every key added, for the query at the last key's position i.
    /// Not thread-safe: one query at a time.
    /// </summary>
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
        int position = Count - 1;
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
            runs[r].Query(lambdaQuery, position, temperature, slope, ref group, groupMerged, blockWeights, blockSum);
            MergeGroup(group, ref total);
        }
        if (sealedCount < runs.Count || tailCount > 0)
        {
            var open = new Partial(double.NegativeInfinity, 0);
            Array.Clear(groupMerged);
            for (int r = sealedCount; r < runs.Count; r++) runs[r].Query(lambdaQuery, position, temperature, slope, ref open, groupMerged, blockWeights, blockSum);
            if (tailCount > 0)
                Elementwise(lambdaQuery, position, tailLambdas.AsSpan(0, tailCount), tailPositions.AsSpan(0, tailCount), tailValues.AsSpan(0, tailCount * width),
                    width, temperature, slope, ref open, groupMerged, blockWeights, blockSum);
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
        return runs.Take(count).Select(r => new LambdaSegment(r, width, temperature, slope)).ToArray();
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
        var copy = new LambdaIndex(width, temperature, slope);
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
    /// differences between the best keys that decide the weights. The recency term −m·(i − j) adds 0 without recency.
    /// </summary>
    internal static void Elementwise(float lambdaQuery, int queryPosition, ReadOnlySpan<float> lambdas, ReadOnlySpan<int> positions,
        ReadOnlySpan<float> values, int width, float temperature, float slope, ref Partial total, Span<double> merged, Span<float> weights, Span<float> sum)
    {
        double best = double.NegativeInfinity;
        for (int j = 0; j < lambdas.Length; j++) best = Math.Max(best, Score(j, lambdas, positions));
        double weightSum = 0;
        sum.Clear();
        for (int j = 0; j < lambdas.Length; j++)
        {
            double w = Math.Exp(Score(j, lambdas, positions) - best);
            weightSum += w;
            weights[j] = (float)w;
            TensorPrimitives.MultiplyAdd(values.Slice(j * width, width), weights[j], sum, sum);
        }
        total.Merge(best, weightSum, sum, merged);

        double Score(int j, ReadOnlySpan<float> lambdas, ReadOnlySpan<int> positions) =>
            -Math.Abs((double)lambdaQuery - lambdas[j]) / temperature - slope * (double)(queryPosition - positions[j]);
    }
}
