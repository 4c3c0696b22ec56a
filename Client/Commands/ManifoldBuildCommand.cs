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
    public const string Usage = """
        tau manifold build --from FILE.npy|FILE.safetensors|MODEL_DIR [--tensor NAME] --out DIR [--centroids N] [--k K]
                           [--sigma S] [--p P] [--seed S] [--iterations N] [--tau-mode median|mean|fixed|percentile] [--name NAME]
        """;

    private static readonly string[] Options =
        ["--from", "--tensor", "--out", "--centroids", "--k", "--sigma", "--p", "--seed", "--iterations", "--tau-mode", "--name"];

    public static async Task<int> Run(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args, Options, []);
        string from = a.Required("--from"), output = NewOutputDirectory(a);
        TaumodeKind taumode = a.String("--tau-mode") is { } modeText ? ParseTaumode(modeText) : TaumodeKind.Median;
        var options = new ManifoldBuildOptions
        {
            Centroids = a.Int("--centroids"),
            Neighbours = a.Int("--k"),
            Sigma = a.Double("--sigma"),
            P = a.Double("--p") ?? ManifoldBuilder.DefaultP,
            Seed = a.ULong("--seed") ?? ManifoldBuilder.DefaultSeed,
            MaxIterations = a.Int("--iterations") ?? new ManifoldBuildOptions().MaxIterations,
            Taumode = taumode,
            Name = a.String("--name") ?? Path.GetFileName(Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar)),
        };

        var clock = Stopwatch.StartNew();
        Progress($"reading {from} …");
        var items = ManifoldInputs.Load(from, a.String("--tensor"));
        var build = ManifoldBuilder.Build(items, options, message => Progress(message));
        await ManifoldBuilder.WriteAsync(output, build, cancellation);
        var s = build.Settings;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {output}: {s.Features}×{s.Features} Laplacian '{s.Name}', {build.Laplacian.NonZeros} non-zeros, {s.Edges} edges, {s.ConnectedComponents} connected component(s); " +
            $"{s.Items} items → {s.Centroids} centroids ({s.Iterations} k-means iterations{(s.Converged ? "" : ", not converged")}), " +
            $"k {s.Neighbours}, sigma {s.Sigma:G6}{(s.SigmaFromData ? " (median edge distance)" : "")}, p {s.P:G6}, seed {s.Seed}, tau mode {s.Taumode.ToString().ToLowerInvariant()}; {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }
}
