using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary><c>tau bench decode</c> (the engine alone) and <c>tau bench sessions</c> (through an embedded cluster).</summary>
public static class Bench
{
    private static readonly Dictionary<string, (AttentionKind Kind, TauAttentionPath Path)> Attentions = new()
    {
        ["tau-index"] = (AttentionKind.Tau, TauAttentionPath.Index),
        ["tau-dense"] = (AttentionKind.Tau, TauAttentionPath.Dense),
        ["causal"] = (AttentionKind.Causal, TauAttentionPath.Dense),
    };

    /// <summary>
    /// Decode ms/token at each context for each attention. The cache is filled synthetically up to the context (decode
    /// cost depends only on how much is cached), then whole decode steps are timed: forward pass and greedy choice.
    /// </summary>
    public static int Decode(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, ["--model", "--contexts", "--attention", "--steps"], ["--json"]);
        var contexts = List(a.String("--contexts") ?? "1024,4096", int.Parse, "--contexts");
        var attentions = List(a.String("--attention") ?? "tau-index,tau-dense,causal", name => Attentions.TryGetValue(name, out _) ? name
            : throw new UsageException($"--attention '{name}' must be tau-index, tau-dense or causal"), "--attention");
        int steps = Positive(a.Int("--steps") ?? 32, "--steps");
        foreach (int context in contexts) Positive(context, "--contexts");
        var options = Commands.EmbeddedOptions();
        var model = LocalModel(options, a.String("--model"), out _);
        var results = new JsonArray();
        foreach (var attention in attentions)
        {
            var (kind, path) = Attentions[attention];
            var config = model.Config with { Attention = kind, SequenceLen = Math.Max(model.Config.SequenceLen, contexts.Max() + steps + 16) };
            var variant = TauModel.Create(config, model.Weights, model.DefaultDomain?.Laplacian);
            foreach (int context in contexts)
            {
                var session = new InferenceSession(variant, tauPath: path);
                session.FillSynthetic(context - 1, seed: 1);
                var logits = session.Append(1);
                for (int i = 0; i < 4; i++) logits = session.Append(Sampler.ArgMax(logits));   // warm up
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < steps; i++) logits = session.Append(Sampler.ArgMax(logits));
                double msPerToken = clock.Elapsed.TotalMilliseconds / steps;
                long bytesPerToken = session.Cache.Bytes / session.Cache.Length;
                results.Add(new JsonObject
                {
                    ["attention"] = attention, ["context"] = context,
                    ["ms_per_token"] = Math.Round(msPerToken, 3), ["cache_bytes_per_token"] = bytesPerToken,
                });
                if (!a.Has("--json"))
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{attention,-10} context {context,7}: {msPerToken,8:F3} ms/token, {bytesPerToken,6} cache bytes/token"));
            }
        }
        if (a.Has("--json")) Console.WriteLine(new JsonObject { ["results"] = results, ["synthetic_cache_fill"] = true }.ToJsonString());
        return 0;
    }

    /// <summary>
    /// Aggregate tokens/s of N concurrent sessions through an embedded one-silo cluster (session grains, layer workers,
    /// Orleans streams), beside one session on the bare engine: the cluster path's overhead.
    /// </summary>
    public static async Task<int> Sessions(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args, ["--model", "--sessions", "--tokens"], ["--json"]);
        var counts = List(a.String("--sessions") ?? "1,4", int.Parse, "--sessions");
        foreach (int count in counts) Positive(count, "--sessions");
        int tokens = Positive(a.Int("--tokens") ?? 64, "--tokens");
        var options = Commands.EmbeddedOptions();
        var model = LocalModel(options, a.String("--model"), out string name);
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8];

        // The bare engine: one session, the same sampling, the same number of tokens.
        var engine = new InferenceSession(model);
        var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
        var logits = engine.Append(prompt);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < tokens; i++) logits = engine.Append(sampler.Sample(logits));
        double engineRate = tokens / clock.Elapsed.TotalSeconds;

        await using var cluster = await ClusterConnection.StartEmbedded(options, cancellation);
        var spec = new SessionSpec(name, null, new SamplingSettings(0.8, 40, 0.95, 1));
        var results = new JsonArray();
        foreach (int count in counts)
        {
            var ids = Enumerable.Range(0, count).Select(i => $"bench-{Guid.NewGuid():N}").ToArray();
            foreach (var id in ids)
            {
                await cluster.Sessions.Open(id, spec, cancellation);
                await cluster.Sessions.Append(id, PromptInput.FromIds(prompt), cancellation);
            }
            clock.Restart();
            await Task.WhenAll(ids.Select(async id => { await foreach (var _ in cluster.Sessions.Generate(id, tokens, cancellation: cancellation)) { } }));
            double rate = count * tokens / clock.Elapsed.TotalSeconds;
            foreach (var id in ids) await cluster.Sessions.Session(id).Delete();
            results.Add(new JsonObject { ["sessions"] = count, ["tokens_per_second"] = Math.Round(rate, 1) });
            if (!a.Has("--json")) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count,3} sessions: {rate,8:F1} tokens/s"));
        }
        if (a.Has("--json"))
            Console.WriteLine(new JsonObject { ["results"] = results, ["engine_tokens_per_second"] = Math.Round(engineRate, 1) }.ToJsonString());
        else
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bare engine, 1 session: {engineRate:F1} tokens/s"));
        return 0;
    }

    /// <summary>The model the embedded silo would serve under the same name, resolved by the same model store.</summary>
    private static TauModel LocalModel(TauClusterOptions options, string? nameOrDirectory, out string name)
    {
        name = Commands.LocalName("model", nameOrDirectory ?? ModelStore.PaperName, options.Models);
        return new ModelStore(Microsoft.Extensions.Options.Options.Create(options), Microsoft.Extensions.Logging.Abstractions.NullLogger<ModelStore>.Instance).Get(name);
    }

    private static T[] List<T>(string text, Func<string, T> parse, string option)
    {
        try
        {
            var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToArray();
            return items.Length > 0 ? items : throw new UsageException($"{option} is empty");
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new UsageException($"{option} '{text}' must be a comma-separated list of numbers");
        }
    }

    private static int Positive(int value, string option) =>
        value >= 1 ? value : throw new UsageException($"{option} {value} must be at least 1");
}
