using BenchmarkDotNet.Attributes;
using TauCluster.Engine;

namespace TauCluster.Benchmarks;

/// <summary>
/// One decode step (<see cref="InferenceSession.Append(int)"/>) on the paper's bench shape, tau attention against the
/// real manifold vs the causal dot-product baseline, with <see cref="Context"/> tokens already cached.
/// The cache is filled by a real prefill in [GlobalSetup]; every invocation appends one token at position
/// <see cref="Context"/> and truncates back, so each one does exactly the same work and the context never grows.
/// </summary>
[MemoryDiagnoser]
public class DecodeBenchmarks
{
    private const ulong WeightSeed = 1234;
    private const int DecodeToken = 50;

    private InferenceSession session = null!;

    [Params(AttentionKind.Tau, AttentionKind.Causal)]
    public AttentionKind Attention { get; set; }

    [Params(1024, 8192)]
    public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var config = BenchData.BenchConfig(Attention);
        // The same seed gives both kinds identical weights; only the attention differs.
        var model = Attention == AttentionKind.Tau
            ? TauModel.CreateRandom(config, WeightSeed, BenchData.LoadManifoldOrChain())
            : TauModel.CreateRandom(config, WeightSeed);
        session = new InferenceSession(model);
        session.Reserve(Context + 16);

        var started = System.Diagnostics.Stopwatch.StartNew();
        session.Append(BenchData.RandomTokens(Context, config.VocabSize, seed: 7));
        started.Stop();
        Console.WriteLine($"// {Attention} prefill of {Context} tokens: {started.Elapsed.TotalSeconds:F1} s; " +
                          $"cache {session.Cache.Bytes / 1048576.0:F1} MiB (a K,V cache would take {session.Cache.KeyValueBaselineBytes / 1048576.0:F1} MiB)" +
                          (session.Domain is { } d ? $"; Laplacian {d.Laplacian.Name}, tau mode {d.Settings.Mode}" : ""));

        // Settle the buffers (the thread-static score scratch, the pool) so the measured steps allocate nothing.
        DecodeStep();
    }

    [Benchmark]
    public float DecodeStep()
    {
        float first = session.Append(DecodeToken)[0];
        session.Truncate(Context);
        return first;
    }
}
