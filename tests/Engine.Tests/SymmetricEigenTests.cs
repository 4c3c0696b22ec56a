using Xunit.Abstractions;

namespace TauCluster.Engine.Tests;

public sealed class SymmetricEigenTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(64)]
    [InlineData(384)]
    public void Chain_laplacian_has_eigenvalues_2_minus_2cos_pi_k_over_D(int dimension)
    {
        var values = SymmetricEigen.Of(Laplacian.Chain(dimension)).Values;
        var expected = Enumerable.Range(0, dimension).Select(k => 2 - 2 * Math.Cos(Math.PI * k / dimension)).ToArray();
        Assert.Equal(dimension, values.Length);
        for (int k = 0; k < dimension; k++) Assert.True(Math.Abs(values[k] - expected[k]) < 1e-12, $"λ{k} = {values[k]}, expected {expected[k]}");
    }

    [Theory]
    [InlineData(3, 1UL)]
    [InlineData(40, 2UL)]
    [InlineData(200, 3UL)]
    public void Random_symmetric_matrix_satisfies_A_v_equals_lambda_v_with_orthonormal_vectors(int n, ulong seed)
    {
        var a = RandomSymmetric(n, seed);
        var eigen = SymmetricEigen.Decompose(a, n);
        for (int j = 0; j < n; j++)
        {
            var v = eigen.Vector(j);
            for (int i = 0; i < n; i++)
            {
                double av = 0;
                for (int m = 0; m < n; m++) av += a[i * n + m] * v[m];
                Assert.True(Math.Abs(av - eigen.Values[j] * v[i]) < 1e-9, $"(A v − λ v)[{i}] = {av - eigen.Values[j] * v[i]} for λ{j}");
            }
            for (int other = 0; other <= j; other++)
            {
                double dot = 0;
                var w = eigen.Vector(other);
                for (int i = 0; i < n; i++) dot += v[i] * w[i];
                Assert.True(Math.Abs(dot - (other == j ? 1 : 0)) < 1e-12, $"v{j}·v{other} = {dot}");
            }
        }
        double trace = Enumerable.Range(0, n).Sum(i => a[i * n + i]);
        Assert.Equal(trace, eigen.Values.Sum(), 9);
        Assert.True(eigen.Values.Zip(eigen.Values.Skip(1)).All(p => p.First <= p.Second), "eigenvalues come in ascending order");
    }

    [Fact]
    public void Eigenvalues_alone_equal_those_computed_with_the_vectors()
    {
        var a = RandomSymmetric(60, 9);
        var withVectors = SymmetricEigen.Decompose(a, 60, computeVectors: true).Values;
        var alone = SymmetricEigen.Decompose(a, 60, computeVectors: false);
        Assert.False(alone.HasVectors);
        for (int i = 0; i < 60; i++) Assert.Equal(withVectors[i], alone.Values[i], 12);
        Assert.Throws<InvalidOperationException>(() => alone.Vector(0).Length);
    }

    [Fact]
    public void Diagonal_zero_and_repeated_eigenvalue_matrices_are_exact()
    {
        var diagonal = SymmetricEigen.Decompose([3, 0, 0, 0, -1, 0, 0, 0, 2], 3);
        Assert.Equal([-1, 2, 3], diagonal.Values);
        Assert.Equal([0, 1, 0], diagonal.Vector(0).ToArray().Select(Math.Abs));

        Assert.Equal([0.0, 0.0, 0.0, 0.0], SymmetricEigen.Decompose(new double[16], 4).Values);

        // J − I for the all-ones J (n = 6): eigenvalue 5 once and −1 five times.
        var ones = Enumerable.Range(0, 36).Select(i => i % 7 == 0 ? 0.0 : 1.0).ToArray();
        var values = SymmetricEigen.Decompose(ones, 6).Values;
        for (int i = 0; i < 5; i++) Assert.Equal(-1, values[i], 12);
        Assert.Equal(5, values[5], 12);
    }

    [Fact]
    public void Asymmetric_or_non_finite_or_mis_sized_input_is_rejected()
    {
        Assert.Contains("not symmetric", Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, 2, 3, 4], 2)).Message);
        Assert.Contains("non-finite", Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, double.NaN, double.NaN, 4], 2)).Message);
        Assert.Throws<ArgumentException>(() => SymmetricEigen.Decompose([1, 2, 3], 2));
    }

    [Fact]
    public void Eigenvalues_of_a_dense_1024_by_1024_matrix_keep_its_trace_and_frobenius_norm()
    {
        var a = RandomSymmetric(1024, 5);
        var values = SymmetricEigen.Decompose(a, 1024, computeVectors: false).Values;
        // Invariants that need no reference solver: the trace and the Frobenius norm are the sum of λ and of λ².
        Assert.Equal(Enumerable.Range(0, 1024).Sum(i => a[i * 1024 + i]), values.Sum(), 8);
        Assert.Equal(a.Sum(v => v * v), values.Sum(v => v * v), 6);
    }

    [Fact]
    public void Spectrum_counts_one_zero_eigenvalue_per_connected_component_and_reports_the_fiedler_value()
    {
        var chain = LaplacianSpectrum.Of(Laplacian.Chain(10));
        Assert.Equal(1, chain.ZeroEigenvalues);
        Assert.Equal(1, chain.ConnectedComponents);
        Assert.Equal(2 - 2 * Math.Cos(Math.PI / 10), chain.Fiedler, 12);
        Assert.Equal(chain.Smallest, chain.Quantile(0));
        Assert.Equal(chain.Largest, chain.Quantile(1));
        var (edges, counts) = chain.Histogram(4);
        Assert.Equal(5, edges.Length);
        Assert.Equal(10, counts.Sum());

        // Two chains of 4 side by side, plus an isolated feature: three components, three zero eigenvalues, λ₂ = 0.
        var rows = new List<long>(); var cols = new List<long>(); var vals = new List<double>();
        foreach (int offset in new[] { 0, 4 })
            foreach (var (i, j, v) in Laplacian.Chain(4).Entries()) { rows.Add(i + offset); cols.Add(j + offset); vals.Add(v); }
        var split = LaplacianSpectrum.Of(Laplacian.FromTriplets("split", 9, 9, rows.ToArray(), cols.ToArray(), vals.ToArray(), null));
        Assert.Equal(3, split.ConnectedComponents);
        Assert.Equal(3, split.ZeroEigenvalues);
        Assert.True(Math.Abs(split.Fiedler) <= split.ZeroTolerance);
    }

    [SkippableFact]
    public void Real_manifold_spectrum_has_as_many_zero_eigenvalues_as_connected_components()
    {
        var real = TestSupport.RealManifold();
        var spectrum = LaplacianSpectrum.Of(real);
        output.WriteLine($"components {spectrum.ConnectedComponents}, zero eigenvalues {spectrum.ZeroEigenvalues}, λ₂ {spectrum.Fiedler}, λmax {spectrum.Largest}");
        output.WriteLine("smallest: " + string.Join(", ", spectrum.Eigenvalues.Take(6)));
        Assert.Equal(spectrum.ConnectedComponents, spectrum.ZeroEigenvalues);
        Assert.Equal(1, spectrum.ConnectedComponents);   // the hubs join every feature into one graph
        Assert.True(spectrum.Fiedler > spectrum.ZeroTolerance);
        Assert.InRange(spectrum.Largest, 57, 59);         // README: eigenvalues 0 … 57.9
        Assert.True(spectrum.Smallest > -1e-9, "a graph Laplacian is positive semi-definite");
        var dense = real.ToDense();
        double trace = Enumerable.Range(0, real.Dimension).Sum(i => dense[i * real.Dimension + i]);
        Assert.Equal(trace, spectrum.Eigenvalues.Sum(), 6);
    }

    private static double[] RandomSymmetric(int n, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
                a[i * n + j] = a[j * n + i] = rng.NextGaussian();
        return a;
    }
}
