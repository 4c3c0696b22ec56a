using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau generate</c>: one prompt, one streamed continuation, in a session kept for later runs.</summary>
internal static class GenerateCommand
{
    public const string Usage = """
        tau generate [--model DIR|NAME] (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
                     [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--session ID]
                     [--presence-penalty X] [--frequency-penalty X] [--repetition-penalty X]
                     [--domain DIR|NAME] [--cluster HOST:PORT[,HOST:PORT…] | redis://HOST:PORT]
                     [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--device cpu|cuda[:N]|ilgpu-cpu] [--json]
        """;

    private static readonly string[] Options =
        ["--model", "--prompt", "--prompt-ids", "--max-tokens", "--session", "--domain", .. SamplingOptionNames, .. ClusterOptionNames];

    private static readonly string[] Flags = ["--json"];

    public static async Task<int> Run(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args, Options, Flags);
        if (a.Has("--prompt") == a.Has("--prompt-ids")) throw new UsageException("give exactly one of --prompt and --prompt-ids");
        int maxTokens = AtLeastOne(a.Int("--max-tokens") ?? 32, "--max-tokens");
        var sampling = Sampling(a);
        var prompt = a.String("--prompt") is { } promptText ? PromptInput.FromText(promptText)
            : PromptInput.FromIds(List(a.Required("--prompt-ids"), int.Parse, "--prompt-ids", "comma-separated integers"));
        if (prompt.Text is "") throw new UsageException("the prompt is empty");
        bool json = a.Has("--json");
        string sessionId = SessionId(a);

        await using var cluster = await Connect(a, cancellation);
        var request = new CompletionRequest(new SessionSpec(cluster.Model, cluster.Domain, sampling), prompt, maxTokens);
        var clock = Stopwatch.StartNew();
        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        bool hasText = false;
        double ttftMs = 0;
        PromptUsage? usage = null;
        SessionInfo? info = null;
        await foreach (var chunk in cluster.Connection.Sessions.Complete(sessionId, request, cancellation))
        {
            if (ids.Count == 0) ttftMs = clock.Elapsed.TotalMilliseconds;
            usage ??= chunk.Prompt;
            info = chunk.Session ?? info;
            ids.Add(chunk.Id);
            hasText |= chunk.Text is not null;
            text.Append(chunk.Text);
            if (json) continue;
            Console.Write(chunk.Text ?? (ids.Count == 1 ? $"{chunk.Id}" : $",{chunk.Id}"));
            Console.Out.Flush();
        }
        double seconds = clock.Elapsed.TotalSeconds, decodeSeconds = seconds - ttftMs / 1000;
        double tokensPerSecond = ids.Count > 1 && decodeSeconds > 0 ? (ids.Count - 1) / decodeSeconds : ids.Count / Math.Max(seconds, 1e-9);
        info ??= await cluster.Connection.Sessions.Info(sessionId, cancellation);   // a reply cut short has no last chunk
        int promptTokens = usage?.PrefilledTokens ?? 0;

        if (json)
        {
            Console.WriteLine(new JsonObject
            {
                ["session"] = sessionId,
                ["ids"] = new JsonArray(ids.Select(id => (JsonNode)id).ToArray()),
                ["text"] = hasText ? text.ToString() : null,
                ["stats"] = new JsonObject
                {
                    ["prompt_tokens"] = promptTokens,
                    ["generated_tokens"] = ids.Count,
                    ["cache_bytes"] = info.CacheBytes,
                    ["baseline_cache_bytes"] = info.BaselineCacheBytes,
                    ["ttft_ms"] = Math.Round(ttftMs, 3),
                    ["tokens_per_second"] = Math.Round(tokensPerSecond, 3),
                },
            }.ToJsonString());
        }
        else
        {
            Console.WriteLine();
            Progress(string.Create(CultureInfo.InvariantCulture,
                $"[session {sessionId}: {promptTokens} prompt + {ids.Count} generated tokens, ttft {ttftMs:F1} ms, {tokensPerSecond:F1} tok/s, cache {info.CacheBytes:N0} B vs {info.BaselineCacheBytes:N0} B for K/V]"),
                always: true);
        }
        return 0;
    }
}
