using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using TauCluster.Engine;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau manifold build</c>: clusters items (a .npy or safetensors [N, D] matrix, or a model's layer-0 q/k head vectors)
/// and writes the feature graph's Laplacian as a manifold directory; prints one line saying what it built.
/// </summary>
internal static class ManifoldBuildCommand
{
    private static readonly Option<string> From = Text("--from", "FILE.npy|FILE.safetensors|MODEL_DIR",
        "the items: a [N, D] float matrix, or a model's layer-0 query and key head vectors", required: true);
    private static readonly Option<string> Tensor = Text("--tensor", "NAME", "the safetensors tensor, when the file has several");
    private static readonly Option<string> Out = Text("--out", "DIR", "the manifold directory to write (new or empty)", required: true);
    private static readonly Option<int?> Centroids = OptionalNumber<int>("--centroids", "N", WithDefault("k-means centroids X", $"⌈√N⌉, at most {ManifoldBuilder.MaxDefaultCentroids}"));
    private static readonly Option<int?> Neighbours = OptionalNumber<int>("--k", "K", WithDefault("nearest feature columns joined to each", $"min({ManifoldBuilder.DefaultNeighbours}, D − 1)"));
    private static readonly Option<double?> Sigma = OptionalNumber<double>("--sigma", "S", WithDefault("σ of the edge weight 1 / (1 + (d/σ)^p)", "the median edge distance"));
    private static readonly Option<double> P = Number("--p", "P", "p of the edge weight", ManifoldBuilder.DefaultP);
    private static readonly Option<ulong> Seed = Number("--seed", "S", "the k-means++ seed", ManifoldBuilder.DefaultSeed);
    private static readonly Option<int> Iterations = Number("--iterations", "N", "Lloyd iterations at most", new ManifoldBuildOptions().MaxIterations);
    private static readonly Option<string> TauMode = Text("--tau-mode", "median|mean|fixed|percentile", "how τ is picked for the models that use it", "median");
    private static readonly Option<string> Name = Text("--name", "NAME", WithDefault("the manifold's name", "the folder name of --out"));

    public static Command Command()
    {
        var command = new Command("build", "cluster items and write the feature graph's Laplacian as a manifold directory")
        {
            From, Tensor, Out, Centroids, Neighbours, Sigma, P, Seed, Iterations, TauMode, Name,
        };
        command.SetAction(Run);
        return command;
    }

    private static async Task<int> Run(ParseResult r, CancellationToken cancellation)
    {
        string from = r.GetValue(From)!, output = NewOutputDirectory(r.GetValue(Out)!);
        var options = new ManifoldBuildOptions
        {
            Centroids = r.GetValue(Centroids),
            Neighbours = r.GetValue(Neighbours),
            Sigma = r.GetValue(Sigma),
            P = r.GetValue(P),
            Seed = r.GetValue(Seed),
            MaxIterations = r.GetValue(Iterations),
            Taumode = ParseTaumode(r.GetValue(TauMode)!),
            Name = r.GetValue(Name) ?? Path.GetFileName(Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar)),
        };

        var clock = Stopwatch.StartNew();
        Progress($"reading {from} …");
        var items = ManifoldInputs.Load(from, r.GetValue(Tensor));
        var build = ManifoldBuilder.Build(items, options, message => Progress(message), cancellation);
        await ManifoldBuilder.WriteAsync(output, build, cancellation);
        var s = build.Settings;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {output}: {s.Features}×{s.Features} Laplacian '{s.Name}', {build.Laplacian.NonZeros} non-zeros, {s.Edges} edges, {s.ConnectedComponents} connected component(s); " +
            $"{s.Items} items → {s.Centroids} centroids ({s.Iterations} k-means iterations{(s.Converged ? "" : ", not converged")}), " +
            $"k {s.Neighbours}, sigma {s.Sigma:G6}{(s.SigmaFromData ? " (median edge distance)" : "")}, p {s.P:G6}, seed {s.Seed}, tau mode {s.Taumode.ToString().ToLowerInvariant()}; {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }
}
