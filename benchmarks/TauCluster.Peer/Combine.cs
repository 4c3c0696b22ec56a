using System.Globalization;
using System.Text.Json.Nodes;

namespace TauCluster.Peer;

/// <summary>
/// Joins one run's <c>tau bench sessions --json</c>, <c>tau bench decode --json</c> and the peer's <c>--json</c> outputs
/// into one object with the side-by-side rows and their ratios (above 1: TauCluster is faster), prints it on stdout and
/// the Markdown table on stderr. Its <c>results</c> array has the decode rows of both, llama.cpp's as attention
/// "llama.cpp", in the shape TauCluster.Plots draws. <c>--tau-sessions-bf16</c> (<c>tau bench sessions</c> on a BF16 copy
/// of the model) and <c>--peer-sequences-16</c> (the peer's sequences on an F16 or BF16 GGUF) add the 16-bit rows after
/// the others.
/// </summary>
public static class Combine
{
    private const string TauSessionsBf16Option = "--tau-sessions-bf16", PeerSequences16Option = "--peer-sequences-16";

    /// <summary><c>TAU_SESSIONS TAU_DECODE PEER… [--tau-sessions-bf16 FILE] [--peer-sequences-16 FILE]</c>.</summary>
    public static int Run(IReadOnlyList<string> args)
    {
        var files = new List<string>();
        string? tauSessionsBf16Path = null, peerSequences16Path = null;
        for (int i = 0; i < args.Count; i++)
        {
            bool hasValue = i + 1 < args.Count;
            if (args[i] == TauSessionsBf16Option && hasValue) tauSessionsBf16Path = args[++i];
            else if (args[i] == PeerSequences16Option && hasValue) peerSequences16Path = args[++i];
            else if (args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"combine: unknown or incomplete argument '{args[i]}'");
            else files.Add(args[i]);
        }
        if (files.Count < 3) throw new ArgumentException("combine takes TAU_SESSIONS.json TAU_DECODE.json and at least one PEER.json");

        var tauSessions = Parse(files[0]);
        var tauDecode = Parse(files[1]);
        var peers = files.Skip(2).Select(Parse).ToArray();
        var tauSessionsBf16 = tauSessionsBf16Path is null ? null : Parse(tauSessionsBf16Path);
        var peer16 = peerSequences16Path is null ? null : Parse(peerSequences16Path);
        var peerSequences = peers.SelectMany(p => p["sequences"]!.AsArray()).ToArray();
        var peerDecode = peers.SelectMany(p => p["decode"]!.AsArray()).ToArray();

        var rows = new JsonArray();
        var table = new List<string>
        {
            "| | llama.cpp | TauCluster | ratio (TauCluster speed / llama.cpp) |",
            "|---|---:|---:|---:|",
        };
        void AddSessionRows(IEnumerable<JsonNode?> peerRows, JsonNode tau, string types)
        {
            foreach (var peer in peerRows)
            {
                int n = peer!["sequences"]!.GetValue<int>();
                if (SessionsRate(tau, n) is not { } ours) continue;
                double llama = peer["tokens_per_second"]!.GetValue<double>();
                string label = (n == 1 ? "1 sequence / 1 session through the cluster" : $"{n} sequences in one batch / {n} sessions") + types;
                rows.Add(Row(label, "tokens/s", llama, ours, ours / llama));
                table.Add(F($"| {label} (tokens/s) | {llama:F1} | {ours:F1} | {ours / llama:F2}× |"));
            }
        }
        AddSessionRows(peerSequences, tauSessions, "");
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
        if (tauSessionsBf16 is not null && peer16 is not null)
        {
            // The peer's output names its weight type; tau's does not, so the option's name says it is BF16.
            string peerType = peer16["model"]?["dtype"]?.GetValue<string>() ?? "16-bit";
            AddSessionRows(peer16["sequences"]!.AsArray(), tauSessionsBf16, $", {peerType} (llama.cpp) vs BF16 (TauCluster)");
        }
        if (tauSessionsBf16 is not null && SessionsRate(tauSessions, 1) is { } f32 && SessionsRate(tauSessionsBf16, 1) is { } bf16)
        {
            // Not a llama.cpp comparison: the gain from halving the weight bytes each step reads, F32 in the llama.cpp
            // column's place.
            const string label = "TauCluster 1 session, BF16 vs F32 (tokens/s; ratio BF16 / F32)";
            rows.Add(new JsonObject { ["row"] = label, ["unit"] = "tokens/s", ["f32"] = f32, ["bf16"] = bf16, ["ratio"] = Math.Round(bf16 / f32, 3) });
            table.Add(F($"| {label} | F32 {f32:F1} | BF16 {bf16:F1} | {bf16 / f32:F2}× |"));
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
        if (tauSessionsBf16 is not null) combined["tau_sessions_bf16"] = tauSessionsBf16.DeepClone();
        if (peer16 is not null) combined["peer_16"] = peer16.DeepClone();
        Console.WriteLine(combined.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        Console.Error.WriteLine(string.Join('\n', table));
        return 0;
    }

    /// <summary>Tokens/s of the run with <paramref name="sessions"/> sessions in a <c>tau bench sessions</c> output, if it has one.</summary>
    private static double? SessionsRate(JsonNode tauSessions, int sessions) =>
        tauSessions["results"]!.AsArray().FirstOrDefault(r => r!["sessions"]!.GetValue<int>() == sessions)?["tokens_per_second"]!.GetValue<double>();

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
