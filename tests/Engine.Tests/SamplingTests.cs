namespace TauCluster.Engine.Tests;

public sealed class SamplingTests
{
    private static float[] RandomLogits(int n, ulong seed) => TestSupport.RandomVector(n, seed, rmsNormalise: false).Select(v => v * 3).ToArray();

    private static int[] Draw(Sampler sampler, float[] logits, int count) => Enumerable.Range(0, count).Select(_ => sampler.Sample(logits)).ToArray();

    [Fact]
    public void Greedy_takes_the_highest_logit_and_the_lowest_id_on_ties()
    {
        var sampler = new Sampler(5, SamplingOptions.Greedy);
        Assert.Equal(3, sampler.Sample([0f, 1f, 2f, 5f, 4f]));
        Assert.Equal(1, sampler.Sample([0f, 5f, 2f, 5f, 5f]));
    }

    /// <summary>
    /// Top-k keeps exactly the ids whose logit is at or above the k-th largest, ties included, with −0 ranked below +0
    /// as the sort keys rank them: checked against a full sort, on logits with many ties, signed zeros and lengths that
    /// are not a multiple of the vector width.
    /// </summary>
    [Theory]
    [InlineData(1, 1000, 1UL)]
    [InlineData(40, 50257, 2UL)]
    [InlineData(7, 13, 3UL)]
    [InlineData(100, 1003, 4UL)]
    [InlineData(40, 50257, 5UL)]
    public void Top_k_keeps_the_ids_at_or_above_the_kth_largest_logit(int k, int n, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var logits = Enumerable.Range(0, n).Select(_ => rng.NextDouble() switch
        {
            < 0.05 => 0f,
            < 0.10 => -0f,
            < 0.40 => MathF.Round((float)rng.NextGaussian() * 4),   // ties
            _ => (float)rng.NextGaussian() * 4,
        }).ToArray();
        if (seed == 5) logits[^1] = 1000;   // the largest in the tail the vector loop leaves

        static long Key(float v, int id) => ((long)BitConverter.SingleToInt32Bits(v) switch { var b => b >= 0 ? ~b : ~(b ^ int.MaxValue) } << 32) | (uint)id;
        var sorted = logits.Select((v, id) => Key(v, id)).Order().ToArray();
        int kthKey = (int)(sorted[k - 1] >> 32);
        var expected = sorted.Where(key => (int)(key >> 32) <= kthKey).ToArray();

        var order = new long[n];
        int kept = Sampler.TopK(logits, new int[k], order);
        Assert.Equal(expected, order.Take(kept).Order());
        Assert.True(kept >= k);
    }

    [Fact]
    public void Same_seed_gives_the_same_draws_and_another_seed_does_not()
    {
        var logits = RandomLogits(1000, 1);
        var options = new SamplingOptions(Temperature: 0.9, TopK: 50, TopP: 0.95, Seed: 1234);
        var a = Draw(new Sampler(1000, options), logits, 200);
        Assert.Equal(a, Draw(new Sampler(1000, options), logits, 200));
        Assert.NotEqual(a, Draw(new Sampler(1000, options with { Seed = 1235 }), logits, 200));
    }

    [Fact]
    public void Restored_generator_state_continues_exactly_where_it_was_saved()
    {
        var logits = RandomLogits(300, 2);
        var options = new SamplingOptions(Temperature: 1.2, Seed: 9);
        var uninterrupted = Draw(new Sampler(300, options), logits, 100);

        var first = new Sampler(300, options);
        var head = Draw(first, logits, 37);
        var resumed = new Sampler(300, options, first.State);   // e.g. on another silo
        Assert.Equal(uninterrupted, head.Concat(Draw(resumed, logits, 63)));
    }

    [Fact]
    public void Top_k_keeps_only_the_k_highest_logits_and_their_ties()
    {
        float[] logits = [1f, 9f, 3f, 7f, 7f, 2f, 8f];
        var sampler = new Sampler(logits.Length, new SamplingOptions(Temperature: 5, TopK: 3, Seed: 3));
        var drawn = Draw(sampler, logits, 3000).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 6, 3, 4 }, drawn);   // 9, 8 and both 7s (ties at the k-th)
        Assert.All(Draw(new Sampler(logits.Length, new SamplingOptions(1, TopK: 1, Seed: 4)), logits, 50), t => Assert.Equal(1, t));
    }

    [Fact]
    public void Top_p_keeps_the_smallest_prefix_reaching_p()
    {
        // probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1
        float[] logits = [MathF.Log(0.125f), MathF.Log(0.5f), MathF.Log(0.125f), MathF.Log(0.25f)];
        var drawn = Draw(new Sampler(4, new SamplingOptions(1, TopP: 0.7, Seed: 5)), logits, 3000);
        Assert.Equal(new HashSet<int> { 1, 3 }, drawn.ToHashSet());
        Assert.InRange(drawn.Count(t => t == 1) / 3000.0, 0.62, 0.71);   // 0.5 / 0.75 renormalised
        Assert.All(Draw(new Sampler(4, new SamplingOptions(1, TopP: 0.01, Seed: 6)), logits, 50), t => Assert.Equal(1, t));
    }

    [Fact]
    public void Temperature_sampling_follows_the_softmax_distribution()
    {
        float[] logits = [0f, MathF.Log(3f)];   // p = 0.25, 0.75
        var drawn = Draw(new Sampler(2, new SamplingOptions(1, Seed: 7)), logits, 20000);
        Assert.InRange(drawn.Count(t => t == 1) / 20000.0, 0.74, 0.76);
        // at temperature 2 the odds are √3 : 1
        var warm = Draw(new Sampler(2, new SamplingOptions(2, Seed: 8)), logits, 20000);
        Assert.InRange(warm.Count(t => t == 1) / 20000.0, Math.Sqrt(3) / (1 + Math.Sqrt(3)) - 0.01, Math.Sqrt(3) / (1 + Math.Sqrt(3)) + 0.01);
    }

    [Theory]
    [InlineData(-0.1, 0, 1.0, "temperature")]
    [InlineData(double.NaN, 0, 1.0, "temperature")]
    [InlineData(1.0, -1, 1.0, "top_k")]
    [InlineData(1.0, 0, 0.0, "top_p")]
    [InlineData(1.0, 0, 1.5, "top_p")]
    [InlineData(1.0, 0, -0.2, "top_p")]
    public void Invalid_sampling_options_are_rejected(double temperature, int topK, double topP, string field)
    {
        var e = Assert.Throws<InvalidOptionsException>(() => new Sampler(10, new SamplingOptions(temperature, topK, topP)));
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Model_generation_is_deterministic_for_a_seed()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1), 3);
        int[] Generate(ulong seed)
        {
            var session = new InferenceSession(model);
            var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.8, 20, 0.9, seed));
            var logits = session.Append([1, 2, 3]);
            var output = new List<int>();
            for (int i = 0; i < 30; i++)
            {
                int next = sampler.Sample(logits);
                output.Add(next);
                logits = session.Append(next);
            }
            return output.ToArray();
        }
        Assert.Equal(Generate(11), Generate(11));
        Assert.NotEqual(Generate(11), Generate(12));
    }
}
