using System.Globalization;
using System.Text.Json.Nodes;
using LLama.Native;
using TauCluster.Engine;
using TauCluster.Peer;

// llama.cpp (LLamaSharp 0.30.0, CPU backend) on a llama-architecture GGUF of the tau paper shape, written here.
//   dotnet benchmarks/TauCluster.Peer/bin/Release/net10.0/TauCluster.Peer.dll [--sequences 1,16,64] [--tokens 64]
//       [--contexts 1024,16384,65536] [--steps 32] [--warmup 4] [--repeats 3] [--threads N] [--only sequences|decode] [--kv-unified true|false] [--flash-attention auto|on|off] [--dtype f32|f16|bf16] [--gguf PATH] [--json] [--verbose]
//   dotnet …/TauCluster.Peer.dll combine TAU_SESSIONS.json TAU_DECODE.json PEER.json… [--tau-sessions-bf16 TAU_SESSIONS_BF16.json]
//       [--peer-sequences-16 PEER_F16.json] > COMBINED.json   (benchmarks/peer.sh; the two options add the 16-bit rows)
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
try
{
    if (args is ["combine", .. var files])
        return Combine.Run(files);
    return Bench(new Arguments(args));
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine("usage: TauCluster.Peer [--sequences 1,16,64] [--tokens N] [--contexts 1024,16384] [--steps N] [--warmup N] [--repeats N] [--threads N] [--only sequences|decode] [--kv-unified true|false] [--flash-attention auto|on|off] [--dtype f32|f16|bf16] [--gguf PATH] [--json] [--verbose] | TauCluster.Peer combine TAU_SESSIONS.json TAU_DECODE.json PEER.json… [--tau-sessions-bf16 FILE] [--peer-sequences-16 FILE]");
    return 2;
}

static int Bench(Arguments a)
{
    bool json = a.Has("--json"), verbose = a.Has("--verbose");
    string only = a.String("--only") ?? "all";
    if (only is not ("all" or "sequences" or "decode")) throw new ArgumentException("--only must be sequences or decode");
    string dtypeText = a.String("--dtype") ?? "f32";
    var dtype = TensorDTypes.Parse(dtypeText) ?? throw new ArgumentException($"--dtype takes f32, f16 or bf16, not '{dtypeText}'");
    string dtypeName = dtype.ToString().ToLowerInvariant();
    var settings = new BenchSettings(
        Gguf: a.String("--gguf") ?? Path.Combine(Path.GetTempPath(), "taucluster-peer", $"paper-shape-llama-{dtypeName}-seed{PeerModel.Seed}-r{PeerModel.FormatRevision}.gguf"),
        Sequences: a.Ints("--sequences") ?? [1, 16, 64],
        Tokens: a.Int("--tokens") ?? 64,
        Contexts: a.Ints("--contexts") ?? [1024, 16384],
        Steps: a.Int("--steps") ?? 32,
        Threads: a.Int("--threads") ?? Environment.ProcessorCount,
        Warmup: a.Int("--warmup") ?? 4,
        Repeats: a.Int("--repeats") ?? 3,
        RunSequences: only is "all" or "sequences",
        RunDecode: only is "all" or "decode",
        KvUnified: (a.String("--kv-unified") ?? "true") switch
        {
            "true" => true, "false" => false, var v => throw new ArgumentException($"--kv-unified takes true or false, not '{v}'"),
        },
        FlashAttention: (a.String("--flash-attention") ?? "auto") switch
        {
            "auto" => null, "on" => true, "off" => false,
            var v => throw new ArgumentException($"--flash-attention takes auto, on or off, not '{v}'"),
        });
    void Say(string line) { if (!json) Console.WriteLine(line); else Console.Error.WriteLine(line); }

    // llama.cpp logs to stderr unless told otherwise: keep its lines, show them with --verbose, and keep the one
    // that names the native library LLamaSharp picked.
    var log = new List<string>();
    NativeLibraryConfig.All.WithLogCallback((level, message) =>
    {
        lock (log) log.Add($"{level}: {message.TrimEnd()}");
        if (verbose) Console.Error.Write(message);
    });

    if (!File.Exists(settings.Gguf))
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(settings.Gguf))!);
        string staging = $"{settings.Gguf}.tmp-{Environment.ProcessId}";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long size = PeerModel.Write(staging, dtype);
        File.Move(staging, settings.Gguf, overwrite: true);
        Say($"wrote {settings.Gguf}: {size:N0} bytes in {clock.Elapsed.TotalSeconds:F1} s");
    }

    using var bench = new LlamaBench(settings, LlamaBench.Load(settings.Gguf));
    var check = bench.Check();
    string systemInfo = System.Runtime.InteropServices.Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info()) ?? "";
    string library = log.Select(l => l).LastOrDefault(l => l.Contains("libllama", StringComparison.Ordinal)) ?? "(not logged)";
    Say($"llama.cpp loaded {settings.Gguf}: {check.Parameters:N0} parameters, {check.SizeBytes:N0} bytes, vocab {check.VocabCount}, n_embd {check.EmbeddingSize}; first logits finite: {check.LogitsFinite} (min {check.LogitMin:F3}, max {check.LogitMax:F3})");
    Say($"weight bytes per decoded token ({dtype} matrices): {PeerModel.WeightBytesPerToken(dtype):N0} (matrices {PeerModel.MatrixBytesPerToken(dtype):N0}; the tau paper shape: {PeerModel.TauWeightBytesPerToken(dtype):N0})");
    Say($"system: {systemInfo.Trim()}");
    if (!check.LogitsFinite) throw new InvalidOperationException("llama.cpp's logits are not finite, or all equal: the GGUF is wrong");
    if (PeerModel.MatrixBytesPerToken(dtype) != PeerModel.TauWeightBytesPerToken(dtype))
        throw new InvalidOperationException("the peer's matrix bytes per token differ from the tau paper shape's");

    // The machine is shared: llama.cpp's OpenMP threads spin at their barriers and slow down many times over when
    // other processes want the cores, so each run records the load average around what it timed.
    string loadBefore = LoadAverage();
    var sequences = settings.RunSequences ? bench.Sequences(Say).ToList() : [];
    var decode = settings.RunDecode ? bench.Decode(Say).ToList() : [];
    string loadAfter = LoadAverage();
    Say($"load average before {loadBefore}, after {loadAfter}");

    if (json)
    {
        Console.WriteLine(new JsonObject
        {
            ["peer"] = "llama.cpp (LLamaSharp 0.30.0, LLamaSharp.Backend.Cpu 0.30.0)",
            ["native_library"] = library,
            ["system_info"] = systemInfo.Trim(),
            ["load_average_before"] = loadBefore, ["load_average_after"] = loadAfter,
            ["settings"] = new JsonObject
            {
                ["threads"] = settings.Threads, ["n_batch"] = BenchSettings.BatchSize, ["n_ubatch"] = BenchSettings.UBatchSize,
                ["n_seq_max"] = BenchSettings.SeqMax, ["kv_unified"] = settings.KvUnified, ["kv_cache_type"] = "f16 (llama.cpp's default)", ["flash_attention"] = a.String("--flash-attention") ?? "auto",
                ["prompt_tokens"] = BenchSettings.PromptTokens, ["tokens"] = settings.Tokens, ["steps"] = settings.Steps, ["warmup"] = settings.Warmup, ["repeats"] = settings.Repeats,
                ["sampling"] = "greedy (argmax of the logits)",
            },
            ["model"] = new JsonObject
            {
                ["gguf"] = settings.Gguf, ["architecture"] = "llama", ["n_embd"] = PeerModel.NEmbd, ["n_layer"] = PeerModel.NLayer,
                ["n_head"] = PeerModel.NHead, ["n_kv_head"] = PeerModel.NKvHead, ["n_ff"] = PeerModel.FeedForward, ["n_vocab"] = PeerModel.Vocab,
                ["rope_base"] = PeerModel.RopeBase, ["dtype"] = dtype.ToString(), ["seed"] = PeerModel.Seed,
                ["n_params"] = check.Parameters, ["n_params_expected"] = PeerModel.Parameters, ["size_bytes"] = check.SizeBytes,
                ["weight_bytes_per_token"] = PeerModel.WeightBytesPerToken(dtype), ["matrix_bytes_per_token"] = PeerModel.MatrixBytesPerToken(dtype),
                ["tau_weight_bytes_per_token"] = PeerModel.TauWeightBytesPerToken(dtype),
                ["logits_finite"] = check.LogitsFinite, ["logit_min"] = check.LogitMin, ["logit_max"] = check.LogitMax,
            },
            ["sequences"] = new JsonArray(sequences.Select(r => (JsonNode)new JsonObject
            {
                ["sequences"] = r.Sequences, ["dtype"] = dtype.ToString(), ["tokens"] = r.Tokens, ["seconds"] = Math.Round(r.Seconds, 4),
                ["tokens_per_second"] = Math.Round(r.TokensPerSecond, 1),
            }).ToArray()),
            ["decode"] = new JsonArray(decode.Select(r => (JsonNode)new JsonObject
            {
                ["context"] = r.Context, ["dtype"] = dtype.ToString(), ["prefill_seconds"] = Math.Round(r.PrefillSeconds, 2),
                ["prefill_tokens_per_second"] = Math.Round(r.PrefillTokensPerSecond, 1), ["steps"] = r.Steps,
                ["ms_per_token"] = Math.Round(r.MsPerToken, 3),
            }).ToArray()),
        }.ToJsonString());
    }
    return 0;
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
