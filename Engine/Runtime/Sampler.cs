namespace TauCluster.Engine;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy; top-k 0 and top-p 1 switch those filters off.
/// </summary>
public sealed record SamplingOptions(double Temperature = 1.0, int TopK = 0, double TopP = 1.0, ulong Seed = 0)
{
    public static SamplingOptions Greedy { get; } = new(Temperature: 0);

    public SamplingOptions Validate()
    {
        SamplingRules.Check(Temperature, TopK, TopP);
        return this;
    }
}

/// <summary>
/// Seeded, deterministic sampling: logits / temperature → top-k (keep logits ≥ the k-th largest) →
/// top-p (the smallest most-probable prefix whose mass reaches p) → one draw. The generator state can be
/// read and restored, so a session resumed elsewhere draws exactly what it would have drawn.
/// Buffers are sized once for the vocabulary: sampling allocates nothing.
/// </summary>
public sealed class Sampler
{
    private readonly Xoshiro256 rng;
    private readonly double[] weights;
    private readonly long[] order;

    public Sampler(int vocabSize, SamplingOptions options, RngState? state = null)
    {
        Options = options.Validate();
        rng = state is { } s ? new Xoshiro256(s) : new Xoshiro256(options.Seed);
        weights = new double[vocabSize];
        order = new long[vocabSize];
    }

    public SamplingOptions Options { get; }

    public RngState State
    {
        get => rng.State;
        set => rng.State = value;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.Length != weights.Length)
            throw new ArgumentException($"logits of length {logits.Length} for a vocabulary of {weights.Length}", nameof(logits));
        if (Options.Temperature == 0) return ArgMax(logits);

        int n = logits.Length;
        bool filter = (Options.TopK > 0 && Options.TopK < n) || Options.TopP < 1;
        if (!filter) return DrawInIdOrder(logits);

        // Ids by logit, descending, ties by lower id: one 64-bit key per id, sorted without allocation. With top-k,
        // only the ids at or above the k-th largest logit are sorted (found by selection, not by sorting them all).
        int kept = n;
        if (Options.TopK > 0 && Options.TopK < n)
        {
            for (int i = 0; i < n; i++) order[i] = DescendingKey(logits[i]);
            long kthKey = Select(order.AsSpan(0, n), Options.TopK - 1);
            kept = 0;
            for (int i = 0; i < n; i++)
                if (DescendingKey(logits[i]) <= kthKey) order[kept++] = ((long)DescendingKey(logits[i]) << 32) | (uint)i;
        }
        else
        {
            for (int i = 0; i < n; i++) order[i] = ((long)DescendingKey(logits[i]) << 32) | (uint)i;
        }
        Array.Sort(order, 0, kept);

        double max = logits[Id(order[0])] / Options.Temperature, total = 0;
        for (int r = 0; r < kept; r++) total += weights[r] = Math.Exp(logits[Id(order[r])] / Options.Temperature - max);

        if (Options.TopP < 1)
        {
            double mass = 0, target = Options.TopP * total;
            int prefix = 0;
            while (prefix < kept)
            {
                mass += weights[prefix++];
                if (mass >= target) break;
            }
            kept = Math.Max(1, prefix);
            total = mass;
        }

        double u = rng.NextDouble() * total;
        for (int r = 0; r < kept; r++)
        {
            u -= weights[r];
            if (u < 0) return Id(order[r]);
        }
        return Id(order[kept - 1]);
    }

    private int DrawInIdOrder(ReadOnlySpan<float> logits)
    {
        float maxLogit = logits[ArgMax(logits)];
        double max = maxLogit / Options.Temperature, total = 0;
        for (int i = 0; i < logits.Length; i++) total += weights[i] = Math.Exp(logits[i] / Options.Temperature - max);
        double u = rng.NextDouble() * total;
        int last = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (weights[i] == 0) continue;
            last = i;
            u -= weights[i];
            if (u < 0) return i;
        }
        return last;
    }

    /// <summary>The highest logit; the lowest id on ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static int Id(long key) => (int)(uint)key;

    /// <summary>The k-th smallest value (0-based) of <paramref name="values"/>, reordering them (Hoare's selection).</summary>
    private static long Select(Span<long> values, int k)
    {
        int lo = 0, hi = values.Length - 1;
        while (lo < hi)
        {
            long pivot = values[(lo + hi) >>> 1];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return values[k];
        }
        return values[k];
    }

    /// <summary>An int whose ascending order is the float's descending order.</summary>
    private static int DescendingKey(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        int ascending = bits >= 0 ? bits : bits ^ int.MaxValue;   // flip negative floats so ints order like the floats
        return ~ascending;
    }
}
