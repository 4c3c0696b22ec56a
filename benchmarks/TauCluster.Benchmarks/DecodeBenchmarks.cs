using BenchmarkDotNet.Attributes;
using TauCluster.Engine;

namespace TauCluster.Benchmarks;

/// <summary>
/// One decode step (<see cref="InferenceSession.Append(int)"/>) on the paper's bench shape with <see cref="Context"/>
/// tokens cached: tau attention through the λ index and through the dense pass, and the causal dot-product baseline.
/// The cache is filled synthetically (<see cref="InferenceSession.FillSynthetic"/>): decode cost depends only on how
/// much is cached, and a real prefill of 64K tokens would be quadratic. Every invocation appends one token at position
/// <see cref="Context"/> and truncates back, so each one does the same work and the context never grows.
/// </summary>
[MemoryDiagnoser]
public class DecodeBenchmarks
{
    private const ulong WeightSeed = 1234;
    private const int DecodeToken = 50;

    private InferenceSession session = null!;

    [Params("tau-index", "tau-dense", "causal")]
    public string Attention { get; set; } = "tau-index";

    [Params(1024, 4096, 16384, 65536)]
    public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var kind = Attention == "causal" ? AttentionKind.Causal : AttentionKind.Tau;
        var config = BenchData.BenchConfig(kind, sequenceLen: 65536 + 64);
        // The same seed gives every variant identical weights; only the attention differs.
        var model = kind == AttentionKind.Tau
            ? TauModel.CreateRandom(config, WeightSeed, BenchData.LoadManifoldOrChain())
            : TauModel.CreateRandom(config, WeightSeed);
        session = new InferenceSession(model, tauPath: Attention == "tau-dense" ? TauAttentionPath.Dense : TauAttentionPath.Index);
        session.Reserve(Context + 16);
        session.FillSynthetic(Context, seed: 7);
        Console.WriteLine($"// {Attention}: {Context} tokens cached, {session.Cache.Bytes / 1048576.0:F1} MiB " +
                          $"(a K,V cache would take {session.Cache.KeyValueBaselineBytes / 1048576.0:F1} MiB)");
        DecodeStep();   // settle the buffers (thread-static score scratch, the pool) before measuring
    }

    [Benchmark]
    public float DecodeStep()
    {
        float first = session.Append(DecodeToken)[0];
        session.Truncate(Context);
        return first;
    }
}
