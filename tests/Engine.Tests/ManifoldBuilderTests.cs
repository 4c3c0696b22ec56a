using System.Text.Json.Nodes;

namespace TauCluster.Engine.Tests;

public sealed class ManifoldBuilderTests
{
    /// <summary>N items over D features: Gaussian latent factors mixed into the features, plus noise, so that features correlate.</summary>
    internal static ItemMatrix CorrelatedItems(int items, int features, ulong seed, int factors = 3)
    {
        var rng = new Xoshiro256(seed);
        var mixing = Enumerable.Range(0, factors * features).Select(_ => rng.NextGaussian()).ToArray();
        var data = new float[items * features];
        for (int i = 0; i < items; i++)
        {
            var latent = Enumerable.Range(0, factors).Select(_ => rng.NextGaussian()).ToArray();
            for (int f = 0; f < features; f++)
            {
                double v = 0.3 * rng.NextGaussian();
                for (int z = 0; z < factors; z++) v += latent[z] * mixing[z * features + f];
                data[i * features + f] = (float)v;
            }
        }
        return new ItemMatrix(data, items, features, "synthetic");
    }

    /// <summary>
    /// Items of two kinds: kind A is positive on features [0, groupSize) and zero elsewhere, kind B on the next
    /// groupSize features. Every centroid of a clustering that keeps the kinds apart is zero on the other kind's
    /// features, so no feature of one group has a positive cosine similarity with any of the other.
    /// </summary>
    private static ItemMatrix TwoSeparateGroups(int itemsPerGroup, int groupSize, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        int features = 2 * groupSize;
        var data = new float[2 * itemsPerGroup * features];
        for (int i = 0; i < 2 * itemsPerGroup; i++)
        {
            int offset = i < itemsPerGroup ? 0 : groupSize;
            for (int f = 0; f < groupSize; f++) data[i * features + offset + f] = (float)(1 + rng.NextDouble());
        }
        return new ItemMatrix(data, 2 * itemsPerGroup, features, "two groups");
    }

    private static void AssertIsGraphLaplacian(Laplacian l)
    {
        for (int i = 0; i < l.Dimension; i++)
        {
            double rowSum = 0;
            for (int j = 0; j < l.Dimension; j++)
            {
                rowSum += l[i, j];
                Assert.Equal(l[i, j], l[j, i]);
                if (i != j) Assert.True(l[i, j] <= 0, $"L[{i}][{j}] = {l[i, j]} is a positive off-diagonal");
            }
            Assert.True(Math.Abs(rowSum) < 1e-12, $"row {i} sums to {rowSum}");
            Assert.True(l[i, i] >= 0);
        }
    }

    [Fact]
    public void Built_laplacian_is_symmetric_with_zero_row_sums_and_non_positive_off_diagonals()
    {
        var build = ManifoldBuilder.Build(CorrelatedItems(400, 24, 1), new ManifoldBuildOptions { Centroids = 20, Neighbours = 5 });
        var l = build.Laplacian;
        Assert.Equal(24, l.Dimension);
        AssertIsGraphLaplacian(l);
        var s = build.Settings;
        Assert.Equal((400, 24, 20, 5), (s.Items, s.Features, s.Centroids, s.Neighbours));
        Assert.True(s.SigmaFromData && s.Sigma is > 0 and <= 1);
        Assert.InRange(s.Edges, 24 * 5 / 2, 24 * 5);   // k edges per feature, some chosen from both ends
        Assert.Equal((l.NonZeros - l.Dimension) / 2, s.Edges);
        Assert.True(l.Entries().Where(e => e.Row != e.Column).All(e => e.Value >= -1), "every weight lies in (0, 1]");
    }

    [Fact]
    public void Same_seed_gives_an_identical_laplacian_and_another_seed_its_own()
    {
        var items = CorrelatedItems(300, 16, 2);
        var options = new ManifoldBuildOptions { Centroids = 12, Neighbours = 4, Seed = 7 };
        var first = ManifoldBuilder.Build(items, options).Laplacian.Entries().ToArray();
        var second = ManifoldBuilder.Build(items, options).Laplacian.Entries().ToArray();
        Assert.Equal(first, second);
        var clusteringA = ManifoldBuilder.KMeans(items, 12, 7, 50);
        var clusteringB = ManifoldBuilder.KMeans(items, 12, 8, 50);
        Assert.Equal(clusteringA.Centroids, ManifoldBuilder.KMeans(items, 12, 7, 50).Centroids);
        Assert.NotEqual(clusteringA.Centroids, clusteringB.Centroids);
    }

    [Fact]
    public void Knn_weights_follow_one_over_one_plus_d_over_sigma_to_the_p_on_a_hand_computed_example()
    {
        // Two centroids, three feature columns: f0 = (1, 0), f1 = (1, 1), f2 = (0, 1).
        // cos(f0, f1) = cos(f1, f2) = 1/√2, so d = 1 − 1/√2 = 0.29289…; cos(f0, f2) = 0: no positive similarity, no edge.
        // With k = 1: f0 → f1, f1 → f0 (tie with f2 goes to the lower index), f2 → f1; symmetrised: edges {0,1} and {1,2}.
        float[] centroids = [1, 1, 0, 0, 1, 1];
        var graph = ManifoldBuilder.BuildFeatureGraph(centroids, 2, 3, neighbours: 1, sigma: 0.5, p: 2, "hand", TaumodeKind.Mean);
        const double w = 0.7445208382054341;   // 1 / (1 + (0.29289321881345254 / 0.5)²)
        var l = graph.Laplacian;
        Assert.Equal(2, graph.Edges);
        Assert.Equal(-w, l[0, 1], 14); Assert.Equal(-w, l[1, 2], 14);
        Assert.Equal(0, l[0, 2]);
        Assert.Equal(w, l[0, 0], 14); Assert.Equal(2 * w, l[1, 1], 14); Assert.Equal(w, l[2, 2], 14);
        Assert.Equal(TaumodeKind.Mean, l.DefaultTaumode);
        Assert.Equal(w, ManifoldBuilder.KernelWeight(1 - Math.Sqrt(0.5), 0.5, 2), 14);

        // σ from the data: the median edge distance, which puts every weight here at exactly ½.
        var selfTuned = ManifoldBuilder.BuildFeatureGraph(centroids, 2, 3, 1, sigma: null, p: 1.8, "hand", TaumodeKind.Median);
        Assert.Equal(1 - Math.Sqrt(0.5), selfTuned.Sigma, 14);
        Assert.True(selfTuned.SigmaFromData);
        Assert.Equal(-0.5, selfTuned.Laplacian[1, 2], 14);
    }

    [Fact]
    public void Two_separate_groups_of_features_give_two_zero_eigenvalues_and_one_group_gives_one()
    {
        var build = ManifoldBuilder.Build(TwoSeparateGroups(60, 6, 3), new ManifoldBuildOptions { Centroids = 8, Neighbours = 3 });
        AssertIsGraphLaplacian(build.Laplacian);
        for (int i = 0; i < 6; i++)
            for (int j = 6; j < 12; j++) Assert.Equal(0, build.Laplacian[i, j]);
        var spectrum = LaplacianSpectrum.Of(build.Laplacian);
        Assert.Equal(2, spectrum.ZeroEigenvalues);
        Assert.Equal(2, spectrum.ConnectedComponents);
        Assert.Equal(2, build.Settings.ConnectedComponents);
        Assert.True(spectrum.Eigenvalues[2] > 1e-3, $"λ₃ = {spectrum.Eigenvalues[2]} should be clearly positive");

        // All features positive on all items: every pair of columns is positively similar, one component.
        var rng = new Xoshiro256(4);
        var positive = new ItemMatrix(Enumerable.Range(0, 300 * 12).Select(_ => (float)(1 + rng.NextDouble())).ToArray(), 300, 12, "positive");
        var connected = LaplacianSpectrum.Of(ManifoldBuilder.Build(positive, new ManifoldBuildOptions { Centroids = 10, Neighbours = 3 }).Laplacian);
        Assert.Equal(1, connected.ZeroEigenvalues);
        Assert.True(connected.Fiedler > 1e-3);
    }

    [Fact]
    public void Kmeans_recovers_well_separated_blobs_and_converges()
    {
        var rng = new Xoshiro256(5);
        float[][] centres = [[10, 0, 0], [0, 10, 0], [0, 0, 10], [-10, -10, -10]];
        var data = new float[400 * 3];
        for (int i = 0; i < 400; i++)
            for (int f = 0; f < 3; f++) data[i * 3 + f] = centres[i % 4][f] + (float)(0.1 * rng.NextGaussian());
        var result = ManifoldBuilder.KMeans(new ItemMatrix(data, 400, 3, "blobs"), 4, 1, 50);
        Assert.True(result.Converged);
        for (int i = 4; i < 400; i++) Assert.Equal(result.Assignments[i % 4], result.Assignments[i]);
        Assert.Equal(4, result.Assignments.Distinct().Count());
        foreach (var centre in centres)
            Assert.Contains(Enumerable.Range(0, 4), c => Enumerable.Range(0, 3).All(f => Math.Abs(result.Centroids[c * 3 + f] - centre[f]) < 0.05));
    }

    [Fact]
    public async Task Written_manifold_round_trips_through_the_loader_with_arrowspace_metadata()
    {
        var build = ManifoldBuilder.Build(CorrelatedItems(200, 10, 6), new ManifoldBuildOptions { Centroids = 9, Neighbours = 3, Taumode = TaumodeKind.Percentile, Name = "synthetic-10", P = 1.8 });
        var dir = TestSupport.TempDirectory();
        await ManifoldBuilder.WriteAsync(dir, build);
        var back = Manifold.Load(dir);
        Assert.Equal("synthetic-10", back.Name);
        Assert.Equal(TaumodeKind.Percentile, back.DefaultTaumode);
        Assert.Equal(build.Laplacian.Entries(), back.Entries());

        var json = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(dir, Manifold.MetadataFile)))!["builder_config"]!;
        Assert.Equal(10, json["nfeatures"]!["Usize"]!.GetValue<int>());
        Assert.Equal("Percentile", json["synthesis"]!["TauMode"]!.GetValue<string>());
        Assert.Equal(200, json["nitems"]!["Usize"]!.GetValue<int>());
        Assert.Equal(3, json["lambda_k"]!["Usize"]!.GetValue<int>());
        Assert.Equal(1.8, json["lambda_p"]!["F64"]!.GetValue<double>());
        Assert.Equal(build.Settings.Sigma, json["lambda_sigma"]!["OptionF64"]!.GetValue<double>());
        Assert.Equal(9, json["cluster_max_clusters"]!["OptionUsize"]!.GetValue<int>());
        Assert.Equal(42UL, json["clustering_seed"]!["OptionU64"]!.GetValue<ulong>());
    }

    [Fact]
    public async Task Built_manifold_serves_as_a_models_laplacian_and_as_a_domain()
    {
        // Head dimension 12: two heads of a 24-wide model.
        var config = TestSupport.SmallConfig(AttentionKind.Tau, heads: 2, kvHeads: 1, embd: 24, mode: null);
        var build = ManifoldBuilder.Build(CorrelatedItems(200, 12, 7), new ManifoldBuildOptions { Centroids = 10, Neighbours = 4, Taumode = TaumodeKind.Mean });

        var modelDir = TestSupport.TempDirectory();
        TauModel.CreateRandom(config, 3).Save(modelDir);
        await ManifoldBuilder.WriteAsync(Path.Combine(modelDir, "manifold"), build);
        await File.WriteAllTextAsync(Path.Combine(modelDir, TauModel.ConfigFile), (config with { ManifoldDirectory = "manifold" }).ToJson());

        var model = TauModel.Load(modelDir);
        Assert.Equal(build.Laplacian.Entries(), model.DefaultDomain!.Laplacian.Entries());
        Assert.Equal(TaumodeKind.Mean, model.DefaultDomain.Settings.Mode);   // config names no mode: the manifold's own
        var logits = new InferenceSession(model).Append(TestSupport.RandomTokens(8, config.VocabSize, 1)).ToArray();
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));

        var domain = TauModel.CreateRandom(config, 4).DomainFor(Manifold.Load(Path.Combine(modelDir, "manifold")));
        Assert.Equal(12, domain.Laplacian.Dimension);
    }

    [Fact]
    public void Model_items_are_the_layer_0_query_and_key_heads_of_every_token_at_position_0()
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, heads: 2, kvHeads: 1, embd: 16, vocab: 11);
        var model = TauModel.CreateRandom(config, 9);
        var items = ManifoldInputs.FromModel(config, model.Weights, "model");
        Assert.Equal((11 * 3, 8), (items.Rows, items.Columns));

        // Token 5 by hand: h = rms(wte[5]); head vectors rms(clamp(W h, ±5)).
        int c = 16, d = 8;
        var h = model.Weights.TokenEmbedding.AsSpan(5 * c, c).ToArray();
        Kernels.RmsNorm(h, h);
        float[] Head(float[] weight, int head)
        {
            var v = Enumerable.Range(0, d).Select(o => Enumerable.Range(0, c).Sum(i => weight[(head * d + o) * c + i] * h[i])).ToArray();
            Kernels.Clamp(v, -5, 5);
            Kernels.RmsNorm(v, v);
            return v;
        }
        var layer = model.Weights.Layers[0];
        float[][] expected = [Head(layer.Query, 0), Head(layer.Query, 1), Head(layer.Key, 0)];
        for (int j = 0; j < 3; j++)
            for (int f = 0; f < d; f++) Assert.Equal(expected[j][f], items.Row(5 * 3 + j)[f], 4);

        var dir = TestSupport.TempDirectory();
        model.Save(dir);
        var fromDirectory = ManifoldInputs.Load(dir);
        Assert.Equal(items.Data, fromDirectory.Data);
        var build = ManifoldBuilder.Build(fromDirectory, new ManifoldBuildOptions());
        Assert.Equal(config.HeadDim, build.Laplacian.Dimension);
        Assert.Equal(ManifoldBuilder.DefaultCentroids(33), build.Settings.Centroids);
        Assert.Equal(7, build.Settings.Neighbours);   // min(8, D − 1)
        model.DomainFor(build.Laplacian);
    }

    [Fact]
    public void Npy_and_safetensors_inputs_load_and_an_ambiguous_safetensors_file_asks_for_a_name()
    {
        var dir = TestSupport.TempDirectory();
        var items = CorrelatedItems(30, 6, 8);
        var npy = NumPyFileTests.WriteFloat32Npy(Path.Combine(dir, "items.npy"), items.Data, 30, 6);
        var fromNpy = ManifoldInputs.Load(npy);
        Assert.Equal((30, 6), (fromNpy.Rows, fromNpy.Columns));
        Assert.Equal(items.Data, fromNpy.Data);

        var single = Path.Combine(dir, "one.safetensors");
        SafeTensors.Write(single, [new Tensor("bias", [6], new float[6]), new Tensor("emb", [30, 6], items.Data)]);
        Assert.Equal(items.Data, ManifoldInputs.Load(single).Data);

        var several = Path.Combine(dir, "two.safetensors");
        SafeTensors.Write(several, [new Tensor("a", [30, 6], items.Data), new Tensor("b", [2, 3], new float[6]), new Tensor("cube", [1, 2, 3], new float[6])]);
        var ambiguous = Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(several));
        Assert.Contains("2 2-D tensors (a [30, 6], b [2, 3]); name one", ambiguous.Message);
        Assert.Equal((2, 3), (ManifoldInputs.Load(several, "b").Rows, ManifoldInputs.Load(several, "b").Columns));
        Assert.Contains("no tensor named c (2-D tensors: a [30, 6], b [2, 3])", Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(several, "c")).Message);
        Assert.Contains("cube [1, 2, 3] is 3-dimensional", Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(several, "cube")).Message);

        Assert.Contains("a tensor name applies to .safetensors files only", Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(npy, "emb")).Message);
        Assert.Contains("input not found", Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(Path.Combine(dir, "absent.npy"))).Message);
        var csv = Path.Combine(dir, "items.csv");
        File.WriteAllText(csv, "1,2");
        Assert.Contains("not a .npy or .safetensors file", Assert.Throws<ManifoldBuildException>(() => ManifoldInputs.Load(csv)).Message);
    }

    [Fact]
    public void Unbuildable_inputs_and_settings_are_refused_naming_the_problem()
    {
        var items = CorrelatedItems(20, 6, 9);
        string Refused(ItemMatrix m, ManifoldBuildOptions o) => Assert.Throws<ManifoldBuildException>(() => ManifoldBuilder.Build(m, o)).Message;

        Assert.Contains("1 feature(s); a feature graph needs at least 2", Refused(new ItemMatrix(new float[5], 5, 1, "thin"), new()));
        Assert.Contains("1 item(s)", Refused(new ItemMatrix(new float[6], 1, 6, "one"), new()));
        Assert.Contains("k = 6 must lie in [1, 5]", Refused(items, new() { Neighbours = 6 }));
        Assert.Contains("k = 0 must lie in [1, 5]", Refused(items, new() { Neighbours = 0 }));
        Assert.Contains("centroids = 21 must lie in [2, 20]", Refused(items, new() { Centroids = 21 }));
        Assert.Contains("centroids = 1 must lie in [2, 20]", Refused(items, new() { Centroids = 1 }));
        Assert.Contains("sigma = 0 must be a positive number", Refused(items, new() { Sigma = 0 }));
        Assert.Contains("p = -1 must be a positive number", Refused(items, new() { P = -1 }));
        Assert.Contains("iterations = 0", Refused(items, new() { MaxIterations = 0 }));

        var data = items.Data.ToArray();
        data[3 * 6 + 4] = float.NaN;
        Assert.Contains("item 3, feature 4 is NaN", Refused(new ItemMatrix(data, 20, 6, "nan"), new()));
        data[3 * 6 + 4] = float.PositiveInfinity;
        Assert.Contains("item 3, feature 4 is Infinity", Refused(new ItemMatrix(data, 20, 6, "inf"), new()));

        // No positive similarity anywhere: each feature lives on items of its own, so every centroid has one non-zero feature.
        var orthogonal = new float[4 * 4];
        for (int i = 0; i < 4; i++) orthogonal[i * 4 + i] = 1;
        Assert.Contains("graph has no edges", Refused(new ItemMatrix(orthogonal, 4, 4, "orthogonal"), new() { Centroids = 4, Neighbours = 2 }));
        Assert.Throws<ManifoldBuildException>(() => new ItemMatrix(new float[5], 2, 3, "short"));
    }
}
