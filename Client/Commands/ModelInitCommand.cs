using System.CommandLine;
using TauCluster.Engine;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau model init</c>: a model directory of seeded random weights for any config.json, stored as F32, F16 or BF16
/// (the same draws, rounded to nearest); a 16-bit model stays 16-bit in the server's memory.
/// </summary>
internal static class ModelInitCommand
{
    private static readonly Option<string> Config = Text("--config", "FILE", "the model's config.json", required: true);
    private static readonly Option<string> Out = Text("--out", "DIR", "the model directory to write (new or empty)", required: true);
    private static readonly Option<ulong> Seed = Number("--seed", "S", "the weights' seed", 0UL);
    private static readonly Option<string> DType = Text("--dtype", "f32|f16|bf16", "how the weights are stored", "f32");

    public static Command Command()
    {
        var command = new Command("init", "write a model of seeded random weights for a config.json") { Config, Out, Seed, DType };
        command.SetAction((r, cancellation) => Task.FromResult(Run(r, cancellation)));
        return command;
    }

    private static int Run(ParseResult r, CancellationToken cancellation)
    {
        string configFile = r.GetValue(Config)!;
        var config = ModelConfig.Load(configFile);
        string dtype = r.GetValue(DType)!;
        var type = TensorDTypes.Parse(dtype) ?? throw new UsageException($"--dtype '{dtype}' must be f32, f16 or bf16");
        string output = NewOutputDirectory(r.GetValue(Out)!);
        Laplacian? manifold = null;
        if (config.ManifoldDirectory is { } m)
            manifold = Manifold.Load(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configFile))!, m));
        var model = TauModel.CreateRandom(config, r.GetValue(Seed), manifold, type);
        cancellation.ThrowIfCancellationRequested();   // drawing a large model's weights takes a while: an interrupt stops before the files
        model.Save(output);
        Console.WriteLine($"wrote {output}: {config.NLayer} layers, n_embd {config.NEmbd}, {config.NHead} heads / {config.NKvHead} kv heads, vocab {config.VocabSize}, {config.Attention.ToString().ToLowerInvariant()} attention, {type} weights");
        return 0;
    }
}
