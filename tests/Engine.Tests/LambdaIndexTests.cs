namespace TauCluster.Engine.Tests;

/// <summary>The λ index against the dense softmax it replaces: exact up to rounding, at any length and temperature.</summary>
public sealed class LambdaIndexTests
{
    private const int Width = 16;

    private static (float[] Lambdas, float[] Values) Keys(int count, bool nearOne, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var lambdas = new float[count];
        for (int i = 0; i < count; i++)
            lambdas[i] = nearOne
                ? (float)(1 - Math.Exp(Math.Log(1e-5) + rng.NextDouble() * (Math.Log(0.06) - Math.Log(1e-5))))   // 0.94 … 0.99999, as median τ gives
                : (float)rng.NextDouble();
        var values = new float[count * Width];
        for (int i = 0; i < values.Length; i++) values[i] = (float)rng.NextGaussian();
        return (lambdas, values);
    }

    private static LambdaIndex Build(float[] lambdas, float[] values, float temperature, int count = -1, float slope = 0)
    {
        var index = new LambdaIndex(Width, temperature, slope);
        for (int i = 0; i < (count < 0 ? lambdas.Length : count); i++) index.Add(lambdas[i], values.AsSpan(i * Width, Width));
        return index;
    }

    /// <summary>The exact answer, in double: Σ softmax(−|λq − λj|/T − m·(i − j)) vⱼ for the query at i = count − 1.</summary>
    private static double[] Exact(float[] lambdas, float[] values, int count, float lambdaQuery, float temperature, float slope = 0)
    {
        var scores = new double[count];
        for (int j = 0; j < count; j++) scores[j] = -Math.Abs((double)lambdaQuery - lambdas[j]) / temperature - slope * (double)(count - 1 - j);
        double max = scores.Max(), sum = 0;
        var result = new double[Width];
        for (int j = 0; j < count; j++)
        {
            double w = Math.Exp(scores[j] - max);
            sum += w;
            for (int i = 0; i < Width; i++) result[i] += w * values[j * Width + i];
        }
        return result.Select(r => r / sum).ToArray();
    }

    private static double RelativeError(ReadOnlySpan<float> actual, double[] expected)
    {
        double scale = expected.Max(Math.Abs), worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        return worst / Math.Max(scale, 1e-30);
    }

    private static IEnumerable<float> Queries(float[] lambdas, int count, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        float lo = lambdas.Take(count).Min(), hi = lambdas.Take(count).Max();
        yield return lambdas[0];                        // exactly on a key
        yield return lambdas[count - 1];
        yield return lo - 0.25f;                        // below every key: every weight is tiny, the softmax is not
        yield return hi + 0.25f;
        for (int i = 0; i < 6; i++) yield return lo + (float)rng.NextDouble() * (hi - lo);
    }

    public static TheoryData<int, float, bool> Cases()
    {
        var data = new TheoryData<int, float, bool>();
        foreach (int count in new[] { 1, 2, 63, 64, 65, 200, 1000, 4097, 65536 })
            foreach (float temperature in new[] { 1e-4f, 1e-2f, 1f, 10f })
                foreach (bool nearOne in new[] { false, true })
                    if (count < 65536 || temperature is 1e-4f or 1f) data.Add(count, temperature, nearOne);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Index_equals_the_dense_softmax_within_one_part_in_a_hundred_thousand(int count, float temperature, bool nearOne)
    {
        var (lambdas, values) = Keys(count, nearOne, (ulong)count * 31 + (nearOne ? 7UL : 0));
        var index = Build(lambdas, values, temperature);
        Assert.Equal(count, index.Count);
        var output = new float[Width];
        foreach (float q in Queries(lambdas, count, 3))
        {
            index.Attend(q, output);
            double error = RelativeError(output, Exact(lambdas, values, count, q, temperature));
            Assert.True(error <= 1e-5, $"T = {count}, temperature {temperature}, λq = {q}: relative error {error:E2}");
        }
    }

    public static TheoryData<int, float, float> RecencyCases()
    {
        var data = new TheoryData<int, float, float>();
        // Slopes from ALiBi's smallest for 8 heads to its largest, and one so steep that a few keys back are nothing.
        foreach (int count in new[] { 1, 65, 200, 1000, 4097, 20000 })
            foreach (float temperature in new[] { 1e-3f, 2e-2f, 1f })
                foreach (float slope in new[] { 1f / 256, 1f / 16, 0.25f, 4f })
                    if (count < 20000 || temperature == 2e-2f) data.Add(count, temperature, slope);
        return data;
    }

    [Theory]
    [MemberData(nameof(RecencyCases))]
    public void Index_with_a_recency_bias_equals_the_dense_softmax_with_it(int count, float temperature, float slope)
    {
        var (lambdas, values) = Keys(count, nearOne: false, (ulong)count * 17 + 3);
        var index = Build(lambdas, values, temperature, slope: slope);
        var output = new float[Width];
        foreach (float q in Queries(lambdas, count, 4))
        {
            index.Attend(q, output);
            double error = RelativeError(output, Exact(lambdas, values, count, q, temperature, slope));
            Assert.True(error <= 1e-5, $"T = {count}, temperature {temperature}, slope {slope}, λq = {q}: relative error {error:E2}");
        }
        // Truncated and copied, it answers as one built fresh, as without the bias.
        if (count < 130) return;
        var fresh = Build(lambdas, values, temperature, count - 70, slope);
        var truncated = Build(lambdas, values, temperature, slope: slope);
        truncated.Truncate(count - 70);
        var copied = index.CopyPrefix(count - 70);
        var expected = new float[Width];
        foreach (float q in Queries(lambdas, count - 70, 5))
        {
            fresh.Attend(q, expected);
            truncated.Attend(q, output);
            Assert.Equal(expected, output);
            copied.Attend(q, output);
            Assert.Equal(expected, output);
        }
    }

    [Fact]
    public void A_recency_bias_changes_the_answer_and_no_bias_is_what_it_always_was()
    {
        var (lambdas, values) = Keys(3000, nearOne: false, 8);
        var (plain, biased, zero) = (new float[Width], new float[Width], new float[Width]);
        Build(lambdas, values, 0.02f).Attend(0.5f, plain);
        Build(lambdas, values, 0.02f, slope: 0.05f).Attend(0.5f, biased);
        Build(lambdas, values, 0.02f, slope: 0f).Attend(0.5f, zero);
        Assert.Equal(plain, zero);
        Assert.NotEqual(plain, biased);
    }

    [Theory]
    [InlineData(TauRecency.None)]
    [InlineData(TauRecency.Alibi)]
    public void Index_and_the_dense_float_path_agree_through_a_gqa_model(TauRecency recency)
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, 4, 2, embd: 64, layers: 2, temperature: 0.02, sequenceLen: 1024);
        config = config with { Taumode = config.Taumode! with { Recency = recency } };
        var model = TauModel.CreateRandom(config, 12);
        var tokens = TestSupport.RandomTokens(700, config.VocabSize, 4);
        var indexed = new InferenceSession(model).AppendAllLogits(tokens);
        var dense = new InferenceSession(model, tauPath: TauAttentionPath.Dense).AppendAllLogits(tokens);
        float worst = 0;
        for (int i = 0; i < indexed.Length; i++) worst = Math.Max(worst, Math.Abs(indexed[i] - dense[i]));
        Assert.True(worst <= 1e-4f, $"logits differ by {worst}");
    }

    /// <summary>Head dimensions from 32 up: each key's λ and position take 2 floats of (K, V)'s 2D, so D = 16 cannot fit in 0.55.</summary>
    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(384)]
    public void Index_memory_stays_under_055_of_a_key_value_cache(int width)
    {
        foreach (int count in new[] { 1, 64, 1000, 4097 })
        {
            var index = new LambdaIndex(width, 1f);
            var value = new float[width];
            var rng = new Xoshiro256(1);
            for (int i = 0; i < count; i++) index.Add((float)rng.NextDouble(), value);
            long keyValue = (long)count * 2 * width * sizeof(float);
            Assert.True(index.Bytes <= 0.55 * keyValue, $"D = {width}, T = {count}: {index.Bytes} bytes against {keyValue} for (K, V)");
            Assert.True(index.Bytes >= (long)count * (width + 1) * sizeof(float));
        }
    }

    [Theory]
    [InlineData(1000, 333)]
    [InlineData(1000, 640)]
    [InlineData(4096, 4095)]
    [InlineData(130, 0)]
    public void Truncated_and_copied_indexes_answer_bitwise_as_if_built_fresh(int count, int keep)
    {
        var (lambdas, values) = Keys(count, nearOne: false, 5);
        var fresh = Build(lambdas, values, 0.05f, keep);
        var truncated = Build(lambdas, values, 0.05f);
        truncated.Truncate(keep);
        var copied = Build(lambdas, values, 0.05f).CopyPrefix(keep);
        Assert.Equal(keep, truncated.Count);
        Assert.Equal(keep, copied.Count);
        if (keep == 0) return;
        var expected = new float[Width];
        var actual = new float[Width];
        foreach (float q in Queries(lambdas, keep, 9))
        {
            fresh.Attend(q, expected);
            truncated.Attend(q, actual);
            Assert.Equal(expected, actual);
            copied.Attend(q, actual);
            Assert.Equal(expected, actual);
        }

        // Growing again after the cut gives what growing straight through gives.
        for (int i = keep; i < count; i++) truncated.Add(lambdas[i], values.AsSpan(i * Width, Width));
        var straight = Build(lambdas, values, 0.05f);
        foreach (float q in Queries(lambdas, count, 10))
        {
            straight.Attend(q, expected);
            truncated.Attend(q, actual);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void A_query_far_from_every_key_at_tiny_temperature_is_still_a_proper_average()
    {
        var index = new LambdaIndex(2, 1e-4f);
        index.Add(0.125f, [1, 0]);
        index.Add(0.375f, [0, 1]);
        var output = new float[2];
        index.Attend(0.875f, output);   // every weight is below e^{−5000}: only the nearest key matters
        Assert.Equal([0f, 1f], output);
        index.Attend(0.25f, output);    // exactly between (all three are exact in binary): an even split
        Assert.Equal([0.5f, 0.5f], output);
    }
}
