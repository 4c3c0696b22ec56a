using Xunit.Abstractions;

namespace TauCluster.Engine.Tests;

public sealed class ForwardPassTests(ITestOutputHelper output)
{
    public static TheoryData<AttentionKind, int, int, ulong> Shapes() => new()
    {
        { AttentionKind.Tau, 2, 2, 1 }, { AttentionKind.Tau, 4, 2, 2 }, { AttentionKind.Tau, 4, 1, 3 },
        { AttentionKind.Causal, 2, 2, 4 }, { AttentionKind.Causal, 4, 2, 5 }, { AttentionKind.Causal, 4, 1, 6 },
    };

    /// <summary>Decoding token t after a prefill of 0…t−1 gives row t of a full prefill.</summary>
    private void AssertDecodeMatchesPrefill(TauModel model, int length, ulong seed)
    {
        int vocab = model.Config.VocabSize;
        var tokens = TestSupport.RandomTokens(length, vocab, seed);
        var full = new InferenceSession(model).AppendAllLogits(tokens);

        foreach (int t in new[] { 1, length / 3, length / 2 + 1, length - 1 })
        {
            var session = new InferenceSession(model);
            session.Append(tokens.AsSpan(0, t));
            var decoded = session.Append(tokens[t]);
            float diff = TestSupport.MaxAbsDiff(decoded, full.AsSpan(t * vocab, vocab));
            Assert.True(diff <= 1e-4f, $"decode of token {t} differs from prefill row {t} by {diff}");
            // Stronger than the bound: every row is computed alike however it is blocked, so failover replay (a prefill)
            // gives a decoded session's numbers bitwise.
            Assert.Equal(full.AsSpan(t * vocab, vocab).ToArray(), decoded.ToArray());
        }

        // One token at a time all the way equals the full prefill too, bitwise.
        var stepwise = new InferenceSession(model);
        for (int t = 0; t < length; t++)
            Assert.Equal(full.AsSpan(t * vocab, vocab).ToArray(), stepwise.Append(tokens[t]).ToArray());
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Decode_after_prefill_equals_full_prefill_row_with_chain_laplacian(AttentionKind attention, int heads, int kvHeads, ulong seed)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, heads, kvHeads), seed);
        AssertDecodeMatchesPrefill(model, 40, seed * 7);
    }

    [SkippableTheory]
    [InlineData(2, 2, 11UL)]
    [InlineData(2, 1, 12UL)]
    [InlineData(1, 1, 13UL)]
    public void Decode_after_prefill_equals_full_prefill_row_on_real_manifold(int heads, int kvHeads, ulong seed)
    {
        var manifold = TestSupport.RealManifold();
        var config = TestSupport.SmallConfig(AttentionKind.Tau, heads, kvHeads, embd: 384 * heads, layers: 2, mode: null);
        var model = TauModel.CreateRandom(config, seed, manifold);
        Assert.Equal(TaumodeKind.Median, model.DefaultDomain!.Settings.Mode);   // taumode.mode absent: the manifold's own mode
        AssertDecodeMatchesPrefill(model, 24, seed);
    }

    /// <summary>
    /// Failover replays a session's tokens as a prefill, in blocks of <see cref="InferenceSession.PrefillBlock"/>, while
    /// the session it replaces decoded them one at a time: every row must come out bitwise the same across the block
    /// boundaries, for both attentions and for the λ index past its first runs.
    /// </summary>
    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense)]
    public void Prefill_across_blocks_gives_bitwise_the_logits_of_token_by_token_decode(AttentionKind attention, TauAttentionPath path)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 2, 1, layers: 2, sequenceLen: 1024), 21);
        int vocab = model.Config.VocabSize;
        var tokens = TestSupport.RandomTokens(2 * InferenceSession.PrefillBlock + 37, vocab, 5);
        var prefilled = new InferenceSession(model, tauPath: path).AppendAllLogits(tokens);

        var stepwise = new InferenceSession(model, tauPath: path);
        for (int t = 0; t < tokens.Length; t++)
            Assert.True(prefilled.AsSpan(t * vocab, vocab).SequenceEqual(stepwise.Append(tokens[t])),
                $"row {t} differs (max {TestSupport.MaxAbsDiff(prefilled.AsSpan(t * vocab, vocab), stepwise.Logits)}) between the blocked prefill and decode");

        // A replay that resumes mid-block (a session cut and run again from a checkpoint) agrees too.
        var resumed = new InferenceSession(model, tauPath: path);
        resumed.Append(tokens.AsSpan(0, InferenceSession.PrefillBlock - 7));
        var rest = resumed.AppendAllLogits(tokens.AsSpan(InferenceSession.PrefillBlock - 7));
        Assert.Equal(prefilled.AsSpan((InferenceSession.PrefillBlock - 7) * vocab).ToArray(), rest);
        Assert.Equal(tokens.Length, resumed.Cache.Length);
    }

    public static TheoryData<AttentionKind, int, int, TaumodeKind, double> ReferenceCases() => new()
    {
        { AttentionKind.Tau, 2, 2, TaumodeKind.Fixed, 1.0 },
        { AttentionKind.Tau, 4, 2, TaumodeKind.Median, 0.05 },
        { AttentionKind.Tau, 4, 1, TaumodeKind.Mean, 0.01 },
        { AttentionKind.Tau, 2, 1, TaumodeKind.Percentile, 0.1 },
        { AttentionKind.Causal, 4, 2, TaumodeKind.Fixed, 1.0 },
    };

    /// <summary>The engine agrees with an independent double-precision implementation of DESIGN.md §1.</summary>
    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void Logits_match_independent_double_precision_reference(AttentionKind attention, int heads, int kvHeads, TaumodeKind mode, double temperature)
    {
        var config = TestSupport.SmallConfig(attention, heads, kvHeads, embd: 32, layers: 2, vocab: 61, mode: mode, temperature: temperature) with
        {
            Taumode = new TaumodeConfig(Mode: mode, Tau: 0.7, Temperature: temperature, Percentile: 0.8),
        };
        var model = TauModel.CreateRandom(config, 99);
        var tokens = TestSupport.RandomTokens(12, config.VocabSize, 3);
        var engine = new InferenceSession(model).AppendAllLogits(tokens);
        // The reference takes its settings and its Laplacian from the test case, not from the engine's resolution:
        // a random model's Laplacian is the chain on the head dimension; eps is DESIGN.md's default.
        var settings = new TaumodeSettings(mode, Tau: 0.7, Eps: 1e-6, temperature, Percentile: 0.8);
        var laplacian = attention == AttentionKind.Tau ? ReferenceModel.Chain(config.HeadDim) : null;
        var reference = new ReferenceModel(config, model.Weights, laplacian, settings).Forward(tokens);
        AssertWithinReferenceTolerance(engine, reference, config.VocabSize);
    }

    /// <summary>The README's claim: the engine's logits lie within 5e-5 of the double-precision reference.</summary>
    private const double ReferenceTolerance = 5e-5;

    private void AssertWithinReferenceTolerance(float[] engine, double[][] reference, int vocab)
    {
        double worst = 0;
        for (int t = 0; t < reference.Length; t++)
            for (int v = 0; v < vocab; v++)
                worst = Math.Max(worst, Math.Abs(engine[t * vocab + v] - reference[t][v]));
        output.WriteLine($"max |engine − reference| = {worst:E3}");
        Assert.True(worst <= ReferenceTolerance, $"engine differs from the double-precision reference by {worst}");
    }

    [SkippableFact]
    public void Logits_match_reference_on_real_manifold()
    {
        var manifold = TestSupport.RealManifold();
        var config = TestSupport.SmallConfig(AttentionKind.Tau, 1, 1, embd: 384, layers: 1, vocab: 40, mode: null, temperature: 1e-3);
        var model = TauModel.CreateRandom(config, 5, manifold);
        var tokens = TestSupport.RandomTokens(6, config.VocabSize, 8);
        var engine = new InferenceSession(model).AppendAllLogits(tokens);
        // taumode.mode is absent, so τ follows the manifold's own mode, median (its metadata, checked in LaplacianTests).
        var settings = new TaumodeSettings(TaumodeKind.Median, Tau: 1.0, Eps: 1e-6, Temperature: 1e-3, Percentile: 0.5);
        var reference = new ReferenceModel(config, model.Weights, ReferenceModel.Dense(manifold), settings).Forward(tokens);
        AssertWithinReferenceTolerance(engine, reference, config.VocabSize);
    }

    [Fact]
    public void Same_tokens_give_bitwise_identical_logits_with_and_without_the_kernel_pool()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 4, 2, embd: 128, vocab: 5000), 8);
        var tokens = TestSupport.RandomTokens(64, model.Config.VocabSize, 9);
        var pooled = new InferenceSession(model, pool: new KernelPool(3)).AppendAllLogits(tokens);
        var inline = new InferenceSession(model, pool: new KernelPool(0)).AppendAllLogits(tokens);
        Assert.Equal(inline, pooled);
    }

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Copied_prefix_continues_exactly_and_independently(AttentionKind attention)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 2, 1), 17);
        var prompt = TestSupport.RandomTokens(300, model.Config.VocabSize, 1);
        var parent = new InferenceSession(model);
        var parentLogits = parent.Append(prompt).ToArray();

        var child = parent.CopyPrefix(parent.Length - 1);
        Assert.Equal(299, child.Cache.Length);
        Assert.Equal(parentLogits, child.Append(prompt[^1]).ToArray());   // bitwise: the copy is the same cache

        var childNext = child.Append(5).ToArray();
        var parentNext = parent.Append(6).ToArray();
        var fresh = new InferenceSession(model);
        fresh.Append(prompt);
        Assert.Equal(fresh.Append(6).ToArray(), parentNext);              // the child's growth did not touch the parent
        Assert.NotEqual(parentNext, childNext);
        Assert.Equal(301, child.Length);
    }
}
