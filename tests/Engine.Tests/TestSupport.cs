namespace TauCluster.Engine.Tests;

/// <summary>Shared fixtures: the real manifold from ../shared, small model shapes, temporary folders.</summary>
public static class TestSupport
{
    public const string ManifoldName = TestPaths.RealManifoldName;

    private static readonly Lazy<Laplacian?> RealLaplacian = new(() => TestPaths.RealManifoldDirectory() is { } p ? Manifold.Load(p) : null);

    /// <summary>
    /// The real cve-minilm-384 manifold; where ../shared is absent the calling test is skipped (it must be skippable),
    /// and under CI it fails: CI always has ../shared beside the clone.
    /// </summary>
    public static Laplacian RealManifold()
    {
        TestPaths.Require(RealLaplacian.Value is not null, $"../shared/manifolds/{ManifoldName}");
        return RealLaplacian.Value!;
    }

    public static ModelConfig SmallConfig(AttentionKind attention, int heads = 2, int kvHeads = 2, int embd = 32, int layers = 2,
        int vocab = 97, TaumodeKind? mode = TaumodeKind.Median, double temperature = 1.0, double softcap = 15.0, int sequenceLen = 512) =>
        new ModelConfig(VocabSize: vocab, NLayer: layers, NHead: heads, NKvHead: kvHeads, NEmbd: embd, SequenceLen: sequenceLen,
            RopeBase: 10000, Softcap: softcap, Attention: attention,
            Taumode: new TaumodeConfig(Mode: mode, Temperature: temperature)).Validate();

    /// <summary>A session decoding alone, a step at a time: its tokens after the prompt, and the logits after the last one.</summary>
    public static (int[] Tokens, float[] LastLogits) DecodeAlone(TauModel model, TauAttentionPath path, int[] prompt, SamplingOptions sampling, int count) =>
        DecodeAlone(new InferenceSession(model, tauPath: path), prompt, sampling, count);

    /// <summary><paramref name="session"/> (on any device) decoding alone, a step at a time, after the prompt.</summary>
    public static (int[] Tokens, float[] LastLogits) DecodeAlone(InferenceSession session, int[] prompt, SamplingOptions sampling, int count)
    {
        var sampler = new Sampler(session.Model.Config.VocabSize, sampling);
        var logits = session.Append(prompt);
        var tokens = new List<int>();
        for (int i = 0; i < count; i++)
        {
            tokens.Add(sampler.Sample(logits));
            logits = session.Append(tokens[^1]);
        }
        return (tokens.ToArray(), logits.ToArray());
    }

    /// <summary>The largest |a[i] − b[i]|, for spans of one length.</summary>
    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    public static int[] RandomTokens(int count, int vocab, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        return Enumerable.Range(0, count).Select(_ => (int)(rng.NextUInt64() % (ulong)vocab)).ToArray();
    }

    public static float[] RandomVector(int length, ulong seed, bool rmsNormalise = true)
    {
        var rng = new Xoshiro256(seed);
        var x = Enumerable.Range(0, length).Select(_ => (float)rng.NextGaussian()).ToArray();
        if (rmsNormalise) Kernels.RmsNorm(x, x);
        return x;
    }

    public static string TempDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "tau-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}

