using TauCluster.Engine;

namespace TauCluster.Benchmarks;

/// <summary>Shared inputs of the benchmarks: the paper's bench shape and the real CVE/MiniLM manifold.</summary>
internal static class BenchData
{
    public const string ManifoldName = "cve-minilm-384";
    public const int HeadDim = 384;

    /// <summary>The paper's bench shape: 6 layers, n_embd 384, one head, GPT-2 vocabulary, softcap 15.</summary>
    public static ModelConfig BenchConfig(AttentionKind attention, int sequenceLen = 16384 + 64) => new(
        VocabSize: 50257,
        NLayer: 6,
        NHead: 1,
        NKvHead: 1,
        NEmbd: HeadDim,
        SequenceLen: sequenceLen,
        RopeBase: 10000.0,
        Softcap: 15.0,
        Attention: attention,
        // Median is the real manifold's own τ mode; naming it keeps the chain fallback comparable.
        Taumode: new TaumodeConfig(Mode: TaumodeKind.Median));

    /// <summary>
    /// Looks for shared/manifolds/cve-minilm-384 above the binary's folder and above the current directory
    /// (BenchmarkDotNet runs each case from a generated project under bin/, so both are walked up).
    /// </summary>
    public static string? FindManifoldDirectory()
    {
        var relative = Path.Combine("shared", "manifolds", ManifoldName);
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relative);
                if (File.Exists(Path.Combine(candidate, Manifold.ParquetFile))) return candidate;
            }
        }
        return null;
    }

    /// <summary>The real manifold Laplacian, or the chain Laplacian (with a note on stdout) when it cannot be found.</summary>
    public static Laplacian LoadManifoldOrChain()
    {
        if (FindManifoldDirectory() is { } directory) return Manifold.Load(directory);
        Console.WriteLine($"// NOTE: shared/manifolds/{ManifoldName} not found above {AppContext.BaseDirectory} " +
                          $"or {Directory.GetCurrentDirectory()}; using Laplacian.Chain({HeadDim}) instead.");
        return Laplacian.Chain(HeadDim);
    }

    /// <summary>A seeded N(0, 1) vector, RMS-normalised as query and key heads are before λ.</summary>
    public static float[] RmsNormalisedVector(int length, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var x = new float[length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextGaussian();
        Kernels.RmsNorm(x, x);
        return x;
    }

    /// <summary>Seeded uniform token ids in [0, vocab).</summary>
    public static int[] RandomTokens(int count, int vocab, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var ids = new int[count];
        for (int i = 0; i < ids.Length; i++) ids[i] = (int)(rng.NextUInt64() % (ulong)vocab);
        return ids;
    }
}
