using BenchmarkDotNet.Attributes;
using TauCluster.Engine;

namespace TauCluster.Benchmarks;

/// <summary>
/// The per-head cost tau attention adds on top of a dot-product model: one taumode λ per query and key head vector
/// (Rayleigh energy xᵀLx / xᵀx, the median τ and λ = E / (E + τ)), against the real 384-dim CVE/MiniLM manifold
/// (6408 non-zeros) and the 384-dim chain Laplacian (1150 non-zeros) for comparison.
/// </summary>
[MemoryDiagnoser]
public class LambdaBenchmarks
{
    /// <summary>What <see cref="TauModel.DomainFor"/> resolves for the real manifold: its own Median τ mode, config defaults otherwise.</summary>
    private static readonly TaumodeSettings MedianSettings = new(TaumodeKind.Median, 1.0, 1e-6, 1.0, 0.5);

    private Laplacian manifold = null!;
    private Laplacian chain = null!;
    private float[] x = [];

    [GlobalSetup]
    public void Setup()
    {
        manifold = BenchData.LoadManifoldOrChain();
        chain = Laplacian.Chain(BenchData.HeadDim);
        x = BenchData.RmsNormalisedVector(BenchData.HeadDim, seed: 42);
        Console.WriteLine($"// Laplacian {manifold.Name}: {manifold.Dimension}x{manifold.Dimension}, {manifold.NonZeros} non-zeros; " +
                          $"chain: {chain.NonZeros} non-zeros");
    }

    [Benchmark(Baseline = true, Description = "Lambda (manifold, median)")]
    public float LambdaManifold() => Taumode.Lambda(x, manifold, MedianSettings);

    [Benchmark(Description = "QuadraticForm (manifold)")]
    public double QuadraticFormManifold() => manifold.QuadraticForm(x);

    [Benchmark(Description = "Lambda (chain, median)")]
    public float LambdaChain() => Taumode.Lambda(x, chain, MedianSettings);

    [Benchmark(Description = "QuadraticForm (chain)")]
    public double QuadraticFormChain() => chain.QuadraticForm(x);

    [Benchmark(Description = "SelectTau (median)")]
    public double SelectTauMedian() => Taumode.SelectTau(x, MedianSettings);
}
