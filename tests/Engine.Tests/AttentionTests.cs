using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace TauCluster.Engine.Tests;

/// <summary>Tau attention on hand-set λ with one-hot values: the seed's synthetic tasks, stability, cache sizes.</summary>
public sealed class AttentionTests
{
    private const float SharpTemperature = 1e-3f;

    /// <summary>A one-layer, one-kv-head tau cache whose values are one-hot over <paramref name="vocab"/> tokens.</summary>
    private static DenseTauCache OneHotCache(int vocab, double temperature = SharpTemperature)
    {
        var config = new ModelConfig(VocabSize: vocab, NLayer: 1, NHead: 1, NKvHead: 1, NEmbd: vocab, SequenceLen: 1 << 16,
            Taumode: new TaumodeConfig(Mode: TaumodeKind.Fixed, Temperature: temperature)).Validate();
        return new DenseTauCache(config, config.TaumodeOrDefault.Resolve(Laplacian.Chain(vocab)));
    }

    private static void Add(DenseTauCache cache, float lambda, int token, int vocab)
    {
        Span<float> oneHot = stackalloc float[vocab];
        oneHot[token] = 1;
        cache.AppendLambda(0, 0, lambda, oneHot);
    }

    private static int Retrieve(DenseTauCache cache, float lambdaQuery, int keyCount, int vocab)
    {
        var scores = new float[keyCount];
        var output = new float[vocab];
        cache.AttendLambda(0, 0, lambdaQuery, keyCount, scores, output);
        return Sampler.ArgMax(output);
    }

    private static float Code(int symbol, int symbols, float lo = 0f, float hi = 1f) => lo + (hi - lo) * (symbol + 0.5f) / symbols;

    [Fact]
    public void Copy_task_recalls_the_token_at_any_position()
    {
        const int vocab = 64, length = 256;
        var rng = new Xoshiro256(1);
        int trials = 0, correct = 0;
        for (int run = 0; run < 8; run++)
        {
            var cache = OneHotCache(vocab);
            var tokens = Enumerable.Range(0, length).Select(_ => (int)(rng.NextUInt64() % vocab)).ToArray();
            for (int p = 0; p < length; p++) Add(cache, Code(p, length), tokens[p], vocab);   // λ encodes the position
            for (int p = 0; p < length; p++, trials++)
                if (Retrieve(cache, Code(p, length), length, vocab) == tokens[p]) correct++;
        }
        Assert.True(correct >= 0.999 * trials, $"copy accuracy {correct}/{trials}");
    }

    [Fact]
    public void Associative_recall_returns_the_value_bound_to_a_key()
    {
        const int keys = 32, vocab = 64;
        var rng = new Xoshiro256(2);
        int trials = 0, correct = 0;
        for (int run = 0; run < 100; run++)
        {
            var cache = OneHotCache(vocab);
            var order = Enumerable.Range(0, keys).OrderBy(_ => rng.NextUInt64()).ToArray();
            var valueOf = order.ToDictionary(k => k, _ => keys + (int)(rng.NextUInt64() % keys));
            foreach (int k in order)
            {
                Add(cache, Code(k, keys, 0.5f, 1f), k, vocab);               // the key token itself, λ in the upper half
                Add(cache, Code(k, keys, 0f, 0.5f), valueOf[k], vocab);      // the value, λ coding the key before it
            }
            foreach (int k in order.Take(10))
            {
                trials++;
                if (Retrieve(cache, Code(k, keys, 0f, 0.5f), 2 * keys, vocab) == valueOf[k]) correct++;
            }
        }
        Assert.True(correct >= 0.999 * trials, $"associative recall accuracy {correct}/{trials}");
    }

    [Fact]
    public void Needle_in_a_haystack_is_found_wherever_it_is()
    {
        const int vocab = 32, length = 2048, needleToken = 31;
        var rng = new Xoshiro256(3);
        int trials = 0, correct = 0;
        for (int run = 0; run < 100; run++)
        {
            var cache = OneHotCache(vocab);
            int at = (int)(rng.NextUInt64() % length);
            for (int p = 0; p < length; p++)
            {
                if (p == at) Add(cache, 0.8f, needleToken, vocab);
                else Add(cache, (float)(rng.NextDouble() * 0.4), (int)(rng.NextUInt64() % (vocab - 1)), vocab);
            }
            trials++;
            if (Retrieve(cache, 0.8f, length, vocab) == needleToken) correct++;
        }
        Assert.True(correct >= 0.999 * trials, $"needle accuracy {correct}/{trials}");
    }

    [Fact]
    public void Induction_head_predicts_the_token_that_followed_the_current_one_before()
    {
        const int vocab = 32;
        var rng = new Xoshiro256(4);
        int trials = 0, correct = 0;
        for (int run = 0; run < 300; run++)
        {
            // a permutation (each token once), then one of its tokens again: predict its successor
            var sequence = Enumerable.Range(0, vocab).OrderBy(_ => rng.NextUInt64()).ToArray();
            var cache = OneHotCache(vocab);
            for (int p = 1; p < vocab; p++) Add(cache, Code(sequence[p - 1], vocab), sequence[p], vocab);   // λ codes the previous token
            int i = (int)(rng.NextUInt64() % (vocab - 1));
            trials++;
            if (Retrieve(cache, Code(sequence[i], vocab), vocab - 1, vocab) == sequence[i + 1]) correct++;
        }
        Assert.True(correct >= 0.999 * trials, $"induction accuracy {correct}/{trials}");
    }

    private static void AssertStableCausalWeights(float[] weights, int n)
    {
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int j = 0; j < n; j++)
            {
                float w = weights[i * n + j];
                Assert.True(float.IsFinite(w), $"weight ({i}, {j}) = {w}");
                if (j > i) Assert.True(w <= 1e-6f, $"masked weight ({i}, {j}) = {w}");
                sum += w;
            }
            Assert.True(Math.Abs(sum - 1) <= 1e-5, $"row {i} sums to {sum}");
        }
    }

    [Fact]
    public void Tau_weights_stay_finite_and_normalised_at_temperature_one_millionth()
    {
        const int n = 256;
        var rng = new Xoshiro256(5);
        var lambdas = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var scores = new float[n * n];
        for (int i = 0; i < n; i++) Kernels.TauScores(lambdas[i], lambdas, 1e-6f, scores.AsSpan(i * n, n));
        Kernels.CausalSoftmax(scores, n);
        AssertStableCausalWeights(scores, n);
        Assert.Equal(1f, scores[(n - 1) * n + n - 1], 5);   // its own key is the nearest: all weight there
    }

    [Fact]
    public void Dot_product_weights_stay_finite_and_normalised_with_logits_of_ten_thousand()
    {
        const int n = 256;
        var rng = new Xoshiro256(6);
        var scores = Enumerable.Range(0, n * n).Select(_ => rng.NextDouble() < 0.5 ? -1e4f : 1e4f).ToArray();
        Kernels.CausalSoftmax(scores, n);
        AssertStableCausalWeights(scores, n);
    }

    [Fact]
    public void Whole_model_at_temperature_one_millionth_over_256_tokens_gives_finite_logits()
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, temperature: 1e-6, sequenceLen: 300);
        var model = TauModel.CreateRandom(config, 7);
        var logits = new InferenceSession(model).AppendAllLogits(TestSupport.RandomTokens(256, config.VocabSize, 7));
        // finite, and inside the softcap: logits = softcap · tanh(x / softcap) lie in [−15, 15]
        Assert.Equal(15.0, config.Softcap);
        Assert.All(logits, l => Assert.True(float.IsFinite(l) && Math.Abs(l) <= config.Softcap, $"logit {l}"));
        Assert.True(logits.Distinct().Count() > config.VocabSize, "the logits should vary across tokens and positions");
    }

    [Theory]
    [InlineData(1, 1, 32)]
    [InlineData(4, 2, 64)]
    [InlineData(1, 1, 384)]
    public void Tau_cache_takes_exactly_d_plus_one_over_two_d_of_a_key_value_cache(int heads, int kvHeads, int headDim)
    {
        var tau = TestSupport.SmallConfig(AttentionKind.Tau, heads, kvHeads, embd: heads * headDim, mode: TaumodeKind.Fixed);
        var causal = tau with { Attention = AttentionKind.Causal };
        var tokens = TestSupport.RandomTokens(300, tau.VocabSize, 1);
        var dense = new InferenceSession(TauModel.CreateRandom(tau, 1), tauPath: TauAttentionPath.Dense);
        var indexed = new InferenceSession(TauModel.CreateRandom(tau, 1));
        var causalSession = new InferenceSession(TauModel.CreateRandom(causal, 1));
        dense.Append(tokens);
        indexed.Append(tokens);
        causalSession.Append(tokens);

        long denseBytes = dense.Cache.Bytes, causalBytes = causalSession.Cache.Bytes;
        Assert.Equal(300L * tau.NLayer * kvHeads * (headDim + 1) * sizeof(float), denseBytes);
        Assert.Equal(causalBytes, dense.Cache.KeyValueBaselineBytes);
        Assert.Equal(causalBytes, causalSession.Cache.KeyValueBaselineBytes);
        Assert.Equal((headDim + 1) * causalBytes, 2L * headDim * denseBytes);   // (λk, V) / (K, V) = (D+1)/(2D), exactly

        // The λ index adds each key's position and the block sums of its runs, and still stays under 0.55 of (K, V).
        Assert.InRange(indexed.Cache.Bytes, denseBytes, (long)(0.55 * causalBytes));
        Assert.Equal(causalBytes, indexed.Cache.KeyValueBaselineBytes);
    }

    [Fact]
    public void Chunked_rows_grow_without_moving_what_they_hold()
    {
        var rows = new ChunkedRows(8);
        rows.Append([1, 2, 3, 4, 5, 6, 7, 8]);
        ref readonly float first = ref MemoryMarshal.GetReference(rows.Row(0));
        for (int i = 1; i < 5 * ChunkedRows.RowsPerChunk; i++) rows.Append(Enumerable.Repeat((float)i, 8).ToArray());
        Assert.True(Unsafe.AreSame(in first, in MemoryMarshal.GetReference(rows.Row(0))), "row 0 moved when the rows grew");
        Assert.Equal(5 * ChunkedRows.RowsPerChunk, rows.Count);
        Assert.Equal(3f, rows.Row(3)[7]);
        Assert.Equal(5L * ChunkedRows.RowsPerChunk * 8 * sizeof(float), rows.Bytes);
    }
}
