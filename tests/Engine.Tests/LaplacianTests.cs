namespace TauCluster.Engine.Tests;

public sealed class LaplacianTests
{
    [SkippableFact]
    public void Real_manifold_loads_as_a_384_dimensional_symmetric_laplacian_with_median_mode()
    {
        var l = TestSupport.RealManifold();
        Assert.Equal(384, l.Dimension);
        Assert.Equal(6408, l.NonZeros);
        Assert.Equal(TaumodeKind.Median, l.DefaultTaumode);
        for (int i = 0; i < l.Dimension; i++)
        {
            double rowSum = 0;
            for (int j = 0; j < l.Dimension; j++)
            {
                rowSum += l[i, j];
                Assert.Equal(l[i, j], l[j, i], 9);
            }
            Assert.True(Math.Abs(rowSum) < 1e-6, $"row {i} sums to {rowSum}");
        }
        var (min, max) = l.DiagonalRange();
        Assert.InRange(max, 44, 58);   // the 16 hub features
        Assert.True(min > 0);
    }

    [Fact]
    public void Chain_laplacian_is_the_path_graph()
    {
        var l = Laplacian.Chain(5);
        Assert.Equal(1, l[0, 0]); Assert.Equal(2, l[2, 2]); Assert.Equal(1, l[4, 4]);
        Assert.Equal(-1, l[1, 2]); Assert.Equal(-1, l[2, 1]); Assert.Equal(0, l[0, 2]);
        Assert.Equal(13, l.NonZeros);
        Assert.Equal(0, l.QuadraticForm([1, 1, 1, 1, 1]), 12);
        Assert.Equal(2, l.QuadraticForm([0, 0, 1, 0, 0]), 12);   // Σ over edges (xi − xj)²: two edges touch feature 2
    }

    [Fact]
    public async Task Written_manifold_reads_back_identically()
    {
        var dir = TestSupport.TempDirectory();
        var chain = Laplacian.Chain(12);
        await Manifold.WriteAsync(dir, chain, TaumodeKind.Mean);
        var back = Manifold.Load(dir);
        Assert.Equal(12, back.Dimension);
        Assert.Equal(chain.NonZeros, back.NonZeros);
        Assert.Equal(TaumodeKind.Mean, back.DefaultTaumode);
        for (int i = 0; i < 12; i++) for (int j = 0; j < 12; j++) Assert.Equal(chain[i, j], back[i, j]);
    }

    [Fact]
    public void Non_square_laplacian_is_rejected()
    {
        var e = Assert.Throws<LaplacianException>(() => Laplacian.FromTriplets("bad", 3, 4, [0], [0], [1.0], null));
        Assert.Contains("not square", e.Message);
    }

    [Fact]
    public void Nan_entry_is_rejected()
    {
        var e = Assert.Throws<LaplacianException>(() => Laplacian.FromTriplets("bad", 2, 2, [0, 1], [0, 1], [double.NaN, 1.0], null));
        Assert.Contains("not finite", e.Message);
    }

    [Fact]
    public void Asymmetric_laplacian_is_rejected_but_rounding_noise_is_not()
    {
        var e = Assert.Throws<LaplacianException>(() => Laplacian.FromTriplets("bad", 2, 2, [0, 0, 1, 1], [0, 1, 0, 1], [1, -1, -0.9, 1], null));
        Assert.Contains("not symmetric", e.Message);
        var missing = Assert.Throws<LaplacianException>(() => Laplacian.FromTriplets("bad", 2, 2, [0, 1, 1], [0, 0, 1], [1, -1, 1], null));
        Assert.Contains("not symmetric", missing.Message);
        var ok = Laplacian.FromTriplets("ok", 2, 2, [0, 0, 1, 1], [0, 1, 0, 1], [1, -1, -1 - 1e-9, 1], null);
        Assert.Equal(2, ok.Dimension);
    }

    [Fact]
    public void Out_of_range_index_is_rejected()
    {
        Assert.Throws<LaplacianException>(() => Laplacian.FromTriplets("bad", 2, 2, [0, 2], [0, 0], [1, 1], null));
    }

    [Fact]
    public void Laplacian_of_the_wrong_dimension_is_rejected_by_a_model()
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, embd: 32, heads: 2);
        var e = Assert.Throws<LaplacianException>(() => TauModel.CreateRandom(config, 1, Laplacian.Chain(15)));
        Assert.Contains("dimension 15", e.Message);
        var model = TauModel.CreateRandom(config, 1);
        Assert.Throws<LaplacianException>(() => model.DomainFor(Laplacian.Chain(384)));
        Assert.Throws<LaplacianException>(() => new InferenceSession(model, new TaumodeSpec(Laplacian.Chain(8), model.DefaultDomain!.Settings)));
    }

    [Fact]
    public async Task Malformed_manifold_files_give_clear_errors()
    {
        var dir = TestSupport.TempDirectory();
        Assert.Contains("not found", Assert.Throws<LaplacianException>(() => Manifold.Load(Path.Combine(dir, "absent"))).Message);

        // asymmetric triplets in a real parquet file
        await Manifold.WriteAsync(dir, Laplacian.Chain(4), TaumodeKind.Median);
        await Manifold.WriteTripletsAsync(Path.Combine(dir, Manifold.ParquetFile), "asym", 4, 4, [0, 0, 1], [0, 1, 1], [1, -1, 1]);
        Assert.Contains("not symmetric", Assert.Throws<LaplacianException>(() => Manifold.Load(dir)).Message);

        // non-square
        await Manifold.WriteTripletsAsync(Path.Combine(dir, Manifold.ParquetFile), "wide", 4, 5, [0], [0], [1]);
        Assert.Contains("not square", Assert.Throws<LaplacianException>(() => Manifold.Load(dir)).Message);

        // nfeatures disagrees with the matrix
        await Manifold.WriteTripletsAsync(Path.Combine(dir, Manifold.ParquetFile), "small", 3, 3, [0, 1, 2], [0, 1, 2], [1, 1, 1]);
        Assert.Contains("nfeatures", Assert.Throws<LaplacianException>(() => Manifold.Load(dir)).Message);

        // not a parquet file at all
        await File.WriteAllTextAsync(Path.Combine(dir, Manifold.ParquetFile), "this is not parquet");
        Assert.Throws<LaplacianException>(() => Manifold.Load(dir));

        // broken JSON
        await File.WriteAllTextAsync(Path.Combine(dir, Manifold.MetadataFile), "{ nope");
        Assert.Contains("invalid JSON", Assert.Throws<LaplacianException>(() => Manifold.Load(dir)).Message);
    }
}
