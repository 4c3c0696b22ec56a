using System.Numerics.Tensors;
using System.Text.Json.Nodes;

namespace TauCluster.Engine;

/// <summary>Row-major [Clusters, Features] centroids, each item's cluster, and how the Lloyd iteration ended.</summary>
public sealed record KMeansResult(float[] Centroids, int Clusters, int Features, int[] Assignments, int Iterations, bool Converged);

/// <summary>The feature graph's Laplacian, the σ it used, and its number of undirected edges.</summary>
public sealed record FeatureGraph(Laplacian Laplacian, double Sigma, bool SigmaFromData, int Edges);

/// <summary>
/// Builds a feature-space Laplacian the way arrowspace does (crate <c>arrowspace</c>, tuned-org-uk): cluster the N items
/// to X centroids, then treat each of the D feature columns of the [X, D] centroid matrix as a node, join every column to
/// its k nearest columns by cosine distance, weight each edge w = 1 / (1 + (d/σ)^p) and return L = Deg − W (symmetric,
/// rows summing to zero, off-diagonals ≤ 0). Clustering first is what makes it scale: the graph costs O(D²·X), not O(D²·N),
/// and the centroids average out item noise.
///
/// Where this differs from arrowspace, on purpose:
/// <list type="bullet">
/// <item>Clustering is seeded k-means++ then Lloyd, with a plain X, instead of arrowspace's radius-based incremental
/// clustering with sampling and a Calinski–Harabasz search for X: simpler, deterministic for a seed, and equally a way to
/// summarise N items by X centroids. The default X = ⌈√N⌉ is the upper end of arrowspace's search range (it also caps by
/// N/10 and 5 × the intrinsic dimension; its shipped cve-minilm-384 manifold has 179 centroids for 320,272 items);
/// 256 at most keeps a default build on a CPU in seconds.</item>
/// <item>Distance is arrowspace's rectified cosine distance d = 1 − max(0, cos), so d ∈ [0, 1]; but where arrowspace
/// keeps a neighbour at d = 1 (no positive similarity) if it falls under its eps threshold, this builder never joins
/// columns without a positive cosine similarity — the rectification's intent ("effectively disconnected"), and what makes
/// clearly separate groups of features separate components.</item>
/// <item>σ: arrowspace uses a given σ, else 1.0 (its docs say "σ := eps"; the shipped manifold used σ = 0.535 with
/// p = 1.8, k = 25). A fixed σ = 1 on distances in [0, 1] flattens all weights into [0.5, 1]; the median edge distance
/// instead puts w = ½ at a typical neighbour whatever the data's scale, the usual self-tuning choice.</item>
/// <item>No inline sparsification: arrowspace keeps the top half of each node's neighbours by w·√(deg_i·deg_j) when the mean
/// degree exceeds 10 (which is what concentrates the shipped manifold's edges on 16 hubs); here the graph is the plain
/// symmetrised k-NN graph, an edge wherever either end chose the other, as arrowspace symmetrises.</item>
/// <item>No normalisation of the items, as arrowspace's default (normalise = false).</item>
/// </list>
/// </summary>
public static class ManifoldBuilder
{
    public const double DefaultP = 2.0;
    public const ulong DefaultSeed = 42;          // the clustering seed recorded in the shipped cve-minilm-384 manifold
    public const int DefaultNeighbours = 8;       // every non-hub feature of the shipped manifold has 8 edges
    public const int MaxDefaultCentroids = 256;

    public static int DefaultCentroids(int items) => Math.Min(Math.Clamp((int)Math.Ceiling(Math.Sqrt(items)), 2, MaxDefaultCentroids), items);

    public static int DefaultNeighboursFor(int features) => Math.Min(DefaultNeighbours, features - 1);

    /// <summary>
    /// Clusters the items and builds the feature graph; <paramref name="progress"/> hears each stage, and
    /// <paramref name="cancellation"/> stops the clustering between its steps (a build can run for minutes).
    /// </summary>
    public static ManifoldBuild Build(ItemMatrix items, ManifoldBuildOptions options, Action<string>? progress = null,
        CancellationToken cancellation = default)
    {
        int n = items.Rows, d = items.Columns;
        if (d < 2) throw new ManifoldBuildException($"{items.Source}: the items have {d} feature(s); a feature graph needs at least 2");
        if (n < 2) throw new ManifoldBuildException($"{items.Source}: {n} item(s); clustering needs at least 2");
        int centroids = options.Centroids ?? DefaultCentroids(n);
        if (centroids < 2 || centroids > n)
            throw new ManifoldBuildException($"centroids = {centroids} must lie in [2, {n}] (2 to the number of items)");
        int k = options.Neighbours ?? DefaultNeighboursFor(d);
        if (k < 1 || k >= d) throw new ManifoldBuildException($"k = {k} must lie in [1, {d - 1}]: fewer neighbours than the {d} features");
        ValidateKernel(options.Sigma, options.P);
        if (options.MaxIterations < 1) throw new ManifoldBuildException($"iterations = {options.MaxIterations} must be at least 1");
        if (string.IsNullOrWhiteSpace(options.Name)) throw new ManifoldBuildException("the manifold name must not be empty");
        RequireFinite(items);

        progress?.Invoke($"clustering {n} items × {d} features into {centroids} centroids (k-means++, seed {options.Seed})");
        var clusters = KMeans(items, centroids, options.Seed, options.MaxIterations, progress, cancellation);
        cancellation.ThrowIfCancellationRequested();
        progress?.Invoke($"k-means {(clusters.Converged ? "converged" : "stopped")} after {clusters.Iterations} iterations; building the {d}-feature graph (k = {k})");
        var graph = BuildFeatureGraph(clusters.Centroids, centroids, d, k, options.Sigma, options.P, options.Name, options.Taumode);
        var settings = new ManifoldBuildSettings(options.Name, items.Source, n, d, centroids, k, graph.Sigma, graph.SigmaFromData, options.P,
            options.Seed, clusters.Iterations, clusters.Converged, graph.Edges, graph.Laplacian.ConnectedComponents(), options.Taumode);
        return new ManifoldBuild(graph.Laplacian, settings);
    }

    /// <summary>Writes manifold.parquet and manifold.json, the build settings in arrowspace's typed builder_config style.</summary>
    public static Task WriteAsync(string directory, ManifoldBuild build, CancellationToken cancellation = default)
    {
        var s = build.Settings;
        var metadata = new JsonObject
        {
            ["builder_config"] = new JsonObject
            {
                ["nitems"] = new JsonObject { ["Usize"] = s.Items },
                ["lambda_k"] = new JsonObject { ["Usize"] = s.Neighbours },
                ["lambda_p"] = new JsonObject { ["F64"] = s.P },
                ["lambda_sigma"] = new JsonObject { ["OptionF64"] = s.Sigma },
                ["normalise"] = new JsonObject { ["Bool"] = false },
                ["cluster_max_clusters"] = new JsonObject { ["OptionUsize"] = s.Centroids },
                ["clustering_seed"] = new JsonObject { ["OptionU64"] = s.Seed },
                ["deterministic_clustering"] = new JsonObject { ["Bool"] = true },
            },
            // What arrowspace's keys cannot say: how this builder made the graph.
            ["taucluster_builder"] = new JsonObject
            {
                ["source"] = s.Source,
                ["clustering"] = "k-means++ then Lloyd",
                ["kmeans_iterations"] = s.Iterations,
                ["kmeans_converged"] = s.Converged,
                ["distance"] = "rectified cosine 1 - max(0, cos) between feature columns of the centroids",
                ["weight"] = "1 / (1 + (d / sigma)^p)",
                ["sigma_from_data"] = s.SigmaFromData,
                ["edges"] = s.Edges,
                ["connected_components"] = s.ConnectedComponents,
            },
        };
        return Manifold.WriteAsync(directory, build.Laplacian, s.Taumode, metadata, cancellation);
    }

    /// <summary>
    /// Seeded k-means: k-means++ seeding (each next centroid an item drawn with probability ∝ its squared distance to the
    /// nearest centroid so far), then Lloyd iterations until no item changes cluster or <paramref name="maxIterations"/>.
    /// Deterministic for a seed: draws come from one <see cref="Xoshiro256"/>, ties go to the lowest centroid, sums are
    /// taken in item order in double. A cluster left empty keeps its previous centroid.
    /// </summary>
    public static KMeansResult KMeans(ItemMatrix items, int clusters, ulong seed, int maxIterations, Action<string>? progress = null,
        CancellationToken cancellation = default)
    {
        int n = items.Rows, d = items.Columns;
        if (clusters < 1 || clusters > n) throw new ManifoldBuildException($"centroids = {clusters} must lie in [1, {n}]");
        var x = items.Data;
        var centroids = new float[clusters * d];
        var rng = new Xoshiro256(seed);

        var nearest = new double[n];
        Array.Fill(nearest, double.PositiveInfinity);
        int chosen = (int)(rng.NextUInt64() % (ulong)n);
        for (int c = 0; ; c++)
        {
            x.AsSpan(chosen * d, d).CopyTo(centroids.AsSpan(c * d, d));
            if (c + 1 == clusters) break;
            cancellation.ThrowIfCancellationRequested();
            int current = c;
            ParallelRanges(n, (start, end) =>
            {
                var centroid = centroids.AsSpan(current * d, d);
                for (int i = start; i < end; i++)
                {
                    float distance = TensorPrimitives.Distance(x.AsSpan(i * d, d), centroid);
                    nearest[i] = Math.Min(nearest[i], (double)distance * distance);
                }
            });
            chosen = DrawProportional(nearest, rng);
        }

        var assignments = new int[n];
        Array.Fill(assignments, -1);
        var norms = new double[clusters];
        var sums = new double[clusters * d];
        var counts = new int[clusters];
        int iteration = 0;
        bool converged = false;
        while (iteration < maxIterations)
        {
            cancellation.ThrowIfCancellationRequested();
            iteration++;
            for (int c = 0; c < clusters; c++) norms[c] = TensorPrimitives.SumOfSquares<float>(centroids.AsSpan(c * d, d));
            int changed = 0;
            ParallelRanges(n, (start, end) =>
            {
                int localChanged = 0;
                for (int i = start; i < end; i++)
                {
                    // argmin ‖x − c‖² = argmin ‖c‖² − 2 x·c: one dot product per centroid.
                    var row = x.AsSpan(i * d, d);
                    int best = 0;
                    double bestScore = double.PositiveInfinity;
                    for (int c = 0; c < clusters; c++)
                    {
                        double score = norms[c] - 2.0 * TensorPrimitives.Dot(row, centroids.AsSpan(c * d, d));
                        if (score < bestScore) { bestScore = score; best = c; }
                    }
                    if (assignments[i] != best) { assignments[i] = best; localChanged++; }
                }
                Interlocked.Add(ref changed, localChanged);
            });
            if (changed == 0) { converged = true; break; }   // the centroids are already the means of these clusters
            progress?.Invoke($"k-means iteration {iteration}: {changed} of {n} items changed cluster");

            Array.Clear(sums);
            Array.Clear(counts);
            for (int i = 0; i < n; i++)
            {
                int c = assignments[i];
                counts[c]++;
                var sum = sums.AsSpan(c * d, d);
                var row = x.AsSpan(i * d, d);
                for (int j = 0; j < d; j++) sum[j] += row[j];
            }
            for (int c = 0; c < clusters; c++)
            {
                if (counts[c] == 0) continue;
                var centroid = centroids.AsSpan(c * d, d);
                var sum = sums.AsSpan(c * d, d);
                for (int j = 0; j < d; j++) centroid[j] = (float)(sum[j] / counts[c]);
            }
        }
        return new KMeansResult(centroids, clusters, d, assignments, iteration, converged);
    }

    /// <summary>An index drawn with probability ∝ weight; uniform when every weight is 0 (all items already centroids).</summary>
    private static int DrawProportional(double[] weights, Xoshiro256 rng)
    {
        double total = 0;
        foreach (double w in weights) total += w;
        if (!(total > 0)) return (int)(rng.NextUInt64() % (ulong)weights.Length);
        double target = rng.NextDouble() * total, cumulative = 0;
        int last = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] <= 0) continue;
            cumulative += weights[i];
            last = i;
            if (cumulative > target) return i;
        }
        return last;   // rounding left the target just above the running sum
    }

    /// <summary>
    /// The k-NN feature graph over the D columns of a row-major [<paramref name="count"/>, D] centroid matrix.
    /// Column i's neighbours are the k columns nearest by rectified cosine distance d = 1 − max(0, cos) among those with a
    /// positive cosine similarity (ties to the lower index); an edge joins i and j when either chose the other, weighted
    /// w = 1 / (1 + (d/σ)^p), and L = Deg − W. σ null: the median distance of the edges (1 if they are all 0).
    /// </summary>
    public static FeatureGraph BuildFeatureGraph(float[] centroids, int count, int features, int neighbours, double? sigma, double p,
        string name, TaumodeKind taumode)
    {
        if (features < 2) throw new ManifoldBuildException($"{features} feature(s); a feature graph needs at least 2");
        if (count < 1 || centroids.LongLength != (long)count * features)
            throw new ManifoldBuildException($"{centroids.LongLength} values do not make a [{count}, {features}] centroid matrix");
        if (neighbours < 1 || neighbours >= features)
            throw new ManifoldBuildException($"k = {neighbours} must lie in [1, {features - 1}]: fewer neighbours than the {features} features");
        ValidateKernel(sigma, p);

        var distance = ColumnDistances(centroids, count, features);
        var edges = new SortedSet<(int Low, int High)>();
        var candidates = new List<int>(features);
        for (int i = 0; i < features; i++)
        {
            candidates.Clear();
            for (int j = 0; j < features; j++)
                if (j != i && double.IsFinite(distance[i * features + j])) candidates.Add(j);
            int row = i;
            candidates.Sort((a, b) =>
            {
                int byDistance = distance[row * features + a].CompareTo(distance[row * features + b]);
                return byDistance != 0 ? byDistance : a.CompareTo(b);
            });
            foreach (int j in candidates.Take(neighbours)) edges.Add((Math.Min(i, j), Math.Max(i, j)));
        }
        if (edges.Count == 0)
            throw new ManifoldBuildException($"no two of the {features} feature columns have a positive cosine similarity across the {count} centroids, so the graph has no edges");

        bool fromData = sigma is null;
        double scale = sigma ?? MedianPositive(edges.Select(e => distance[e.Low * features + e.High]));
        var degree = new double[features];
        var rows = new List<long>(2 * edges.Count + features);
        var cols = new List<long>(2 * edges.Count + features);
        var values = new List<double>(2 * edges.Count + features);
        foreach (var (low, high) in edges)
        {
            double w = KernelWeight(distance[low * features + high], scale, p);
            degree[low] += w;
            degree[high] += w;
            rows.Add(low); cols.Add(high); values.Add(-w);
            rows.Add(high); cols.Add(low); values.Add(-w);
        }
        for (int i = 0; i < features; i++)
            if (degree[i] != 0) { rows.Add(i); cols.Add(i); values.Add(degree[i]); }
        var laplacian = Laplacian.FromTriplets(name, features, features, rows.ToArray(), cols.ToArray(), values.ToArray(), taumode);
        return new FeatureGraph(laplacian, scale, fromData, edges.Count);
    }

    /// <summary>arrowspace's kernel: w = 1 / (1 + (d/σ)^p), 1 at d = 0, ½ at d = σ.</summary>
    public static double KernelWeight(double distance, double sigma, double p) => 1.0 / (1.0 + Math.Pow(distance / sigma, p));

    /// <summary>
    /// Rectified cosine distances between the columns, row-major D×D, computed once per pair so the matrix is exactly
    /// symmetric; +∞ where the columns have no positive similarity (or one of them is all zero): no edge there.
    /// </summary>
    private static double[] ColumnDistances(float[] centroids, int count, int features)
    {
        var columns = new double[(long)features * count];
        for (int c = 0; c < count; c++)
            for (int f = 0; f < features; f++)
                columns[f * count + c] = centroids[c * features + f];
        var norms = new double[features];
        for (int f = 0; f < features; f++) norms[f] = TensorPrimitives.Norm<double>(columns.AsSpan(f * count, count));

        var distance = new double[(long)features * features];
        Parallel.For(0, features, i =>
        {
            var ci = columns.AsSpan(i * count, count);
            for (int j = i + 1; j < features; j++)
            {
                double d = double.PositiveInfinity;
                if (norms[i] > 0 && norms[j] > 0)
                {
                    double cos = TensorPrimitives.Dot<double>(ci, columns.AsSpan(j * count, count)) / (norms[i] * norms[j]);
                    if (cos > 0) d = 1.0 - Math.Min(cos, 1.0);
                }
                distance[i * features + j] = distance[j * features + i] = d;
            }
        });
        return distance;
    }

    private static double MedianPositive(IEnumerable<double> distances)
    {
        var positive = distances.Where(d => d > 0).Order().ToArray();
        if (positive.Length == 0) return 1.0;   // every edge joins identical directions: w = 1 whatever σ
        int middle = positive.Length / 2;
        return positive.Length % 2 == 1 ? positive[middle] : 0.5 * (positive[middle - 1] + positive[middle]);
    }

    private static void ValidateKernel(double? sigma, double p)
    {
        if (sigma is { } s && !(double.IsFinite(s) && s > 0)) throw new ManifoldBuildException($"sigma = {s} must be a positive number");
        if (!(double.IsFinite(p) && p > 0)) throw new ManifoldBuildException($"p = {p} must be a positive number");
    }

    private static void RequireFinite(ItemMatrix items)
    {
        var data = items.Data;
        for (long i = 0; i < data.LongLength; i++)
            if (!float.IsFinite(data[i]))
                throw new ManifoldBuildException($"{items.Source}: item {i / items.Columns}, feature {i % items.Columns} is {data[i]}; every value must be finite (as float32)");
    }

    /// <summary>Runs <paramref name="body"/> over [0, count) in chunks on the thread pool; each chunk is independent, so the result is the same as a sequential loop.</summary>
    private static void ParallelRanges(int count, Action<int, int> body)
    {
        const int Chunk = 256;
        int chunks = (count + Chunk - 1) / Chunk;
        Parallel.For(0, chunks, c => body(c * Chunk, Math.Min(count, (c + 1) * Chunk)));
    }
}
