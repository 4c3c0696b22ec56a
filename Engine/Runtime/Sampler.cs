using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace TauCluster.Engine;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy; top-k 0 and top-p 1 switch those filters off. The
/// penalties are the ecosystem's: <paramref name="PresencePenalty"/> and <paramref name="FrequencyPenalty"/> are
/// OpenAI's (subtracted from the logit of each token the completion has generated: once, and once per time),
/// <paramref name="RepetitionPenalty"/> is llama.cpp's and vLLM's (a positive logit of a token anywhere in the
/// session divided by it, a negative one multiplied), and <paramref name="MinP"/> keeps only the tokens whose
/// probability is at least that fraction of the likeliest one's. 0, 0, 1 and 0 switch them off.
/// <paramref name="LogitBias"/> is OpenAI's logit_bias: each listed token's logit plus its bias, before the penalties.
/// </summary>
public sealed record SamplingOptions(double Temperature = 1.0, int TopK = 0, double TopP = 1.0, ulong Seed = 0,
    double PresencePenalty = 0, double FrequencyPenalty = 0, double RepetitionPenalty = 1, double MinP = 0,
    (int Token, float Bias)[]? LogitBias = null)
{
    public static SamplingOptions Greedy { get; } = new(Temperature: 0);

    /// <summary>Whether the logits change before the draw: a bias, a penalty or min_p is on.</summary>
    public bool AdjustsLogits =>
        LogitBias is { Length: > 0 } || PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1 || MinP > 0;

    public SamplingOptions Validate()
    {
        SamplingRules.Check(Temperature, TopK, TopP);
        SamplingRules.CheckPenalties(PresencePenalty, FrequencyPenalty, RepetitionPenalty, MinP);
        foreach (var (token, bias) in LogitBias ?? []) SamplingRules.CheckLogitBias(token, bias);
        return this;
    }

    /// <summary>Refuses a bias for a token the vocabulary does not have.</summary>
    internal void RequireVocabulary(int vocabSize)
    {
        foreach (var (token, _) in LogitBias ?? []) SamplingRules.CheckLogitBiasToken(token, vocabSize);
    }
}

/// <summary>
/// Seeded, deterministic sampling: logit bias → penalties (repetition, then frequency and presence) → min-p → logits / temperature
/// → top-k (keep logits ≥ the k-th largest) → top-p (the smallest most-probable prefix whose mass reaches p) → one
/// draw. The generator state can be read and restored, and the penalties' counts are a function of the transcript
/// (<see cref="BeginCompletion"/>), so a session resumed elsewhere draws exactly what it would have drawn.
/// Buffers are sized once for the vocabulary: sampling allocates nothing.
/// </summary>
public sealed class Sampler
{
    private readonly Xoshiro256 rng;
    private readonly double[] weights;
    private readonly long[] order;
    private readonly int[] largest;
    private readonly Penalties? penalties;

    public Sampler(int vocabSize, SamplingOptions options, RngState? state = null)
    {
        Options = options.Validate();
        options.RequireVocabulary(vocabSize);
        rng = state is { } s ? new Xoshiro256(s) : new Xoshiro256(options.Seed);
        weights = new double[vocabSize];
        order = new long[vocabSize];
        largest = new int[options.TopK > 0 && options.TopK < vocabSize ? options.TopK : 0];
        penalties = options.AdjustsLogits ? new Penalties(vocabSize) : null;
    }

    /// <summary>
    /// Starts a completion over <paramref name="transcript"/>, whose tokens from <paramref name="outputStart"/> on are
    /// this completion's own (a resumed one has some already): the repetition penalty counts the whole session, the
    /// presence and frequency penalties this completion's output, as llama.cpp and vLLM count them. Without a call,
    /// the counts start empty and grow with every token drawn.
    /// </summary>
    public void BeginCompletion(ReadOnlySpan<int> transcript, int outputStart)
    {
        if (penalties is null) return;
        penalties.Clear();
        for (int i = 0; i < transcript.Length; i++) penalties.Add(transcript[i], generated: i >= outputStart);
    }

    /// <summary>
    /// The logits as the draw sees them once the penalties and min-p are applied (a view of a buffer of this sampler's);
    /// the logits themselves where none is on.
    /// </summary>
    public ReadOnlySpan<float> Adjusted(ReadOnlySpan<float> logits)
    {
        if (penalties is null) return logits;
        var adjusted = penalties.Apply(logits, Options);
        if (Options.MinP > 0 && Options.Temperature > 0)
        {
            // p_i / p_max = e^((l_i − l_max) / T) ≥ min_p  ⟺  l_i ≥ l_max + T · ln(min_p)
            float threshold = (float)(adjusted[ArgMax(adjusted)] + Options.Temperature * Math.Log(Options.MinP));
            for (int i = 0; i < adjusted.Length; i++) if (adjusted[i] < threshold) adjusted[i] = float.NegativeInfinity;
        }
        return adjusted;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        int token = Draw(Adjusted(logits));
        penalties?.Add(token, generated: true);
        Scores?.Record(logits, token);
        return token;
    }

    public SamplingOptions Options { get; }

    /// <summary>Where each draw's score goes, while a caller wants log-probabilities; null (no cost) otherwise.</summary>
    public DrawnScores? Scores { get; set; }

    public RngState State
    {
        get => rng.State;
        set => rng.State = value;
    }

    private int Draw(ReadOnlySpan<float> logits)
    {
        if (logits.Length != weights.Length)
            throw new ArgumentException($"logits of length {logits.Length} for a vocabulary of {weights.Length}", nameof(logits));
        if (Options.Temperature == 0) return ArgMax(logits);

        int n = logits.Length;
        bool filter = (Options.TopK > 0 && Options.TopK < n) || Options.TopP < 1;
        if (!filter) return DrawInIdOrder(logits);

        // Ids by logit, descending, ties by lower id: one 64-bit key per id, sorted without allocation. With top-k,
        // only the ids at or above the k-th largest logit are sorted.
        int kept = n;
        if (largest.Length > 0)
        {
            kept = TopK(logits, largest, order);
        }
        else
        {
            for (int i = 0; i < n; i++) order[i] = SortKey(Ordinal(logits[i]), i);
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

    /// <summary>The ids of the <paramref name="count"/> highest logits, highest first, ties by the lower id (allocates).</summary>
    public static int[] Likeliest(ReadOnlySpan<float> logits, int count)
    {
        count = Math.Min(count, logits.Length);
        if (count <= 0) return [];
        var order = new long[logits.Length];
        int kept = logits.Length;
        if (count < logits.Length) kept = TopK(logits, new int[count], order);
        else for (int i = 0; i < logits.Length; i++) order[i] = SortKey(Ordinal(logits[i]), i);
        Array.Sort(order, 0, kept);
        var ids = new int[count];
        for (int r = 0; r < count; r++) ids[r] = Id(order[r]);
        return ids;
    }

    /// <summary>The highest logit; the lowest id on ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static int Id(long key) => (int)(uint)key;

    /// <summary>
    /// Writes into <paramref name="order"/> the sort keys of every id whose logit is at or above the k-th largest
    /// (k = <paramref name="largest"/>.Length; ties at the k-th are all kept), unsorted, and returns how many.
    /// One pass keeps the k largest ordinals seen so far in a min-heap, and a vector compare skips the logits that
    /// cannot enter it, which for k ≪ n is nearly all of them; a second pass collects the ids.
    /// </summary>
    internal static int TopK(ReadOnlySpan<float> logits, Span<int> largest, Span<long> order)
    {
        int k = largest.Length, n = logits.Length;
        for (int i = 0; i < k; i++) largest[i] = Ordinal(logits[i]);
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(largest, i);
        var ints = MemoryMarshal.Cast<float, int>(logits);
        int lanes = Vector256<int>.Count, at = k;
        for (; at + lanes <= n; at += lanes)
        {
            if (!Vector256.GreaterThanAny(Ordinals(Vector256.Create(ints.Slice(at, lanes))), Vector256.Create(largest[0]))) continue;
            for (int i = at; i < at + lanes; i++) Offer(largest, Ordinal(logits[i]));
        }
        for (; at < n; at++) Offer(largest, Ordinal(logits[at]));

        int kth = largest[0], kept = 0;
        for (at = 0; at + lanes <= n; at += lanes)
        {
            if (!Vector256.GreaterThanOrEqualAny(Ordinals(Vector256.Create(ints.Slice(at, lanes))), Vector256.Create(kth))) continue;
            for (int i = at; i < at + lanes; i++) Keep(logits, i, kth, order, ref kept);
        }
        for (; at < n; at++) Keep(logits, at, kth, order, ref kept);
        return kept;
    }

    private static void Keep(ReadOnlySpan<float> logits, int id, int kth, Span<long> order, ref int kept)
    {
        int ordinal = Ordinal(logits[id]);
        if (ordinal >= kth) order[kept++] = SortKey(ordinal, id);
    }

    private static void Offer(Span<int> heap, int ordinal)
    {
        if (ordinal <= heap[0]) return;   // an equal one leaves the k-th largest as it is
        heap[0] = ordinal;
        SiftDown(heap, 0);
    }

    private static void SiftDown(Span<int> heap, int i)
    {
        while (true)
        {
            int smallest = i, left = 2 * i + 1, right = left + 1;
            if (left < heap.Length && heap[left] < heap[smallest]) smallest = left;
            if (right < heap.Length && heap[right] < heap[smallest]) smallest = right;
            if (smallest == i) return;
            (heap[i], heap[smallest]) = (heap[smallest], heap[i]);
            i = smallest;
        }
    }

    /// <summary>An int whose order is the float's (−0 below +0): negative floats' magnitude bits flipped.</summary>
    private static int Ordinal(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        return bits ^ ((bits >> 31) & int.MaxValue);
    }

    private static Vector256<int> Ordinals(Vector256<int> bits) => bits ^ (Vector256.ShiftRightArithmetic(bits, 31) & Vector256.Create(int.MaxValue));

    /// <summary>Ascending keys sort ids by logit descending, then by id: the complemented ordinal above the id.</summary>
    private static long SortKey(int ordinal, int id) => ((long)~ordinal << 32) | (uint)id;

    /// <summary>
    /// The counts the penalties read: how often each token was generated in this completion, and which tokens the
    /// session holds at all, each kept with a list of the distinct ids, so that a step costs the distinct tokens seen
    /// rather than the vocabulary (beyond the copy of the logits).
    /// </summary>
    private sealed class Penalties(int vocabSize)
    {
        private readonly float[] adjusted = new float[vocabSize];
        private readonly int[] generatedCount = new int[vocabSize];
        private readonly bool[] inSession = new bool[vocabSize];
        private readonly int[] generatedIds = new int[vocabSize];
        private readonly int[] sessionIds = new int[vocabSize];
        private int generatedDistinct, sessionDistinct;

        public void Clear()
        {
            for (int i = 0; i < generatedDistinct; i++) generatedCount[generatedIds[i]] = 0;
            for (int i = 0; i < sessionDistinct; i++) inSession[sessionIds[i]] = false;
            generatedDistinct = sessionDistinct = 0;
        }

        public void Add(int token, bool generated)
        {
            if ((uint)token >= (uint)inSession.Length) return;   // not a token of this vocabulary: nothing to penalise
            if (!inSession[token])
            {
                inSession[token] = true;
                sessionIds[sessionDistinct++] = token;
            }
            if (generated && generatedCount[token]++ == 0) generatedIds[generatedDistinct++] = token;
        }

        public Span<float> Apply(ReadOnlySpan<float> logits, SamplingOptions options)
        {
            logits.CopyTo(adjusted);
            foreach (var (token, bias) in options.LogitBias ?? []) adjusted[token] += bias;
            if (options.RepetitionPenalty != 1)
            {
                float r = (float)options.RepetitionPenalty;
                for (int i = 0; i < sessionDistinct; i++)
                {
                    ref float l = ref adjusted[sessionIds[i]];
                    l = l > 0 ? l / r : l * r;
                }
            }
            if (options.PresencePenalty != 0 || options.FrequencyPenalty != 0)
                for (int i = 0; i < generatedDistinct; i++)
                {
                    int id = generatedIds[i];
                    adjusted[id] -= (float)(options.FrequencyPenalty * generatedCount[id] + options.PresencePenalty);
                }
            return adjusted;
        }
    }
}
