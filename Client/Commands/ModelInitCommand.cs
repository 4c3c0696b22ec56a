using TauCluster.Engine;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau model init</c>: a model directory of seeded random weights for any config.json, stored as F32, F16 or BF16
/// (the same draws, rounded to nearest); a 16-bit model stays 16-bit in the server's memory.
/// </summary>
internal static class ModelInitCommand
{
    public const string Usage = """
        tau model init --config FILE --out DIR [--seed S] [--dtype f32|f16|bf16]
        """;

    private static readonly string[] Options = ["--config", "--out", "--seed", "--dtype"];

    public static int Run(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, Options, []);
        var config = ModelConfig.Load(a.Required("--config"));
        var type = a.String("--dtype") is { } text
            ? TensorDTypes.Parse(text) ?? throw new UsageException($"--dtype '{text}' must be f32, f16 or bf16")
            : TensorDType.F32;
        string output = NewOutputDirectory(a);
        Laplacian? manifold = null;
        if (config.ManifoldDirectory is { } m)
            manifold = Manifold.Load(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(a.Required("--config")))!, m));
        TauModel.CreateRandom(config, a.ULong("--seed") ?? 0, manifold, type).Save(output);
        Console.WriteLine($"wrote {output}: {config.NLayer} layers, n_embd {config.NEmbd}, {config.NHead} heads / {config.NKvHead} kv heads, vocab {config.VocabSize}, {config.Attention.ToString().ToLowerInvariant()} attention, {type} weights");
        return 0;
    }
}
