using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TauCluster.Engine;

namespace TauCluster.Client;

/// <summary><c>tau manifold inspect</c>: a manifold as one JSON object: size, τ mode, diagonal, random-vector energies and the Laplacian's spectrum.</summary>
internal static class ManifoldInspectCommand
{
    public static Command Command()
    {
        var directory = new Argument<string>("DIR") { Description = "the manifold directory (manifold.parquet, manifold.json)" };
        var command = new Command("inspect", "print a manifold's size, τ mode, diagonal, energies and spectrum as JSON") { directory };
        command.SetAction(r => Run(r.GetValue(directory)!));
        return command;
    }

    private static int Run(string directory)
    {
        var laplacian = Manifold.Load(directory);
        var energies = Enumerable.Range(0, 256).Select(i =>
        {
            var rng = new Xoshiro256((ulong)i + 1);
            var x = Enumerable.Range(0, laplacian.Dimension).Select(_ => (float)rng.NextGaussian()).ToArray();
            Kernels.RmsNorm(x, x);
            return Taumode.RayleighEnergy(x, laplacian, 1e-6);
        }).ToArray();
        var (diagMin, diagMax) = laplacian.DiagonalRange();
        var spectrum = LaplacianSpectrum.Of(laplacian);
        var (edges, counts) = spectrum.Histogram(10);
        double[] quantiles = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1];
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = laplacian.Name,
            dimension = laplacian.Dimension,
            non_zeros = laplacian.NonZeros,
            tau_mode = laplacian.DefaultTaumode?.ToString().ToLowerInvariant(),
            diagonal = new[] { diagMin, diagMax },
            energy_of_random_unit_vectors = new[] { energies.Min(), energies.Max() },
            spectrum = new
            {
                smallest = spectrum.Eigenvalues.Take(6).Select(Round).ToArray(),
                largest = Round(spectrum.Largest),
                zero_eigenvalues = spectrum.ZeroEigenvalues,
                zero_tolerance = spectrum.ZeroTolerance,
                connected_components = spectrum.ConnectedComponents,
                fiedler = Round(spectrum.Fiedler),
                quantiles = quantiles.ToDictionary(q => q.ToString(CultureInfo.InvariantCulture), q => Round(spectrum.Quantile(q))),
                histogram = new { edges = edges.Select(Round).ToArray(), counts },
            },
        }));
        return 0;

        // Eleven significant digits: far more than rounding leaves trustworthy, few enough to read; a ~1e-14 zero stays visible as such.
        static double Round(double v) => double.Parse(v.ToString("G11", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }
}
