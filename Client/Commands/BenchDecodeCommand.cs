using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau bench decode</c>: decode ms/token at each context for each attention, on the engine alone. The cache is filled
/// synthetically up to the context (decode cost depends only on how much is cached), then whole decode steps are timed:
/// forward pass and greedy choice.
/// </summary>
internal static class BenchDecodeCommand
{
    public const string Usage = """
        tau bench decode [--model DIR|NAME] [--contexts 1024,65536] [--attention tau-index,tau-dense,causal] [--steps N]
                         [--device cpu|cuda[:N]|ilgpu-cpu] [--json]
        """;

    private static readonly string[] Options = ["--model", "--contexts", "--attention", "--steps", "--device"];

    private static readonly string[] Flags = ["--json"];

    private static readonly Dictionary<string, (AttentionKind Kind, TauAttentionPath Path)> Attentions = new()
    {
        ["tau-index"] = (AttentionKind.Tau, TauAttentionPath.Index),
        ["tau-dense"] = (AttentionKind.Tau, TauAttentionPath.Dense),
        ["causal"] = (AttentionKind.Causal, TauAttentionPath.Dense),
    };

    public static int Run(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, Options, Flags);
        var contexts = List(a.String("--contexts") ?? "1024,4096", int.Parse, "--contexts", NumberList);
        var attentions = List(a.String("--attention") ?? "tau-index,tau-dense,causal", name => Attentions.TryGetValue(name, out _) ? name
            : throw new UsageException($"--attention '{name}' must be tau-index, tau-dense or causal"), "--attention", NumberList);
        int steps = AtLeastOne(a.Int("--steps") ?? 32, "--steps");
        foreach (int context in contexts) AtLeastOne(context, "--contexts");
        var options = EmbeddedOptions();
        var model = BenchModel(options, a.String("--model"), out _);
        using var workers = new ComputeWorkers(device: Device(a));
        var results = new JsonArray();
        foreach (var attention in attentions)
        {
            var (kind, path) = Attentions[attention];
            var variant = model.Variant(kind, contexts.Max() + steps + 16);
            foreach (int context in contexts)
            {
                using var session = workers.NewSession(variant, path: path);
                session.FillSynthetic(context - 1, seed: 1);
                var logits = session.Append(1);
                for (int i = 0; i < 4; i++) logits = session.Append(Sampler.ArgMax(logits));   // warm up
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < steps; i++) logits = session.Append(Sampler.ArgMax(logits));
                double msPerToken = clock.Elapsed.TotalMilliseconds / steps;
                long bytesPerToken = session.Cache.Bytes / session.Cache.Length;
                results.Add(new JsonObject
                {
                    ["attention"] = attention, ["context"] = context, ["device"] = workers.Device.Name,
                    ["ms_per_token"] = Math.Round(msPerToken, 3), ["cache_bytes_per_token"] = bytesPerToken,
                });
                if (!a.Has("--json"))
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{attention,-10} context {context,7}: {msPerToken,8:F3} ms/token, {bytesPerToken,6} cache bytes/token"));
            }
        }
        if (a.Has("--json")) Console.WriteLine(new JsonObject { ["results"] = results, ["synthetic_cache_fill"] = true }.ToJsonString());
        return 0;
    }
}
