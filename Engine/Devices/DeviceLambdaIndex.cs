namespace TauCluster.Engine;

/// <summary>
/// The λ index on a device: exact sublinear tau attention over sealed segments of <see cref="SegmentSize"/> positions.
/// Scores depend only on |λq − λk|, so a segment's keys are kept sorted by λ, in blocks of <see cref="BlockSize"/> with
/// the exponential sums below each block's largest λ and above its smallest, relative to them (no term exceeds 1):
/// Σⱼ e^{(λⱼ − λmax)/T}(1, vⱼ) and Σⱼ e^{−(λⱼ − λmin)/T}(1, vⱼ). A query finds the first key above λq by binary search;
/// every block wholly below or above it contributes its sum times e^{−|λq − λedge|/T − m}, where m is the score of the
/// nearest key, and the block holding that first key is scored key by key: (S/B)·(D + 1) + B·(D + 1) reads a segment
/// instead of S·(D + 1), and exactly the dense softmax's sum, up to rounding. Positions not yet sealed are attended
/// densely. A segment is sealed at the start of the first pass after its last position is cached, so every row of
/// that pass comes after it; the host sorts and sums (1,024 λ a layer and kv head, once per 1,024 tokens).
/// </summary>
internal static class DeviceLambdaIndex
{
    public const int SegmentSize = DeviceKernels.KeyTile;
    public const int BlockSize = 32;
    public const int Blocks = SegmentSize / BlockSize;

    // One stream's (layer, kv head's) part of a segment's index page, in floats from its start.
    public const int Sorted = 0;                           // λ, ascending
    public const int Position = SegmentSize;               // each sorted key's position in the segment (exact as a float)
    public const int Lowest = 2 * SegmentSize;             // per block: its smallest λ
    public const int Highest = Lowest + Blocks;            // its largest
    public const int SumBelow = Highest + Blocks;          // Σ e^{(λ − λmax)/T}
    public const int SumAbove = SumBelow + Blocks;         // Σ e^{−(λ − λmin)/T}
    public const int VectorsBelow = SumAbove + Blocks;     // Σ e^{(λ − λmax)/T} v, D per block

    public static int VectorsAbove(int headDim) => VectorsBelow + Blocks * headDim;

    public static int StreamFloats(int headDim) => VectorsBelow + 2 * Blocks * headDim;

    /// <summary>
    /// Writes one stream's index of a segment into <paramref name="index"/> from its keys' λ and values (position order),
    /// sums in double and rounded once.
    /// </summary>
    public static void Build(ReadOnlySpan<float> lambdas, ReadOnlySpan<float> values, int headDim, double temperature, Span<float> index)
    {
        int D = headDim;
        var sorted = lambdas.ToArray();
        var order = new int[SegmentSize];
        for (int j = 0; j < order.Length; j++) order[j] = j;
        Array.Sort(sorted, order);
        sorted.CopyTo(index[Sorted..]);
        for (int j = 0; j < SegmentSize; j++) index[Position + j] = order[j];
        Span<double> below = stackalloc double[D], above = stackalloc double[D];
        int vectorsAbove = VectorsAbove(D);
        for (int b = 0; b < Blocks; b++)
        {
            double lowest = sorted[b * BlockSize], highest = sorted[b * BlockSize + BlockSize - 1], sumBelow = 0, sumAbove = 0;
            below.Clear();
            above.Clear();
            for (int i = b * BlockSize; i < (b + 1) * BlockSize; i++)
            {
                double down = Math.Exp((sorted[i] - highest) / temperature), up = Math.Exp(-(sorted[i] - lowest) / temperature);
                sumBelow += down;
                sumAbove += up;
                var v = values.Slice(order[i] * D, D);
                for (int d = 0; d < D; d++)
                {
                    below[d] += down * v[d];
                    above[d] += up * v[d];
                }
            }
            index[Lowest + b] = (float)lowest;
            index[Highest + b] = (float)highest;
            index[SumBelow + b] = (float)sumBelow;
            index[SumAbove + b] = (float)sumAbove;
            for (int d = 0; d < D; d++)
            {
                index[VectorsBelow + b * D + d] = (float)below[d];
                index[vectorsAbove + b * D + d] = (float)above[d];
            }
        }
    }
}
