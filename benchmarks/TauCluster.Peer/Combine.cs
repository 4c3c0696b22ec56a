using System.Globalization;
using System.Text.Json.Nodes;

namespace TauCluster.Peer;

/// <summary>
/// Joins one run's <c>tau bench sessions --json</c>, <c>tau bench decode --json</c> and the peer's <c>--json</c> outputs
/// into one object with the side-by-side rows and their ratios (above 1: TauCluster is faster), prints it on stdout and
/// the Markdown table on stderr. Its <c>results</c> array has the decode rows of both, llama.cpp's as attention
/// "llama.cpp", in the shape TauCluster.Plots draws.
/// </summary>
public static class Combine
{
    public static int Run(string tauSessionsPath, string tauDecodePath, IEnumerable<string> peerPaths)
    {
        var tauSessions = Parse(tauSessionsPath);
        var tauDecode = Parse(tauDecodePath);
        var peers = peerPaths.Select(Parse).ToArray();
        var peerSequences = peers.SelectMany(p => p["sequences"]!.AsArray()).ToArray();
        var peerDecode = peers.SelectMany(p => p["decode"]!.AsArray()).ToArray();

        var rows = new JsonArray();
        var table = new List<string>
        {
            "| | llama.cpp | TauCluster | ratio (TauCluster speed / llama.cpp) |",
            "|---|---:|---:|---:|",
        };
        foreach (var peer in peerSequences)
        {
            int n = peer!["sequences"]!.GetValue<int>();
            var tau = tauSessions["results"]!.AsArray().FirstOrDefault(r => r!["sessions"]!.GetValue<int>() == n);
            if (tau is null) continue;
            double llama = peer["tokens_per_second"]!.GetValue<double>(), ours = tau["tokens_per_second"]!.GetValue<double>();
            string label = n == 1 ? "1 sequence / 1 session through the cluster" : $"{n} sequences in one batch / {n} sessions";
            rows.Add(Row(label, "tokens/s", llama, ours, ours / llama));
            table.Add(F($"| {label} (tokens/s) | {llama:F1} | {ours:F1} | {ours / llama:F2}× |"));
        }
        double engine = tauSessions["engine_tokens_per_second"]?.GetValue<double>() ?? double.NaN;
        var one = peerSequences.FirstOrDefault(p => p!["sequences"]!.GetValue<int>() == 1);
        if (one is not null && double.IsFinite(engine))
        {
            double llama = one["tokens_per_second"]!.GetValue<double>();
            rows.Add(Row("1 sequence / bare engine, 1 session", "tokens/s", llama, engine, engine / llama));
            table.Add(F($"| 1 sequence / bare engine, 1 session (tokens/s) | {llama:F1} | {engine:F1} | {engine / llama:F2}× |"));
        }
        var plot = new JsonArray();
        foreach (var t in tauDecode["results"]!.AsArray())
        {
            var row = t!.DeepClone().AsObject();
            row["attention"] = $"TauCluster {row["attention"]!.GetValue<string>()}";
            plot.Add(row);
        }
        foreach (var peer in peerDecode)
        {
            int context = peer!["context"]!.GetValue<int>();
            double llama = peer["ms_per_token"]!.GetValue<double>();
            plot.Add(new JsonObject { ["attention"] = "llama.cpp", ["context"] = context, ["ms_per_token"] = llama });
            foreach (var attention in new[] { "tau-index", "causal" })
            {
                var tau = tauDecode["results"]!.AsArray().FirstOrDefault(r =>
                    r!["context"]!.GetValue<int>() == context && r["attention"]!.GetValue<string>() == attention);
                if (tau is null) continue;
                double ours = tau["ms_per_token"]!.GetValue<double>();
                string label = $"decode at {K(context)} context ({(attention == "tau-index" ? "tau + λ index" : "TauCluster's causal dot-product")})";
                rows.Add(Row(label, "ms/token", llama, ours, llama / ours));
                table.Add(F($"| {label} (ms/token) | {llama:F2} | {ours:F2} | {llama / ours:F2}× |"));
            }
        }
        var prefill = peerDecode.Select(p => F($"{K(p!["context"]!.GetValue<int>())}: {p["prefill_seconds"]!.GetValue<double>():F1} s")).ToArray();
        if (prefill.Length > 0) table.Add($"\nllama.cpp prefill to fill its KV cache (not timed in decode): {string.Join(", ", prefill)}.");

        var combined = new JsonObject
        {
            ["machine"] = new JsonObject { ["cpu"] = CpuModel(), ["cores"] = Environment.ProcessorCount },
            ["comparison"] = rows,
            ["results"] = plot,
            ["tau_sessions"] = tauSessions.DeepClone(),
            ["tau_decode"] = tauDecode.DeepClone(),
            ["peer"] = new JsonArray(peers.Select(p => p.DeepClone()).ToArray()),
        };
        Console.WriteLine(combined.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        Console.Error.WriteLine(string.Join('\n', table));
        return 0;
    }

    private static JsonObject Row(string label, string unit, double llama, double ours, double ratio) => new()
    {
        ["row"] = label, ["unit"] = unit, ["llama_cpp"] = llama, ["taucluster"] = ours, ["ratio"] = Math.Round(ratio, 3),
    };

    /// <summary>The last JSON object in a file: the tools print one object on their last line, after any notes.</summary>
    private static JsonNode Parse(string path)
    {
        var line = File.ReadLines(path).LastOrDefault(l => l.TrimStart().StartsWith('{'))
            ?? throw new ArgumentException($"{path} holds no JSON object");
        return JsonNode.Parse(line) ?? throw new ArgumentException($"{path}: empty JSON");
    }

    private static string K(int context) => context >= 1024 && context % 1024 == 0 ? $"{context / 1024}K" : $"{context}";

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static string CpuModel() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"
            : "unknown";
}
