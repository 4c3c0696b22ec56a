using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau generate</c>: one prompt, one streamed continuation, in a session kept for later runs.</summary>
internal static class GenerateCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.DefaultName);
    private static readonly Option<string> Prompt = Text("--prompt", "TEXT", "the prompt (give it or --prompt-ids)");
    private static readonly Option<string> PromptIds = Text("--prompt-ids", "1,2,3", "the prompt as comma-separated token ids");
    private static readonly Option<int> MaxTokens = Number("--max-tokens", "N", "tokens to generate at most", 32);
    private static readonly Option<string> Session = SessionOption();
    private static readonly Option<string> Domain = DomainOption();
    private static readonly Option<bool> Json = JsonOption();
    private static readonly SamplingFlags Sampling = new();
    private static readonly ClusterFlags Cluster = new();

    public static Command Command()
    {
        var command = new Command("generate", "one prompt, one streamed continuation, in a session kept for later runs") { Model, Prompt, PromptIds, MaxTokens, Session, Domain };
        Sampling.AddTo(command);
        Cluster.AddTo(command);
        command.Options.Add(Json);
        command.SetAction(Run);
        return command;
    }

    private static async Task<int> Run(ParseResult r, CancellationToken cancellation)
    {
        if (r.Given(Prompt) == r.Given(PromptIds)) throw new UsageException("give exactly one of --prompt and --prompt-ids");
        int maxTokens = AtLeastOne(r.GetValue(MaxTokens), "--max-tokens");
        var sampling = Sampling.Settings(r);
        var prompt = r.GetValue(Prompt) is { } promptText ? PromptInput.FromText(promptText)
            : PromptInput.FromIds(List(r.GetValue(PromptIds)!, int.Parse, "--prompt-ids", "comma-separated integers"));
        if (prompt.Text is "") throw new UsageException("the prompt is empty");
        bool json = r.GetValue(Json);
        string sessionId = SessionId(r.GetValue(Session));

        await using var cluster = await Cluster.Connect(r, r.GetValue(Model)!, r.GetValue(Domain), cancellation);
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
