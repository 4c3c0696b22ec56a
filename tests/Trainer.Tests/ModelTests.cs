using TauCluster.Engine;
using Xunit.Abstractions;
using static TauCluster.Training.Tests.GradientCheck;

namespace TauCluster.Training.Tests;

/// <summary>The whole model: its gradient against finite differences, and its forward against the Engine's inference.</summary>
public sealed class ModelTests(ITestOutputHelper output)
{
    /// <summary>2 layers, C = 16, 4 query heads sharing 2 kv heads (D = 4), vocabulary 11, fixed τ (its gradient is exact).</summary>
    private static ModelConfig TinyConfig(AttentionKind attention, int sequenceLength = 6) => new ModelConfig(
        VocabSize: 11, NLayer: 2, NHead: 4, NKvHead: 2, NEmbd: 16, SequenceLen: sequenceLength, Softcap: 15, Attention: attention,
        Taumode: new TaumodeConfig(Mode: TaumodeKind.Fixed, Tau: 1.0, Temperature: 0.25), Tokenizer: null).Validate();

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Whole_model_gradient_matches_finite_differences_with_gqa_and_two_sequences(AttentionKind attention) =>
        AssertGradientMatches(TinyConfig(attention), $"{attention} model", seed: 7);

    /// <summary>
    /// The analytic gradient of two sequences of 6 (repeated tokens: their embedding rows add up) against finite
    /// differences, at a random sample of every tensor plus every component of the embedding rows the tokens use.
    /// </summary>
    private static void AssertGradientMatches(ModelConfig config, string what, ulong seed)
    {
        var engine = TauModel.CreateRandom(config, seed);   // every weight random, the projections included
        var gpt = new Gpt<double>(config, engine.DefaultDomain, maxSequences: 2, sequenceLength: 6, threads: 1);
        gpt.LoadWeights(engine.Weights);
        int[] tokens = [1, 4, 4, 7, 2, 9, 3, 3, 10, 0, 4, 5];
        int[] targets = [4, 4, 7, 2, 9, 3, 3, 10, 0, 4, 5, 6];
        gpt.Forward(tokens, targets);
        gpt.Backward();
        var analytic = gpt.Gradients.ToArray();

        var rng = new Xoshiro256(seed + 1);
        var indices = new SortedSet<int>();
        foreach (var t in gpt.Layout.Tensors)
            for (int i = 0; i < 24; i++) indices.Add(t.Offset + (int)(rng.NextUInt64() % (ulong)t.Length));
        foreach (int token in tokens.Distinct())
            for (int c = 0; c < config.NEmbd; c++) indices.Add(gpt.Layout.Embedding.Offset + token * config.NEmbd + c);

        AssertMatches(what, () => gpt.Forward(tokens, targets), gpt.Parameters, analytic, indices);
    }

    [Fact]
    public void Gradients_are_the_same_bits_on_one_thread_and_on_several()
    {
        var config = TinyConfig(AttentionKind.Tau, 32) with { NEmbd = 64, NHead = 2, NKvHead = 1, VocabSize = 256 };
        var engine = TauModel.CreateRandom(config, 3);
        var tokens = Enumerable.Range(0, 4 * 32).Select(i => (i * 37 + 11) % 256).ToArray();
        var targets = tokens.Select(t => (t * 5 + 1) % 256).ToArray();
        float[] GradientsWith(int threads)
        {
            var gpt = new Gpt<float>(config, engine.DefaultDomain, 4, 32, threads);
            gpt.LoadWeights(engine.Weights);
            gpt.Forward(tokens, targets);
            gpt.Backward();
            return gpt.Gradients;
        }
        Assert.Equal(GradientsWith(1), GradientsWith(3));
    }

    public static TheoryData<AttentionKind, int, int, ulong> Shapes() => new()
    {
        { AttentionKind.Tau, 2, 2, 1 }, { AttentionKind.Tau, 4, 2, 2 }, { AttentionKind.Tau, 4, 1, 3 },
        { AttentionKind.Causal, 2, 2, 4 }, { AttentionKind.Causal, 4, 2, 5 }, { AttentionKind.Causal, 4, 1, 6 },
    };

    private static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    private void AssertSameLogitsAsEngine(TauModel model, int length, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var tokens = Enumerable.Range(0, length).Select(_ => (int)(rng.NextUInt64() % (ulong)model.Config.VocabSize)).ToArray();
        var gpt = new Gpt<float>(model.Config, model.DefaultDomain, 1, length);
        gpt.LoadWeights(model.Weights);
        gpt.Forward(tokens, tokens);
        var ours = gpt.Logits.ToArray();

        var index = new InferenceSession(model).AppendAllLogits(tokens);
        output.WriteLine($"max |training − inference| = {MaxAbsDiff(ours, index):E2} over logits up to {ours.Max(Math.Abs):F2}");
        Assert.True(MaxAbsDiff(ours, index) <= 1e-4f, $"training forward differs from inference by {MaxAbsDiff(ours, index)}");
        if (model.Config.Attention == AttentionKind.Tau)
        {
            var dense = new InferenceSession(model, tauPath: TauAttentionPath.Dense).AppendAllLogits(tokens);
            Assert.True(MaxAbsDiff(ours, dense) <= 1e-4f, $"training forward differs from dense inference by {MaxAbsDiff(ours, dense)}");
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Training_forward_gives_the_engine_logits(AttentionKind attention, int heads, int kvHeads, ulong seed)
    {
        var config = new ModelConfig(VocabSize: 97, NLayer: 2, NHead: heads, NKvHead: kvHeads, NEmbd: 32, SequenceLen: 48, Softcap: 15,
            Attention: attention, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median)).Validate();
        AssertSameLogitsAsEngine(TauModel.CreateRandom(config, seed), 48, seed * 7);
    }

    [Fact]
    public void Training_forward_gives_the_engine_logits_on_a_manifold_laplacian()
    {
        var config = new ModelConfig(VocabSize: 64, NLayer: 2, NHead: 2, NKvHead: 1, NEmbd: 16, SequenceLen: 24, Softcap: 0,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Temperature: 0.2)).Validate();
        var model = TauModel.CreateRandom(config, 9, OperationGradientTests.RandomGraphLaplacian(8, 4));
        Assert.Equal(TaumodeKind.Median, model.DefaultDomain!.Settings.Mode);   // the manifold's own mode
        AssertSameLogitsAsEngine(model, 24, 10);
    }

    /// <summary>The ablation's variants of tau attention: λ of the unrotated head vectors, and ALiBi's recency bias.</summary>
    public static TheoryData<bool, TauRecency> Variants() => new()
    {
        { true, TauRecency.None }, { false, TauRecency.Alibi }, { true, TauRecency.Alibi },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void A_tau_variants_gradient_matches_finite_differences_and_its_forward_gives_the_engine_logits(bool lambdaBeforeRope, TauRecency recency)
    {
        var config = TinyConfig(AttentionKind.Tau) with
        {
            Taumode = TinyConfig(AttentionKind.Tau).Taumode! with { LambdaBeforeRope = lambdaBeforeRope, Recency = recency },
        };
        Assert.Equal(config, ModelConfig.Parse(config.ToJson()));   // config.json keeps the variant
        AssertGradientMatches(config, $"tau, λ before RoPE {lambdaBeforeRope}, recency {recency}", seed: 17);

        var longer = new ModelConfig(VocabSize: 97, NLayer: 2, NHead: 4, NKvHead: 2, NEmbd: 32, SequenceLen: 48, Softcap: 15,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.1,
                LambdaBeforeRope: lambdaBeforeRope, Recency: recency)).Validate();
        AssertSameLogitsAsEngine(TauModel.CreateRandom(longer, 19), 48, 20);
    }

    /// <summary>
    /// The variants whose λ has weights of its own: a learned temperature per kv head, a projection into F dimensions
    /// (D = 4 here: into more, into as many), and both, with ALiBi under the last.
    /// </summary>
    public static TheoryData<bool, int, TauRecency> LambdaWeightVariants() => new()
    {
        { true, 0, TauRecency.None }, { false, 6, TauRecency.None }, { false, 4, TauRecency.None }, { true, 6, TauRecency.Alibi },
    };

    [Theory]
    [MemberData(nameof(LambdaWeightVariants))]
    public void A_variant_with_lambda_weights_has_the_gradient_of_finite_differences_and_the_engine_logits(bool learnedTemperature, int projectionDim,
        TauRecency recency)
    {
        var tiny = TinyConfig(AttentionKind.Tau);
        var config = tiny with { Taumode = tiny.Taumode! with { LearnedTemperature = learnedTemperature, ProjectionDim = projectionDim, Recency = recency } };
        Assert.Equal(config, ModelConfig.Parse(config.ToJson()));
        Assert.Equal(projectionDim > 0 ? projectionDim : config.HeadDim, config.LambdaDim);
        AssertGradientMatches(config, $"tau, learned temperature {learnedTemperature}, projection {projectionDim}, recency {recency}", seed: 23);

        var longer = new ModelConfig(VocabSize: 97, NLayer: 2, NHead: 4, NKvHead: 2, NEmbd: 32, SequenceLen: 48, Softcap: 15,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.1,
                Recency: recency, LearnedTemperature: learnedTemperature, ProjectionDim: projectionDim == 0 ? 0 : 12)).Validate();
        AssertSameLogitsAsEngine(TauModel.CreateRandom(longer, 29), 48, 30);
    }

    [Fact]
    public void A_learned_gain_is_a_temperature_of_its_own()
    {
        // Gains of 2 everywhere at temperature 0.2 score as no gains at temperature 0.1 (doubling a float λ is exact).
        var config = new ModelConfig(VocabSize: 97, NLayer: 2, NHead: 4, NKvHead: 2, NEmbd: 32, SequenceLen: 40, Softcap: 15,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.2, LearnedTemperature: true)).Validate();
        var weights = ModelWeights.CreateRandom(config, 31);
        foreach (var layer in weights.Layers) Array.Fill(layer.LambdaLogGain!, MathF.Log(2));
        var learned = TauModel.Create(config, weights);
        var plain = TauModel.Create(config with { Taumode = config.Taumode! with { Temperature = 0.1, LearnedTemperature = false } }, learned.Weights);
        var tokens = Enumerable.Range(0, 40).Select(i => i * 11 % 97).ToArray();
        float[] learnedLogits = new InferenceSession(learned).AppendAllLogits(tokens), plainLogits = new InferenceSession(plain).AppendAllLogits(tokens);
        Assert.True(MaxAbsDiff(learnedLogits, plainLogits) <= 1e-5f, $"differ by {MaxAbsDiff(learnedLogits, plainLogits)}");
        var untrained = TauModel.Create(config with { Taumode = config.Taumode! with { LearnedTemperature = false } }, learned.Weights);
        Assert.True(MaxAbsDiff(learnedLogits, new InferenceSession(untrained).AppendAllLogits(tokens)) > 1e-3f);
    }

    [Fact]
    public void The_variants_change_what_the_model_computes()
    {
        // Each switch must reach the forward pass: otherwise the ablation would compare a model with itself.
        var config = new ModelConfig(VocabSize: 97, NLayer: 2, NHead: 2, NKvHead: 2, NEmbd: 32, SequenceLen: 32, Softcap: 15,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.1)).Validate();
        var tokens = Enumerable.Range(0, 32).Select(i => i * 13 % 97).ToArray();
        float[] Logits(TaumodeConfig taumode) =>
            new InferenceSession(TauModel.CreateRandom(config with { Taumode = taumode }, 21)).AppendAllLogits(tokens);
        var seed = Logits(config.Taumode!);
        Assert.True(MaxAbsDiff(seed, Logits(config.Taumode! with { LambdaBeforeRope = true })) > 1e-3f);
        Assert.True(MaxAbsDiff(seed, Logits(config.Taumode! with { Recency = TauRecency.Alibi })) > 1e-3f);
    }

    [Fact]
    public void Alibi_slopes_halve_geometrically_across_the_kv_heads()
    {
        var alibi = new TaumodeConfig(Recency: TauRecency.Alibi);
        Assert.Equal([0.25f, 0.0625f, 0.015625f, 0.00390625f], Enumerable.Range(0, 4).Select(g => alibi.RecencySlope(g, 4)));
        Assert.Equal(0f, new TaumodeConfig().RecencySlope(0, 4));
    }

    [Fact]
    public void Double_and_float_training_forwards_agree()
    {
        var config = TinyConfig(AttentionKind.Tau, 16);
        var model = TauModel.CreateRandom(config, 12);
        var tokens = Enumerable.Range(0, 32).Select(i => i * 7 % 11).ToArray();
        var f = new Gpt<float>(config, model.DefaultDomain, 2, 16);
        var d = new Gpt<double>(config, model.DefaultDomain, 2, 16);
        f.LoadWeights(model.Weights);
        d.LoadWeights(model.Weights);
        Assert.Equal(d.Forward(tokens, tokens), f.Forward(tokens, tokens), 4);
        var fl = f.Logits.ToArray();
        var dl = d.Logits.ToArray();
        for (int i = 0; i < fl.Length; i++) Assert.True(Math.Abs(fl[i] - dl[i]) <= 1e-4, $"logit {i}: {fl[i]} vs {dl[i]}");
    }

    [Fact]
    public void Float_matrix_product_kernels_equal_the_reference_on_odd_shapes_and_transposed_views()
    {
        foreach (var (m, n, k) in new[] { (70, 80, 300), (13, 37, 5), (8, 32, 1), (64, 128, 256), (9, 48, 257) })
            foreach (bool transposedA in new[] { false, true })
                foreach (bool accumulate in new[] { false, true })
                {
                    var a = Random(m * k, 60).Select(v => (float)v).ToArray();
                    var b = Random(k * n, 61).Select(v => (float)v).ToArray();
                    var c = Random(m * n, 62).Select(v => (float)v).ToArray();
                    var start = (float[])c.Clone();
                    var viewA = transposedA ? Matrix<float>.Dense(a, k, m).Transposed : Matrix<float>.Dense(a, m, k);
                    Gemm.Multiply(viewA, Matrix<float>.Dense(b, k, n), Matrix<float>.Dense(c, m, n), accumulate,
                        new ParallelOptions { MaxDegreeOfParallelism = 2 });
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double expected = accumulate ? start[i * n + j] : 0;
                            for (int p = 0; p < k; p++) expected += (double)viewA[i, p] * b[p * n + j];
                            Assert.True(Math.Abs(expected - c[i * n + j]) <= 1e-4 * (1 + Math.Abs(expected)), $"{m}×{n}×{k} [{i},{j}]: {c[i * n + j]} vs {expected}");
                        }
                }
    }
}
