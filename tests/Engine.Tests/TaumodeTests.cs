using Xunit.Abstractions;

namespace TauCluster.Engine.Tests;

public sealed class TaumodeTests(ITestOutputHelper output)
{
    private static readonly TaumodeKind[] AllModes = [TaumodeKind.Fixed, TaumodeKind.Median, TaumodeKind.Mean, TaumodeKind.Percentile];

    private static TaumodeSettings Settings(TaumodeKind mode, double tau = 1.0, double percentile = 0.5) =>
        new(mode, tau, 1e-6, 1.0, percentile);

    private static void AssertMatchesReference(Laplacian laplacian, TaumodeKind mode, IEnumerable<float[]> vectors, double percentile = 0.5)
    {
        var dense = ReferenceModel.Dense(laplacian);
        var settings = Settings(mode, tau: 0.37, percentile: percentile);
        foreach (var x in vectors)
        {
            double expected = ReferenceModel.Lambda(x.Select(v => (double)v).ToArray(), dense, settings);
            float actual = Taumode.Lambda(x, laplacian, settings);
            Assert.True(Math.Abs(actual - expected) <= 1e-6, $"{mode}: λ = {actual}, double reference {expected}");
            Assert.InRange(actual, 0f, 1f);
        }
    }

    private static IEnumerable<float[]> Vectors(int dim, int count, ulong seed) =>
        Enumerable.Range(0, count).Select(i => TestSupport.RandomVector(dim, seed + (ulong)i, rmsNormalise: i % 2 == 0))
            .Append(Enumerable.Range(0, dim).Select(i => 0.25f + i % 3).ToArray());   // all-positive: median and mean τ above the floor

    [SkippableFact]
    public void Lambda_matches_double_reference_in_every_mode_on_real_manifold()
    {
        var manifold = TestSupport.RealManifold();
        foreach (var mode in AllModes) AssertMatchesReference(manifold, mode, Vectors(384, 12, 100), percentile: 0.9);
    }

    [Fact]
    public void Lambda_matches_double_reference_in_every_mode_on_small_handmade_laplacians()
    {
        // a triangle with a pendant vertex, weighted, and a star
        var triangle = Laplacian.FromTriplets("tri", 4, 4,
            [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3], [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 2, 3],
            [3, -1, -2, -1, 2, -1, -2, -1, 3.5, -0.5, -0.5, 0.5], null);
        var star = Laplacian.FromTriplets("star", 5, 5,
            [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [0, 1, 2, 3, 4, 0, 1, 0, 2, 0, 3, 0, 4],
            [4, -1, -1, -1, -1, -1, 1, -1, 1, -1, 1, -1, 1], null);
        foreach (var mode in AllModes)
        {
            AssertMatchesReference(triangle, mode, Vectors(4, 20, 7), percentile: 0.25);
            AssertMatchesReference(star, mode, Vectors(5, 20, 9), percentile: 0.75);
            AssertMatchesReference(Laplacian.Chain(16), mode, Vectors(16, 20, 11));
        }
    }

    [Fact]
    public void Identity_laplacian_with_tau_one_gives_one_half_for_any_nonzero_vector()
    {
        const int n = 24;
        var identity = Laplacian.FromTriplets("identity", n, n, Enumerable.Range(0, n).Select(i => (long)i).ToArray(),
            Enumerable.Range(0, n).Select(i => (long)i).ToArray(), Enumerable.Repeat(1.0, n).ToArray(), null);
        foreach (var x in Vectors(n, 30, 1000))
        {
            float lambda = Taumode.Lambda(x, identity, Settings(TaumodeKind.Fixed, tau: 1.0));
            Assert.True(Math.Abs(lambda - 0.5) < 1e-5, $"λ = {lambda}");
        }
    }

    [Fact]
    public void Tau_selection_follows_the_design_rules()
    {
        float[] x = [3f, -1f, float.NaN, 2f, 0.5f, float.PositiveInfinity];   // finite: -1, 0.5, 2, 3
        Assert.Equal(1.25, Taumode.SelectTau(x, Settings(TaumodeKind.Median)), 12);
        Assert.Equal(1.125, Taumode.SelectTau(x, Settings(TaumodeKind.Mean)), 12);
        // percentile: index floor((n−1)·p + 0.5) of the sorted finite components
        Assert.Equal(0.5, Taumode.SelectTau(x, Settings(TaumodeKind.Percentile, percentile: 0.4)), 12);   // floor(1.7) = 1
        Assert.Equal(2.0, Taumode.SelectTau(x, Settings(TaumodeKind.Percentile, percentile: 0.5)), 12);   // floor(2.0) = 2
        Assert.Equal(-1.0, Taumode.SelectTau(x, Settings(TaumodeKind.Percentile, percentile: 0.0)), 12);
        Assert.Equal(0.37, Taumode.SelectTau(x, Settings(TaumodeKind.Fixed, tau: 0.37)), 12);

        // a negative median is floored at 1e-10 and then at eps: λ = E / (E + eps)
        var chain = Laplacian.Chain(3);
        float[] negative = [-1f, -2f, 1f];
        double energy = Taumode.RayleighEnergy(negative, chain, 1e-6);
        Assert.Equal(energy / (energy + 1e-6), Taumode.Lambda(negative, chain, Settings(TaumodeKind.Median)), 6);
    }

    /// <summary>τ's order statistics are found by selection, not a sort: the same values as a full sort, on vectors of odd
    /// and even length with repeated values, in median and percentile modes.</summary>
    [Theory]
    [InlineData(384, 1UL)]
    [InlineData(383, 2UL)]
    [InlineData(2, 3UL)]
    [InlineData(1, 4UL)]
    [InlineData(64, 5UL)]
    public void Median_and_percentile_tau_are_the_order_statistics_of_a_sort(int n, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var x = Enumerable.Range(0, n).Select(_ => rng.NextDouble() < 0.3 ? MathF.Round((float)rng.NextGaussian()) : (float)rng.NextGaussian()).ToArray();
        var sorted = x.Select(v => (double)v).Order().ToArray();
        double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        Assert.Equal(median, Taumode.SelectTau(x, Settings(TaumodeKind.Median)));
        foreach (double p in new[] { 0.0, 0.1, 0.5, 0.9, 1.0 })
            Assert.Equal(sorted[(int)Math.Floor((n - 1) * p + 0.5)], Taumode.SelectTau(x, Settings(TaumodeKind.Percentile, percentile: p)));
    }

    [Fact]
    public void Energy_is_clamped_at_zero_and_zero_vector_gives_zero_lambda()
    {
        var chain = Laplacian.Chain(8);
        Assert.Equal(0f, Taumode.Lambda(new float[8], chain, Settings(TaumodeKind.Fixed)));
        // a constant vector is in the Laplacian's null space: no roughness
        Assert.Equal(0f, Taumode.Lambda(Enumerable.Repeat(0.7f, 8).ToArray(), chain, Settings(TaumodeKind.Median)));
    }

    [SkippableFact]
    public void Real_manifold_energies_of_normalised_vectors_sit_where_its_readme_says()
    {
        var manifold = TestSupport.RealManifold();
        var energies = Enumerable.Range(0, 200).Select(i => Taumode.RayleighEnergy(TestSupport.RandomVector(384, 5000 + (ulong)i), manifold, 1e-6)).ToArray();
        output.WriteLine($"energy range {energies.Min():F2} … {energies.Max():F2}");
        Assert.InRange(energies.Min(), 2.0, 7.5);
        Assert.InRange(energies.Max(), 2.0, 7.5);
    }
}
