using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau bench decode</c>: decode ms/token at each context for each attention, on the engine alone. The cache is filled
/// synthetically up to the context (decode cost depends only on how much is cached), then whole decode steps are timed:
/// forward pass and greedy choice.
/// </summary>
internal static class BenchDecodeCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.PaperName);
    private static readonly Option<string> Contexts = Text("--contexts", "1024,65536", "the contexts to time at, comma-separated", "1024,4096");
    private static readonly Option<string> Attention = Text("--attention", "tau-index,tau-dense,causal", "the attentions to time, comma-separated", "tau-index,tau-dense,causal");
    private static readonly Option<int> Steps = Number("--steps", "N", "decode steps timed at each context", 32);
    private static readonly Option<string> Device = DeviceOption();
    private static readonly Option<bool> Json = JsonOption();

    private static readonly Dictionary<string, (AttentionKind Kind, TauAttentionPath Path)> Attentions = new()
    {
        ["tau-index"] = (AttentionKind.Tau, TauAttentionPath.Index),
        ["tau-dense"] = (AttentionKind.Tau, TauAttentionPath.Dense),
        ["causal"] = (AttentionKind.Causal, TauAttentionPath.Dense),
    };

    public static Command Command()
    {
        var command = new Command("decode", "decode ms/token at each context for each attention, on the engine alone (the cache filled synthetically)")
        {
            Model, Contexts, Attention, Steps, Device, Json,
        };
        command.SetAction((r, cancellation) => Task.FromResult(Run(r, cancellation)));
        return command;
    }

    private static int Run(ParseResult r, CancellationToken cancellation)
    {
        var contexts = Counts(r.GetValue(Contexts)!, "--contexts");
        var attentions = List(r.GetValue(Attention)!, name => Attentions.TryGetValue(name, out _) ? name
            : throw new UsageException($"--attention '{name}' must be tau-index, tau-dense or causal"), "--attention", NumberList);
        int steps = AtLeastOne(r.GetValue(Steps), "--steps");
        bool json = r.GetValue(Json);
        var model = LocalModel(EmbeddedOptions(), r.GetValue(Model)!, out _);
        using var workers = new ComputeWorkers(device: r.Device(Device));
        var results = new JsonArray();
        foreach (var attention in attentions)
        {
            var (kind, path) = Attentions[attention];
            var variant = model.Variant(kind, contexts.Max() + steps + 16);
            foreach (int context in contexts)
            {
                Progress($"decode {attention} at context {context} on {workers.Device} …");
                using var session = workers.NewSession(variant, path: path);
                session.FillSynthetic(context - 1, seed: 1);
                var logits = session.Append(1);
                for (int i = 0; i < 4; i++) logits = session.Append(Sampler.ArgMax(logits));   // warm up
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < steps; i++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    logits = session.Append(Sampler.ArgMax(logits));
                }
                double msPerToken = clock.Elapsed.TotalMilliseconds / steps;
                long bytesPerToken = session.Cache.Bytes / session.Cache.Length;
                results.Add(new JsonObject
                {
                    ["attention"] = attention, ["context"] = context, ["device"] = workers.Device.Name,
                    ["ms_per_token"] = Math.Round(msPerToken, 3), ["cache_bytes_per_token"] = bytesPerToken,
                });
                if (!json)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{attention,-10} context {context,7}: {msPerToken,8:F3} ms/token, {bytesPerToken,6} cache bytes/token"));
            }
        }
        if (json) Console.WriteLine(new JsonObject { ["results"] = results, ["synthetic_cache_fill"] = true }.ToJsonString());
        return 0;
    }
}
