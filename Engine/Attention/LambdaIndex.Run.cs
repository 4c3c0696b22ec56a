namespace TauCluster.Engine;

/// <summary>A λ index run: its keys sorted by λ, with the block sums a query needs (see LambdaIndex.cs).</summary>
public sealed partial class LambdaIndex
{
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
