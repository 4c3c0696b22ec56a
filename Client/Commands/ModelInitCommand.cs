using TauCluster.Engine;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau model init</c>: a model directory of seeded random weights for any config.json.</summary>
internal static class ModelInitCommand
{
    public const string Usage = """
        tau model init --config FILE --out DIR [--seed S]
        """;

    private static readonly string[] Options = ["--config", "--out", "--seed"];

    public static int Run(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, Options, []);
        var config = ModelConfig.Load(a.Required("--config"));
        string output = NewOutputDirectory(a);
        Laplacian? manifold = null;
        if (config.ManifoldDirectory is { } m)
            manifold = Manifold.Load(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(a.Required("--config")))!, m));
        TauModel.CreateRandom(config, a.ULong("--seed") ?? 0, manifold).Save(output);
        Console.WriteLine($"wrote {output}: {config.NLayer} layers, n_embd {config.NEmbd}, {config.NHead} heads / {config.NKvHead} kv heads, vocab {config.VocabSize}, {config.Attention.ToString().ToLowerInvariant()} attention");
        return 0;
    }
}
