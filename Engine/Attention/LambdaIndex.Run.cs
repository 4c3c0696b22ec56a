namespace TauCluster.Engine;

/// <summary>A λ index run: its keys sorted by λ, with the block sums a query needs (see LambdaIndex.cs).</summary>
public sealed partial class LambdaIndex
{
    /// <summary>
    /// An immutable λ-sorted run of keys from a contiguous range of positions, with the exponential sums of whole blocks.
    /// With u = position − Start and a recency slope m (0: none), the before-sums use the exponent λj/T + m·uj and the
    /// after-sums −λj/T + m·uj (the weight e^(−|λq − λj|/T − m(i − j)) of a key below or above λq, up to a factor of
    /// the query), each relative to its largest over the blocks summed, whose key is kept as the boundary's reference:
    /// Before[b−1] = Σ over blocks &lt; b of e^((λj − λr)/T + m(uj − ur)) vⱼ, r = BeforeReference[b−1];
    /// After[b]    = Σ over blocks ≥ b of e^(−(λj − λr)/T + m(uj − ur)) vⱼ, r = AfterReference[b].
    /// Without recency the references are the last key before the boundary and the first from it, as they always were.
    /// </summary>
    internal sealed class Run
    {
        public required int Start { get; init; }
        public required float[] Lambdas { get; init; }
        public required float[] Values { get; init; }
        public required int[] Positions { get; init; }
        public required float[] Before { get; init; }
        public required double[] BeforeSum { get; init; }
        public required int[] BeforeReference { get; init; }
        public required float[] After { get; init; }
        public required double[] AfterSum { get; init; }
        public required int[] AfterReference { get; init; }

        public int Size => Lambdas.Length;
        public long Bytes => (long)Size * sizeof(float) * (1 + Values.Length / Size) + Size * sizeof(int)
            + (long)(Before.Length + After.Length) * sizeof(float) + (long)(BeforeSum.Length + AfterSum.Length) * sizeof(double)
            + (long)(BeforeReference.Length + AfterReference.Length) * sizeof(int);

        public static Run FromPositionOrder(int start, float[] lambdas, float[] values, int width, float temperature, float slope)
        {
            var order = Enumerable.Range(0, lambdas.Length).ToArray();
            var keys = (float[])lambdas.Clone();
            Array.Sort(keys, order);   // introsort is not stable: ties are put in position order below
            SortTies(keys, order);
            var sortedValues = new float[values.Length];
            for (int i = 0; i < order.Length; i++) values.AsSpan(order[i] * width, width).CopyTo(sortedValues.AsSpan(i * width, width));
            return Build(start, keys, sortedValues, order.Select(o => start + o).ToArray(), width, temperature, slope);
        }

        /// <summary>Merges two runs of adjacent position ranges (a before b), ties in λ by position.</summary>
        public static Run Merge(Run a, Run b, int width, float temperature, float slope)
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
            return Build(a.Start, lambdas, values, positions, width, temperature, slope);
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

        private static Run Build(int start, float[] lambdas, float[] values, int[] positions, int width, float temperature, float slope)
        {
            int blocks = lambdas.Length / BlockSize;
            // Before has a row per boundary 1…blocks, After per boundary 0…blocks−1: the empty ends are not stored.
            var before = new float[blocks * width];
            var beforeSum = new double[blocks];
            var beforeReference = new int[blocks];
            var after = new float[blocks * width];
            var afterSum = new double[blocks];
            var afterReference = new int[blocks];
            var acc = new double[width];
            double sum = 0;
            // The exponent of key j relative to key r: ±(λj − λr)/T + m(uj − ur). With m = 0 the second term adds 0.
            double Exponent(int j, int r, double sign) =>
                sign * (lambdas[j] - (double)lambdas[r]) / temperature + slope * (double)(positions[j] - positions[r]);

            // Before[b] = Before[b−1]·e^(exponent of the last reference against the new one) + the block's own terms. The
            // reference is the key of the largest λj/T + m·uj so far, ties to the later key (without recency: the last).
            int reference = -1;
            for (int b = 0; b < blocks; b++)
            {
                int previous = reference;
                for (int j = b * BlockSize; j < (b + 1) * BlockSize; j++)
                    if (reference < 0 || Exponent(j, reference, +1) >= 0) reference = j;
                if (b > 0)
                {
                    double shrink = Math.Exp(Exponent(previous, reference, +1));
                    for (int i = 0; i < width; i++) acc[i] *= shrink;
                    sum *= shrink;
                }
                for (int j = b * BlockSize; j < (b + 1) * BlockSize; j++)
                {
                    double w = Math.Exp(Exponent(j, reference, +1));
                    sum += w;
                    for (int i = 0; i < width; i++) acc[i] += w * values[j * width + i];
                }
                for (int i = 0; i < width; i++) before[b * width + i] = (float)acc[i];
                beforeSum[b] = sum;
                beforeReference[b] = reference;
            }

            // After[b] = After[b+1]·e^(…) + the block's own terms, the reference the largest −λj/T + m·uj, ties to the
            // earlier key (without recency: the first of the block).
            Array.Clear(acc);
            sum = 0;
            reference = -1;
            for (int b = blocks - 1; b >= 0; b--)
            {
                int previous = reference;
                for (int j = (b + 1) * BlockSize - 1; j >= b * BlockSize; j--)
                    if (reference < 0 || Exponent(j, reference, -1) >= 0) reference = j;
                if (b < blocks - 1)
                {
                    double shrink = Math.Exp(Exponent(previous, reference, -1));
                    for (int i = 0; i < width; i++) acc[i] *= shrink;
                    sum *= shrink;
                }
                for (int j = b * BlockSize; j < (b + 1) * BlockSize; j++)
                {
                    double w = Math.Exp(Exponent(j, reference, -1));
                    sum += w;
                    for (int i = 0; i < width; i++) acc[i] += w * values[j * width + i];
                }
                for (int i = 0; i < width; i++) after[b * width + i] = (float)acc[i];
                afterSum[b] = sum;
                afterReference[b] = reference;
            }
            return new Run
            {
                Start = start, Lambdas = lambdas, Values = values, Positions = positions,
                Before = before, BeforeSum = beforeSum, BeforeReference = beforeReference,
                After = after, AfterSum = afterSum, AfterReference = afterReference,
            };
        }

        /// <summary>The partial of the query at absolute position <paramref name="queryPosition"/> (after every key here).</summary>
        public void Query(float lambdaQuery, int queryPosition, float temperature, float slope, ref Partial total, Span<double> merged,
            Span<float> weights, Span<float> sum)
        {
            int width = merged.Length, blocks = Size / BlockSize;
            int below = UpperBound(lambdaQuery);        // keys with λ ≤ λq
            int split = below / BlockSize;              // the block the split falls in (== blocks when all are below)
            // A reference key r's own weight: e^(∓(λq − λr)/T − m(i − pr)); the stored sums are relative to it.
            double Recency(int r) => slope * (double)(queryPosition - Positions[r]);
            if (split > 0)
            {
                int r = BeforeReference[split - 1];
                total.Merge((Lambdas[r] - (double)lambdaQuery) / temperature - Recency(r), BeforeSum[split - 1],
                    Before.AsSpan((split - 1) * width, width), merged);
            }
            if (split < blocks)
            {
                Elementwise(lambdaQuery, queryPosition, Lambdas.AsSpan(split * BlockSize, BlockSize), Positions.AsSpan(split * BlockSize, BlockSize),
                    Values.AsSpan(split * BlockSize * width, BlockSize * width), width, temperature, slope, ref total, merged, weights, sum);
                if (split + 1 < blocks)
                {
                    int r = AfterReference[split + 1];
                    total.Merge(-(Lambdas[r] - (double)lambdaQuery) / temperature - Recency(r), AfterSum[split + 1],
                        After.AsSpan((split + 1) * width, width), merged);
                }
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
