using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using TauCluster.Engine;

namespace TauCluster.Client.Tests;

/// <summary>The real <c>tau</c> executable, run as a separate process, as a user would.</summary>
public sealed class TauCommandTests : IDisposable
{
    private readonly string home = Path.Combine(Path.GetTempPath(), "tau-cli-tests", Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(home, true); } catch (IOException) { }
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr);

    private Result Tau(params string[] args) => TauWithInput(null, args);

    private Result TauWithInput(string? input, params string[] args)
    {
        using var process = Process.Start(TauStart(args))!;
        if (input is not null) process.StandardInput.Write(input);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "tau did not finish");
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    private ProcessStartInfo TauStart(string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tau.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["TAU_HOME"] = home;
        return start;
    }

    /// <summary>A small byte-tokenizer model made through <c>tau model init</c>.</summary>
    private string SmallModel(string attention = "tau")
    {
        var dir = Path.Combine(home, "work", attention);
        Directory.CreateDirectory(Path.Combine(home, "work"));
        var config = Path.Combine(home, "work", $"{attention}.json");
        File.WriteAllText(config, $$"""
            {"vocab_size": 256, "n_layer": 2, "n_head": 2, "n_kv_head": 1, "n_embd": 64, "sequence_len": 128,
             "attention": "{{attention}}", "laplacian": "chain", "taumode": {"mode": "median"}, "tokenizer": "bytes"}
            """);
        var init = Tau("model", "init", "--config", config, "--out", dir, "--seed", "3");
        Assert.True(init.ExitCode == 0, init.Stderr);
        return dir;
    }

    /// <summary>The ids <c>tau generate --json</c> gives greedily after "abc", with <paramref name="extra"/> options.</summary>
    private int[] GreedyIds(string model, int maxTokens, params string[] extra)
    {
        var json = Json(Tau(["generate", "--model", model, "--prompt", "abc", "--max-tokens", $"{maxTokens}", "--temperature", "0", "--json", .. extra]));
        return [.. json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
    }

    private static JsonElement Json(Result r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        return JsonDocument.Parse(r.Stdout).RootElement;
    }

    [Fact]
    public void Eval_prints_a_texts_loss_bits_per_byte_and_perplexity_as_the_engine_computes_them()
    {
        var model = SmallModel();
        var corpus = Path.Combine(home, "work", "corpus.txt");
        string text = string.Concat(Enumerable.Repeat("And God said, Let there be light: and there was light. ", 8));
        File.WriteAllText(corpus, text);
        var json = Json(Tau("eval", "--model", model, "--corpus", corpus, "--stride", "40", "--json"));
        var expected = Evaluation.Run(TauModel.Load(model), text, stride: 40);
        Assert.Equal(["tokens", "loss_nats_per_token", "bits_per_byte", "perplexity"], json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(text.Length - 1, json.GetProperty("tokens").GetInt64());
        Assert.Equal(expected.LossNatsPerToken, json.GetProperty("loss_nats_per_token").GetDouble(), 12);
        Assert.Equal(expected.BitsPerByte, json.GetProperty("bits_per_byte").GetDouble(), 12);
        Assert.Equal(expected.Perplexity, json.GetProperty("perplexity").GetDouble(), 12);

        // Without --json, one line a person reads; a stride the context cannot take is bad input.
        var line = Tau("eval", "--model", model, "--corpus", corpus);
        Assert.True(line.ExitCode == 0, line.Stderr);
        Assert.Matches(@"^\S+ on corpus\.txt: 439 tokens, loss \d+\.\d{4} nats/token, \d+\.\d{4} bits/byte, perplexity \d+\.\d{3}\n$", line.Stdout);
        var stride = Tau("eval", "--model", model, "--corpus", corpus, "--stride", "128");
        Assert.Equal(1, stride.ExitCode);
        Assert.Equal("tau: stride = 128 must lie in [1, 127] (the model's context − 1)\n", stride.Stderr);
        var missing = Tau("eval", "--model", model, "--corpus", Path.Combine(home, "no-such.txt"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("file not found", missing.Stderr);
    }

    [Fact]
    public void Logit_bias_on_the_command_line_forces_and_bans_tokens()
    {
        var model = SmallModel();
        string[] Ids(params string[] extra) => [.. GreedyIds(model, 6, extra).Select(id => id.ToString(System.Globalization.CultureInfo.InvariantCulture))];
        Assert.All(Ids("--logit-bias", "65:100"), id => Assert.Equal("65", id));
        var greedy = Ids();
        Assert.DoesNotContain(greedy[0], Ids($"--logit-bias={greedy[0]}:-100"));
        var bad = Tau("generate", "--model", model, "--prompt", "abc", "--logit-bias", "65=100");
        Assert.Equal(2, bad.ExitCode);
        Assert.Equal("tau: --logit-bias '65=100' must be a comma-separated list of ID:BIAS pairs\n", bad.Stderr);
    }


    [Fact]
    public void Model_init_writes_16_bit_weights_on_request_and_refuses_an_unknown_dtype()
    {
        var config = Path.Combine(home, "bf16.json");
        Directory.CreateDirectory(home);
        File.WriteAllText(config, """
            {"vocab_size": 256, "n_layer": 1, "n_head": 1, "n_kv_head": 1, "n_embd": 32, "sequence_len": 64,
             "attention": "tau", "laplacian": "chain", "taumode": {"mode": "median"}, "tokenizer": "bytes"}
            """);
        var dir = Path.Combine(home, "bf16");
        var init = Tau("model", "init", "--config", config, "--out", dir, "--dtype", "bf16");
        Assert.True(init.ExitCode == 0, init.Stderr);
        Assert.Contains("BF16 weights", init.Stdout);
        Assert.All(SafeTensors.Read(Path.Combine(dir, TauModel.WeightsFile)).Values, t => Assert.Equal(TensorDType.BF16, t.DType));
        var generate = Tau("generate", "--model", dir, "--prompt", "hi", "--max-tokens", "4", "--seed", "1", "--json");
        Assert.Equal(4, Json(generate).GetProperty("ids").GetArrayLength());
        // Served 16-bit: q, k, v, proj 32×32, MLP 128×32 and 32×128, lm_head 256×32, two bytes each.
        var kernels = Json(Tau("bench", "kernels", "--model", dir, "--repeats", "3", "--json"));
        Assert.Equal("BF16", kernels.GetProperty("weight_type").GetString());
        Assert.Equal(2 * (4 * 1024 + 2 * 4096 + 8192), kernels.GetProperty("weight_bytes").GetInt64());

        var refused = Tau("model", "init", "--config", config, "--out", Path.Combine(home, "f8"), "--dtype", "f8");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--dtype 'f8' must be f32, f16 or bf16", refused.Stderr);
        Assert.False(Directory.Exists(Path.Combine(home, "f8")));
    }

    [Fact]
    public void Generate_json_is_deterministic_for_a_seed_and_reports_the_cache_saving()
    {
        var model = SmallModel();
        string[] request = ["generate", "--model", model, "--prompt", "hello tau", "--max-tokens", "12", "--temperature", "0.9", "--top-k", "50", "--seed", "7", "--json"];
        var first = Json(Tau(request));
        var second = Json(Tau(request));
        var ids = first.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(12, ids.Length);
        Assert.Equal(ids, second.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(ByteTokenizer.Instance.Decode(ids), first.GetProperty("text").GetString());

        var stats = first.GetProperty("stats");
        Assert.Equal(9, stats.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, stats.GetProperty("generated_tokens").GetInt32());
        long cache = stats.GetProperty("cache_bytes").GetInt64(), baseline = stats.GetProperty("baseline_cache_bytes").GetInt64();
        Assert.Equal(33 * baseline, 64 * cache);   // (D + 1) / 2D with D = 32
        // Times are reported, not asserted: only that the documented fields are there, as numbers.
        Assert.Equal(JsonValueKind.Number, stats.GetProperty("ttft_ms").ValueKind);
        Assert.Equal(JsonValueKind.Number, stats.GetProperty("tokens_per_second").ValueKind);

        var other = Json(Tau([.. request[..^2], "8", "--json"]));
        Assert.NotEqual(ids, other.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    /// <summary>The same greedy tokens from the GPU kernels (on ILGPU's CPU accelerator here) as from the SIMD engine.</summary>
    [Theory]
    [InlineData("kjv-causal")]
    [InlineData("tau")]
    [InlineData("causal")]
    [InlineData("bf16")]
    public void Generate_on_the_ilgpu_device_gives_the_greedy_tokens_of_the_cpu(string kind)
    {
        string model = kind switch
        {
            "kjv-causal" => "kjv-causal",
            "bf16" => Bf16Model(),
            _ => SmallModel(kind),
        };
        string[] Ids(string device)
        {
            var result = Json(Tau("generate", "--model", model, "--prompt", "And it came to pass", "--max-tokens", "12", "--temperature", "0",
                "--device", device, "--json"));
            return result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32().ToString()).ToArray();
        }
        var cpu = Ids("cpu");
        Assert.Equal(12, cpu.Length);
        Assert.Equal(cpu, Ids("ilgpu-cpu"));
    }

    [Fact]
    public void The_default_on_a_device_is_refused_in_one_line_since_the_device_kernels_lack_its_recency_bias()
    {
        var r = Tau("generate", "--prompt", "x", "--max-tokens", "2", "--device", "ilgpu-cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("tau: device ilgpu-cpu: the device kernels do not apply taumode.recency; serve this model on the cpu\n", r.Stderr);
    }

    private string Bf16Model()
    {
        var config = Path.Combine(home, "work", "bf16.json");
        Directory.CreateDirectory(Path.Combine(home, "work"));
        File.WriteAllText(config, """
            {"vocab_size": 256, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 64, "sequence_len": 128,
             "attention": "tau", "laplacian": "chain", "taumode": {"mode": "mean"}, "tokenizer": "bytes"}
            """);
        var dir = Path.Combine(home, "work", "bf16");
        Assert.True(Tau("model", "init", "--config", config, "--out", dir, "--seed", "5", "--dtype", "bf16").ExitCode == 0);
        return dir;
    }

    [Theory]
    [InlineData("gpu", 1, "unknown device 'gpu'")]
    [InlineData("cuda:7", 1, "device cuda:7:")]
    public void Generate_on_a_device_that_is_not_there_fails_with_one_line(string device, int exitCode, string message)
    {
        var result = Tau("generate", "--prompt", "x", "--device", device);
        Assert.Equal(exitCode, result.ExitCode);
        Assert.Contains(message, result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public void Generate_refuses_a_device_for_a_remote_cluster()
    {
        var result = Tau("generate", "--prompt", "x", "--cluster", "127.0.0.1:1", "--device", "cuda");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("Tau:Device", result.Stderr);
    }

    [Fact]
    public void Bench_device_times_sessions_at_each_context_on_the_ilgpu_device()
    {
        var result = Json(Tau("bench", "device", "--device", "ilgpu-cpu", "--shape", "1,32,2,1", "--contexts", "40,80", "--sessions", "1,3",
            "--steps", "3", "--json"));
        Assert.Equal("ilgpu-cpu", result.GetProperty("device").GetString());
        Assert.True(result.GetProperty("weight_bytes_on_device").GetInt64() > 0);
        var rows = result.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal([(40, 1), (40, 3), (80, 1), (80, 3)], rows.Select(r => (r.GetProperty("context").GetInt32(), r.GetProperty("sessions").GetInt32())));
        Assert.All(rows, r => Assert.True(r.GetProperty("tokens_per_second").GetDouble() > 0));
        // A session's pages hold its context (and the steps it decoded) in whole pages of 16 positions.
        Assert.All(rows, r => Assert.True(r.GetProperty("device_bytes_per_session").GetInt64() >= r.GetProperty("cache_bytes_per_session").GetInt64()));
    }

    [Fact]
    public void Generate_with_prompt_ids_on_a_causal_model_reports_equal_cache_and_baseline()
    {
        var model = SmallModel("causal");
        var result = Json(Tau("generate", "--model", model, "--prompt-ids", "1,2,3", "--max-tokens", "4", "--temperature", "0", "--json"));
        var stats = result.GetProperty("stats");
        Assert.Equal(stats.GetProperty("baseline_cache_bytes").GetInt64(), stats.GetProperty("cache_bytes").GetInt64());
        Assert.Equal(4, result.GetProperty("ids").GetArrayLength());
    }

    [Theory]
    [InlineData(2, "unknown option '--bogus'", "generate", "--prompt", "x", "--bogus", "1")]
    [InlineData(2, "--max-tokens' has an invalid value", "generate", "--prompt", "x", "--max-tokens", "many")]
    [InlineData(2, "exactly one of --prompt and --prompt-ids", "generate")]
    [InlineData(2, "unknown command", "frobnicate")]
    [InlineData(1, "unknown model 'no-such-model'", "generate", "--model", "no-such-model", "--prompt", "x")]
    [InlineData(1, "manifold directory not found", "manifold", "inspect", "/no/such/dir")]
    [InlineData(2, "Option '--from' is required.", "manifold", "build", "--out", "/no/such/out")]
    [InlineData(2, "option '--k' has an invalid value 'many'", "manifold", "build", "--from", "x.npy", "--out", "/no/such/out", "--k", "many")]
    [InlineData(2, "--tau-mode = \"loud\" must be fixed, median, mean or percentile", "manifold", "build", "--from", "x.npy", "--out", "/no/such/out", "--tau-mode", "loud")]
    [InlineData(1, "input not found: /no/such.npy", "manifold", "build", "--from", "/no/such.npy", "--out", "/no/such/out")]
    [InlineData(1, "presence_penalty = 3 must lie in [-2, 2]", "generate", "--prompt", "x", "--presence-penalty", "3")]
    [InlineData(1, "repetition_penalty = 0 must be a finite number > 0", "generate", "--prompt", "x", "--repetition-penalty", "0")]
    [InlineData(1, "min_p = 2 must lie in [0, 1]", "generate", "--prompt", "x", "--min-p", "2")]
    [InlineData(2, "--tls-cert applies to a cluster's gateways (--cluster)", "generate", "--prompt", "x", "--tls-cert", "c.pem")]
    public void Bad_input_is_one_line_on_stderr_and_a_nonzero_exit(int exitCode, string message, params string[] args)
    {
        var r = Tau(args);
        Assert.Equal(exitCode, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void Invalid_sampling_and_out_of_vocabulary_ids_are_refused_by_the_engine()
    {
        var model = SmallModel();
        var temperature = Tau("generate", "--model", model, "--prompt", "x", "--temperature", "-1");
        Assert.Equal(1, temperature.ExitCode);
        Assert.Contains("temperature = -1", temperature.Stderr);
        var topP = Tau("generate", "--model", model, "--prompt", "x", "--top-p", "1.5");
        Assert.Contains("top_p = 1.5", topP.Stderr);
        var id = Tau("generate", "--model", model, "--prompt-ids", "1,256");
        Assert.Contains("token id 256 is outside the vocabulary", id.Stderr);
        var longPrompt = Tau("generate", "--model", model, "--prompt", new string('a', 200));
        Assert.Contains("exceed the model's context of 128", longPrompt.Stderr);
    }

    [SkippableFact]
    public void Manifold_inspect_describes_the_real_manifold()
    {
        var dir = TestPaths.RequireRealManifoldDirectory();
        var info = Json(Tau("manifold", "inspect", dir!));
        Assert.Equal(384, info.GetProperty("dimension").GetInt32());
        Assert.Equal(6408, info.GetProperty("non_zeros").GetInt32());
        Assert.Equal("median", info.GetProperty("tau_mode").GetString());

        // One connected graph (the hubs join every feature): one zero eigenvalue, a positive Fiedler value, λmax ≈ 57.9.
        var spectrum = info.GetProperty("spectrum");
        Assert.Equal(1, spectrum.GetProperty("zero_eigenvalues").GetInt32());
        Assert.Equal(1, spectrum.GetProperty("connected_components").GetInt32());
        Assert.True(spectrum.GetProperty("fiedler").GetDouble() > 0);
        Assert.InRange(spectrum.GetProperty("largest").GetDouble(), 57, 59);
        Assert.Equal(6, spectrum.GetProperty("smallest").GetArrayLength());
        Assert.Equal(384, spectrum.GetProperty("histogram").GetProperty("counts").EnumerateArray().Sum(c => c.GetInt32()));
        Assert.Equal(spectrum.GetProperty("largest").GetDouble(), spectrum.GetProperty("quantiles").GetProperty("1").GetDouble());
    }

    /// <summary>A [rows, columns] float32 .npy file of values in [1, 2): every pair of features positively similar.</summary>
    private string PositiveItemsNpy(int rows, int columns)
    {
        var rng = new Xoshiro256(11);
        var values = Enumerable.Range(0, rows * columns).Select(_ => (float)(1 + rng.NextDouble())).ToArray();
        string header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}";
        header = header.PadRight((10 + header.Length + 1 + 63) / 64 * 64 - 10 - 1) + "\n";
        Directory.CreateDirectory(home);
        var path = Path.Combine(home, "items.npy");
        using var file = File.Create(path);
        file.Write([0x93, .. "NUMPY"u8, 1, 0, (byte)header.Length, (byte)(header.Length >> 8)]);
        file.Write(System.Text.Encoding.ASCII.GetBytes(header));
        file.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return path;
    }

    [Fact]
    public void Manifold_build_writes_a_deterministic_manifold_that_inspect_and_the_engine_read()
    {
        var npy = PositiveItemsNpy(200, 16);
        string[] build = ["manifold", "build", "--from", npy, "--centroids", "12", "--k", "4", "--seed", "3", "--tau-mode", "mean", "--name", "demo"];
        var first = Tau([.. build, "--out", Path.Combine(home, "m1")]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Contains("16×16 Laplacian 'demo'", first.Stdout);
        Assert.Contains("1 connected component(s)", first.Stdout);
        var second = Tau([.. build, "--out", Path.Combine(home, "m2")]);
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.Equal(Manifold.Load(Path.Combine(home, "m1")).Entries(), Manifold.Load(Path.Combine(home, "m2")).Entries());

        var info = Json(Tau("manifold", "inspect", Path.Combine(home, "m1")));
        Assert.Equal("demo", info.GetProperty("name").GetString());
        Assert.Equal(16, info.GetProperty("dimension").GetInt32());
        Assert.Equal("mean", info.GetProperty("tau_mode").GetString());
        Assert.Equal(1, info.GetProperty("spectrum").GetProperty("zero_eigenvalues").GetInt32());

        var again = Tau([.. build, "--out", Path.Combine(home, "m1")]);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("exists and is not empty", again.Stderr);
        var tooMany = Tau("manifold", "build", "--from", npy, "--out", Path.Combine(home, "m3"), "--k", "16");
        Assert.Equal(1, tooMany.ExitCode);
        Assert.Contains("k = 16 must lie in [1, 15]", tooMany.Stderr);
        Assert.Single(tooMany.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Sessions_persist_across_invocations_and_can_be_forked_and_deleted()
    {
        var model = SmallModel();
        var first = Json(Tau("generate", "--model", model, "--prompt", "keep me", "--max-tokens", "5", "--session", "kept", "--seed", "2", "--json"));
        Assert.Equal("kept", first.GetProperty("session").GetString());
        var info = Json(Tau("sessions", "info", "kept"));
        Assert.True(info.GetProperty("exists").GetBoolean());
        Assert.Equal(7 + 5, info.GetProperty("length").GetInt32());

        Json(Tau("generate", "--model", model, "--prompt", " more", "--max-tokens", "3", "--session", "kept", "--seed", "2", "--json"));
        Assert.Equal(12 + 5 + 3, Json(Tau("sessions", "info", "kept")).GetProperty("length").GetInt32());

        var fork = Json(Tau("sessions", "fork", "kept", "kept-copy"));
        Assert.Equal(20, fork.GetProperty("length").GetInt32());
        Assert.Equal("deleted kept", Tau("sessions", "delete", "kept").Stdout.Trim());
        Assert.False(Json(Tau("sessions", "info", "kept")).GetProperty("exists").GetBoolean());
        Assert.True(Json(Tau("sessions", "info", "kept-copy")).GetProperty("exists").GetBoolean());
        var missing = Tau("sessions", "delete", "never-was");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("unknown session 'never-was'", missing.Stderr);
    }

    [Fact]
    public void The_default_model_writes_300_bytes_and_holds_a_chat_of_several_turns()
    {
        // Its context is 1,024 bytes: a reply of a few sentences and a conversation of several turns fit.
        var generated = Json(Tau("generate", "--prompt", "And it came to pass", "--max-tokens", "300", "--seed", "1", "--json"));
        Assert.Equal(300, generated.GetProperty("ids").GetArrayLength());
        var chat = TauWithInput("Who made the heaven?\nAnd the earth?\nWhat is man?\nWho is the LORD?\n/info\n/quit\n",
            "chat", "--session", "turns", "--max-tokens", "80", "--seed", "2");
        Assert.True(chat.ExitCode == 0, chat.Stderr);
        var info = chat.Stdout.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).Single();
        Assert.InRange(info.GetProperty("length").GetInt32(), 4 * "User: \nAssistant:".Length + 60, 1024);
    }

    [Fact]
    public void The_dot_product_twin_is_served_by_name()
    {
        var generated = Json(Tau("generate", "--model", "kjv-causal", "--prompt", "And God said", "--max-tokens", "40", "--seed", "1", "--json"));
        Assert.Equal(40, generated.GetProperty("ids").GetArrayLength());
        Assert.True(generated.GetProperty("text").GetString()!.Count(char.IsAsciiLetter) > 20);
    }

    [Fact]
    public void Chat_keeps_its_session_across_turns()
    {
        var model = SmallModel();
        var r = TauWithInput("hello\nagain\n/info\n/reset\n/info\n/quit\n", "chat", "--model", model, "--session", "talk", "--max-tokens", "4");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Count(l => l.StartsWith("tau>", StringComparison.Ordinal)));
        var infos = lines.Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        // Both turns in the chat template, and up to 4 reply tokens each; the second turn continues a reply that
        // stopped at "\nUser:" with " again…", or one cut by --max-tokens with "\nUser: again…".
        int first = "User: hello\nAssistant:".Length;
        Assert.InRange(infos[0].GetProperty("length").GetInt32(), first + " again\nAssistant:".Length + 1, first + "\nUser: again\nAssistant:".Length + 8);
        Assert.Equal(0, infos[1].GetProperty("length").GetInt32());
    }

    [Fact]
    public void An_unreachable_cluster_is_one_clear_error()
    {
        var r = Tau("generate", "--prompt", "x", "--cluster", "127.0.0.1:1");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("cannot reach the cluster at 127.0.0.1:1", r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        var path = Tau("generate", "--prompt", "x", "--model", "/some/dir", "--cluster", "127.0.0.1:1");
        Assert.Equal(2, path.ExitCode);
        Assert.Contains("must name a model configured on the silos", path.Stderr);
    }
    [Fact]
    public void Chat_fork_copies_the_conversation_into_a_new_session_and_the_chat_goes_on_in_its_own()
    {
        var model = SmallModel();
        var r = TauWithInput("hello\n/info\n/fork kid\nagain\n/info\n/fork\n/quit\n",
            "chat", "--model", model, "--session", "talk", "--max-tokens", "4", "--temperature", "0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var lengths = lines.Where(l => l.StartsWith("{\"session\":\"talk\"", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("length").GetInt32()).ToArray();
        var forks = lines.Select(l => Regex.Match(l, @"^\(forked into (\S+) at (\d+) tokens; continuing in talk\)$")).Where(m => m.Success)
            .Select(m => (Id: m.Groups[1].Value, Length: int.Parse(m.Groups[2].Value))).ToArray();
        Assert.Equal(2, lengths.Length);
        Assert.Equal(2, forks.Length);

        // /fork kid copies the conversation as it stood; the next turn goes to talk, and /fork without an ID names a new session.
        Assert.Equal(("kid", lengths[0]), forks[0]);
        Assert.True(lengths[1] > lengths[0], $"the second turn did not grow talk ({lengths[0]} → {lengths[1]})");
        Assert.Equal(lengths[1], forks[1].Length);
        Assert.DoesNotContain(forks[1].Id, new[] { "talk", "kid" });

        // Each fork is a session of its own, kept in the same TAU_HOME, on the parent's model.
        var parent = Json(Tau("sessions", "info", "talk"));
        Assert.Equal(lengths[1], parent.GetProperty("length").GetInt32());
        foreach (var (id, length) in forks)
        {
            var info = Json(Tau("sessions", "info", id));
            Assert.True(info.GetProperty("exists").GetBoolean(), id);
            Assert.Equal(length, info.GetProperty("length").GetInt32());
            Assert.Equal(parent.GetProperty("model").GetString(), info.GetProperty("model").GetString());
        }
    }

    [Fact]
    public void Bench_decode_json_has_a_result_per_attention_and_context_with_the_cache_bytes_of_the_model_shape()
    {
        var model = SmallModel();   // 2 layers, 1 kv head, head dimension D = n_embd / n_head = 32
        string[] attentions = ["tau-index", "tau-dense", "causal"];
        int[] contexts = [8, 16, 200];
        var bench = Json(Tau("bench", "decode", "--model", model, "--contexts", string.Join(',', contexts),
            "--attention", string.Join(',', attentions), "--steps", "2", "--json"));
        var results = bench.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(from a in attentions from c in contexts select $"{a} {c}",
            results.Select(r => $"{r.GetProperty("attention").GetString()} {r.GetProperty("context").GetInt32()}"));
        Assert.All(results, r => Assert.Equal(["attention", "cache_bytes_per_token", "context", "device", "ms_per_token"], r.EnumerateObject().Select(p => p.Name).Order()));
        Assert.All(results, r => Assert.True(r.GetProperty("ms_per_token").GetDouble() > 0, r.ToString()));

        // Per token, layer and kv head: (λk, V) is D + 1 floats, (K, V) is 2D.
        const int layers = 2, kvHeads = 1, d = 32;
        const int tau = layers * kvHeads * (d + 1) * sizeof(float), causal = layers * kvHeads * 2 * d * sizeof(float);
        long Bytes(string attention, int context) => results.Single(r => r.GetProperty("attention").GetString() == attention
            && r.GetProperty("context").GetInt32() == context).GetProperty("cache_bytes_per_token").GetInt64();
        foreach (int context in contexts)
        {
            Assert.Equal(tau, Bytes("tau-dense", context));
            Assert.Equal(causal, Bytes("causal", context));
        }
        // The λ index holds just (λk, V) while its keys fit in one block of 64; past that it also keeps each key's
        // position and its runs' block sums, within 0.55 × (K, V) (BENCHMARKS.md).
        Assert.Equal(tau, Bytes("tau-index", 8));
        Assert.Equal(tau, Bytes("tau-index", 16));
        Assert.InRange(Bytes("tau-index", 200), tau + 1, (long)(0.55 * causal));
    }

    [Fact]
    public void Bench_kernels_json_gives_the_weight_read_beside_a_plain_sum_of_the_same_bytes()
    {
        var bench = Json(Tau("bench", "kernels", "--model", SmallModel(), "--repeats", "3", "--json"));
        // Per layer q 64×64, k and v 32×64, proj 64×64, MLP 256×64 and 64×256; lm_head 256×64: floats of 4 bytes.
        Assert.Equal(4 * (2 * (4096 + 2048 + 2048 + 4096 + 16384 + 16384) + 16384), bench.GetProperty("weight_bytes").GetInt64());
        foreach (var figure in new[] { "matmul_gb_per_s", "sum_gb_per_s", "ratio", "fork_join_us", "step_ms", "batch_gflops" })
            Assert.True(bench.GetProperty(figure).GetDouble() > 0, $"{figure}: {bench}");
        Assert.Contains(bench.GetProperty("path").GetString(), new[] { "Avx512", "Avx2", "Portable" });
    }

    [Fact]
    public void Bench_sessions_json_has_a_result_per_session_count_and_the_bare_engine_rate()
    {
        var model = SmallModel();
        var bench = Json(Tau("bench", "sessions", "--model", model, "--sessions", "1,3", "--tokens", "4", "--json"));
        Assert.Equal(["engine_tokens_per_second", "results"], bench.EnumerateObject().Select(p => p.Name).Order());
        var results = bench.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal([1, 3], results.Select(r => r.GetProperty("sessions").GetInt32()));
        Assert.All(results, r => Assert.Equal(["decode_steps_per_pass", "sessions", "tokens_per_second"], r.EnumerateObject().Select(p => p.Name).Order()));
        Assert.All(results, r => Assert.True(r.GetProperty("tokens_per_second").GetDouble() > 0, r.ToString()));
        // One session's passes hold its one step; three sessions' passes hold one to three.
        Assert.Equal(1.0, results[0].GetProperty("decode_steps_per_pass").GetDouble());
        Assert.InRange(results[1].GetProperty("decode_steps_per_pass").GetDouble(), 1.0, 3.0);
        Assert.True(bench.GetProperty("engine_tokens_per_second").GetDouble() > 0, bench.ToString());
    }

    [Fact]
    public void A_corrupt_session_file_is_an_unexpected_error_on_one_line_with_exit_code_3()
    {
        var model = SmallModel();
        Json(Tau("generate", "--model", model, "--prompt", "x", "--max-tokens", "2", "--session", "broken", "--json"));
        // The embedded silo keeps the session in a file under $TAU_HOME/state; cut it in half.
        var file = Assert.Single(Directory.GetFiles(Path.Combine(home, "state"), "*broken*", SearchOption.AllDirectories));
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length / 2)]);

        var r = Tau("sessions", "info", "broken");
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.StartsWith("tau: ", line);
        Assert.Contains("broken", line);
        Assert.DoesNotContain("   at ", line);
        Assert.DoesNotContain(".cs:line", line);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Penalty_flags_change_greedy_output_and_stay_deterministic()
    {
        var model = SmallModel();
        int[] Ids(params string[] extra) => GreedyIds(model, 30, extra);
        var plain = Ids();
        Assert.True(plain.Distinct().Count() < plain.Length, "the random model's greedy output repeats: what the penalties act on");
        var penalised = Ids("--frequency-penalty", "2", "--presence-penalty", "1");
        Assert.NotEqual(plain, penalised);
        Assert.Equal(penalised, Ids("--frequency-penalty", "2", "--presence-penalty", "1"));
        Assert.NotEqual(plain, Ids("--repetition-penalty", "4"));
    }

    private const string CorpusText = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. ";

    private string Corpus()
    {
        var path = Path.Combine(home, "corpus.txt");
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(home);
            File.WriteAllText(path, string.Concat(Enumerable.Repeat(CorpusText, 60)));
        }
        return path;
    }

    /// <summary>A tiny run that prints a line per step (it evaluates every step, on one window).</summary>
    private string[] TinyRun(string output, int steps, int checkpointEvery = 100) =>
        ["train", "--corpus", Corpus(), "--out", output, "--layers", "1", "--embd", "16", "--heads", "2", "--seq-len", "16", "--batch", "2",
         "--steps", $"{steps}", "--eval-every", "1", "--eval-sequences", "1", "--checkpoint-every", $"{checkpointEvery}", "--threads", "1", "--seed", "3"];

    private static int StepOf(string line) => int.Parse(Regex.Match(line, @"^step +(\d+)/\d+ ").Groups[1].Value);

    /// <summary>A bound on any wait for a process, so that a hang fails the test instead of stalling the run.</summary>
    private static CancellationTokenSource HangGuard() => new(TimeSpan.FromMinutes(3));

    /// <summary>Reads <paramref name="process"/>'s stdout until a line satisfies <paramref name="stop"/>; the lines read.</summary>
    private static async Task<List<string>> ReadLinesUntil(Process process, Func<string, bool> stop)
    {
        using var hang = HangGuard();
        var lines = new List<string>();
        while (await process.StandardOutput.ReadLineAsync(hang.Token) is { } line)
        {
            lines.Add(line);
            if (stop(line)) return lines;
        }
        Assert.Fail($"tau's stdout ended before the line awaited; it printed:\n{string.Join('\n', lines)}\n{await process.StandardError.ReadToEndAsync(hang.Token)}");
        return lines;
    }

    private static void Signal(Process process, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", $"{process.Id}"]);
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    [Theory]
    [InlineData("Option '--out' is required.", "--corpus", "CORPUS")]
    [InlineData("Option '--corpus' is required.", "--out", "OUT")]
    [InlineData("unexpected argument 'CORPUS'", "CORPUS", "--out", "OUT")]
    [InlineData("unknown option '--bogus'", "--corpus", "CORPUS", "--out", "OUT", "--bogus", "1")]
    [InlineData("Required argument missing for option: '--lr'.", "--corpus", "CORPUS", "--out", "OUT", "--lr")]
    [InlineData("Option '--steps' expects a single argument but 2 were provided.", "--corpus", "CORPUS", "--out", "OUT", "--steps", "2", "--steps", "3")]
    [InlineData("option '--steps' has an invalid value 'many'", "--corpus", "CORPUS", "--out", "OUT", "--steps", "many")]
    [InlineData("option '--lr' has an invalid value 'fast'", "--corpus", "CORPUS", "--out", "OUT", "--lr", "fast")]
    [InlineData("--attention 'dot' must be tau or causal", "--corpus", "CORPUS", "--out", "OUT", "--attention", "dot")]
    [InlineData("--laplacian 'ring' must be chain (or give --manifold DIR)", "--corpus", "CORPUS", "--out", "OUT", "--laplacian", "ring")]
    [InlineData("give --laplacian chain or --manifold DIR, not both", "--corpus", "CORPUS", "--out", "OUT", "--laplacian", "chain", "--manifold", "OUT")]
    [InlineData("--tau-mode = \"loud\" must be fixed, median, mean or percentile", "--corpus", "CORPUS", "--out", "OUT", "--tau-mode", "loud")]
    [InlineData("--embd 30 must be a multiple of --heads (4)", "--corpus", "CORPUS", "--out", "OUT", "--embd", "30")]
    [InlineData("--kv-heads 3 must divide --heads (4)", "--corpus", "CORPUS", "--out", "OUT", "--kv-heads", "3")]
    [InlineData("--steps 0 must be at least 1", "--corpus", "CORPUS", "--out", "OUT", "--steps", "0")]
    [InlineData("--val-fraction 1.5 must lie strictly between 0 and 1", "--corpus", "CORPUS", "--out", "OUT", "--val-fraction", "1.5")]
    [InlineData("--threads -1 must be positive", "--corpus", "CORPUS", "--out", "OUT", "--threads", "-1")]
    [InlineData("--resume continues the run in OUT with its own settings; --layers, --steps cannot be changed", "--resume", "--out", "OUT", "--steps", "5", "--layers", "2")]
    public void Train_refuses_bad_options_with_one_line_and_exit_code_2(string message, params string[] args)
    {
        string output = Path.Combine(home, "run"), corpus = Corpus();
        string Fill(string text) => text.Replace("OUT", output).Replace("CORPUS", corpus);
        var r = Tau(["train", .. args.Select(Fill)]);
        Assert.Equal(2, r.ExitCode);
        // One line; for an unknown option, the names nearest to it after it, but never the whole help.
        var lines = r.Stderr.Trim().Split('\n');
        Assert.Equal($"tau: {Fill(message)}", lines[0]);
        if (!message.StartsWith("unknown option", StringComparison.Ordinal)) Assert.Single(lines);
        Assert.DoesNotContain("Usage:", r.Stderr);
        Assert.Equal("", r.Stdout);
        Assert.False(Directory.Exists(output), "a refused run wrote its output directory");
    }

    [Fact]
    public void Train_refuses_an_output_directory_that_is_not_new_and_resume_of_one_without_a_run()
    {
        var occupied = Path.Combine(home, "occupied");
        Directory.CreateDirectory(occupied);
        File.WriteAllText(Path.Combine(occupied, "notes.txt"), "mine");
        var done = Path.Combine(home, "done");
        var first = Tau(TinyRun(done, steps: 2));
        Assert.True(first.ExitCode == 0, first.Stderr);

        foreach (var (args, message) in new (string[], string)[]
        {
            (TinyRun(occupied, steps: 2), $"--out {occupied} exists and is not empty"),
            (TinyRun(done, steps: 2), $"--out {done} already holds a training run; resume it (--resume) or choose another directory"),
            (["train", "--resume", "--out", occupied], $"--out {occupied} holds no training run to resume (training.json not found)"),
        })
        {
            var r = Tau(args);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal($"tau: {message}", Assert.Single(r.Stderr.Trim().Split('\n')));
        }
        Assert.Equal(["notes.txt"], Directory.GetFileSystemEntries(occupied).Select(Path.GetFileName));
    }

    [Fact]
    public void Train_help_exits_0_and_lists_the_options_that_train_accepts()
    {
        var help = Tau("train", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Equal("", help.Stderr);
        Assert.Equal(help.Stdout, Tau("train", "-h").Stdout);
        var listed = HelpOptions(help.Stdout).ToHashSet();
        // Every option the README gives for tau train is there …
        Assert.Subset(listed, new HashSet<string> { "--corpus", "--out", "--attention", "--layers", "--embd", "--heads", "--kv-heads",
            "--seq-len", "--batch", "--steps", "--lr", "--manifold", "--laplacian", "--resume" });
        // … and train knows every option it lists: with --resume, all but --corpus and --threads are refused as unchangeable, by name.
        var output = Path.Combine(home, "run");
        var changeable = new[] { "--resume", "--out", "--corpus", "--threads" };
        var flags = HelpSection(help.Stdout, "Options:").Select(line => Regex.Match(line, @"^  (--[a-z][a-z0-9-]*)  ")).Where(m => m.Success)
            .Select(m => m.Groups[1].Value).ToHashSet();
        Assert.Contains("--tau-learn-temperature", flags);
        var r = Tau(["train", "--resume", "--out", output, .. listed.Except(changeable).SelectMany(o => flags.Contains(o) ? [o] : new[] { o, "1" })]);
        Assert.Equal(2, r.ExitCode);
        var refused = Regex.Match(r.Stderr, @"^tau: --resume continues the run in .* with its own settings; (.*) cannot be changed\n$");
        Assert.True(refused.Success, r.Stderr);
        Assert.Equal(listed.Except(changeable).Order(), refused.Groups[1].Value.Split(", ").Order());
    }

    /// <summary>The options a help text lists: the first long name of each line of its Options section, --help aside.</summary>
    private static IEnumerable<string> HelpOptions(string help) => HelpSection(help, "Options:")
        .Select(line => Regex.Match(line, @"^  (?:-\S+, )*(--[a-z][a-z0-9-]*)").Groups[1].Value)
        .Where(option => option is not ("" or "--help" or "--version"));

    /// <summary>The subcommands a help text lists, by name.</summary>
    private static IEnumerable<string> HelpCommands(string help) => HelpSection(help, "Commands:")
        .Select(line => Regex.Match(line, @"^  (\S+)").Groups[1].Value).Where(name => name.Length > 0);

    private static IEnumerable<string> HelpSection(string help, string heading) =>
        help.Split('\n').SkipWhile(line => line != heading).Skip(1).TakeWhile(line => line.Length > 0);

    /// <summary>Every command of tau, group or not, from the help itself: its words after tau.</summary>
    private List<string[]> AllCommands()
    {
        var commands = new List<string[]>();
        void Walk(string[] words)
        {
            var help = Tau([.. words, "--help"]);
            Assert.True(help.ExitCode == 0, $"tau {string.Join(' ', words)} --help: {help.Stderr}");
            foreach (var name in HelpCommands(help.Stdout))
            {
                commands.Add([.. words, name]);
                Walk([.. words, name]);
            }
        }
        Walk([]);
        return commands;
    }

    [Fact]
    public void Every_command_and_subcommand_has_help_that_lists_its_options_and_their_defaults()
    {
        var commands = AllCommands();
        Assert.Equal(19, commands.Count);   // 15 that run, and the 4 that group them (sessions, model, manifold, bench)
        foreach (var words in commands)
        {
            var help = Tau([.. words, "--help"]);
            Assert.Equal(0, help.ExitCode);
            Assert.Equal("", help.Stderr);
            Assert.Contains($"Usage:\n  tau {string.Join(' ', words)}", help.Stdout);
            Assert.Equal(help.Stdout, Tau([.. words, "-h"]).Stdout);
        }
        string Line(string command, string option) =>
            Tau([.. command.Split(' '), "--help"]).Stdout.Split('\n').Single(l => l.StartsWith($"  {option} ", StringComparison.Ordinal));
        Assert.EndsWith("[default: 32]", Line("generate", "--max-tokens"));
        Assert.EndsWith("[default: 0.8]", Line("chat", "--temperature"));
        Assert.EndsWith("[default: taucluster]", Line("sessions fork", "--cluster-id"));
        Assert.EndsWith("[default: f32]", Line("model init", "--dtype"));
        Assert.EndsWith("[default: 42]", Line("manifold build", "--seed"));
        Assert.EndsWith("[default: 1000]", Line("train", "--steps"));
        Assert.EndsWith("[default: context / 2]", Line("eval", "--stride"));
        Assert.EndsWith("[default: min(100, steps/10)]", Line("train", "--warmup"));
        Assert.EndsWith("[default: 1024,4096]", Line("bench decode", "--contexts"));
        Assert.EndsWith("[default: paper]", Line("bench kernels", "--model"));
        Assert.EndsWith("[default: 1,4]", Line("bench sessions", "--sessions"));
        Assert.EndsWith("[default: 1,16,64,256]", Line("bench device", "--sessions"));
    }

    [Fact]
    public void The_readme_gives_every_command_with_exactly_the_options_of_its_help()
    {
        var readme = File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), "README.md"));
        var section = readme[readme.IndexOf("## The `tau` command line", StringComparison.Ordinal)..];
        var usage = Regex.Match(section, "```\n(.*?)```", RegexOptions.Singleline).Groups[1].Value.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // Each "tau …" line and the lines indented under it: its command words (a|b gives both), then its options.
        var documented = new Dictionary<string, HashSet<string>>();
        var current = new List<HashSet<string>>();
        foreach (var line in usage)
        {
            if (line.StartsWith("tau ", StringComparison.Ordinal))
            {
                var words = line.Split(' ').Skip(1).TakeWhile(w => w[0] is not ('[' or '(' or '-') && !w.All(c => char.IsUpper(c) || c == '_')).ToArray();
                IEnumerable<string> paths = [""];
                foreach (var word in words) paths = paths.SelectMany(p => word.Split('|').Select(w => $"{p} {w}".Trim())).ToArray();
                current = [.. paths.Select(p => documented[p] = [])];
            }
            foreach (var options in current) options.UnionWith(Regex.Matches(line, @"--[a-z][a-z0-9-]*").Select(m => m.Value));
        }
        var help = Tau("--help");
        Assert.Contains("trained on the King James Bible", help.Stdout.ReplaceLineEndings(" "));
        Assert.DoesNotContain("noise", help.Stdout);

        // Every command that runs (a group only lists others) is in the README, with the options its help lists, no more, no fewer.
        var leaves = AllCommands().Select(words => (Words: words, Help: Tau([.. words, "--help"]).Stdout)).Where(c => !HelpCommands(c.Help).Any()).ToList();
        Assert.Equal(leaves.Select(c => string.Join(' ', c.Words)).Order(), documented.Keys.Order());
        foreach (var (words, commandHelp) in leaves)
            Assert.True(HelpOptions(commandHelp).ToHashSet().SetEquals(documented[string.Join(' ', words)]),
                $"tau {string.Join(' ', words)}: --help lists {string.Join(' ', HelpOptions(commandHelp).Order())}; README.md {string.Join(' ', documented[string.Join(' ', words)].Order())}");
    }

    [Fact]
    public void Version_prints_the_version_of_the_project()
    {
        var project = File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), "Client", "TauCluster.Client.csproj"));
        string version = Regex.Match(project, "<Version>(.*)</Version>").Groups[1].Value;
        var r = Tau("--version");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches($@"^{Regex.Escape(version)}(\+[0-9a-f]+)?$", r.Stdout.Trim());
    }

    [Fact]
    public void An_option_takes_its_value_after_an_equals_sign_too()
    {
        var model = SmallModel();
        var spaced = Json(Tau("generate", "--model", model, "--prompt", "x", "--max-tokens", "80", "--temperature", "0", "--json"));
        var joined = Json(Tau("generate", $"--model={model}", "--prompt=x", "--max-tokens=80", "--temperature=0", "--json"));
        Assert.Equal(80, joined.GetProperty("ids").GetArrayLength());
        Assert.Equal(spaced.GetProperty("ids").ToString(), joined.GetProperty("ids").ToString());
    }

    [Theory]
    [InlineData("tau: unknown command 'genrate'", "generate", "genrate")]
    [InlineData("tau: unknown option '--max-token'", "--max-tokens", "generate", "--prompt", "x", "--max-token", "3")]
    [InlineData("tau: unknown command 'kernel'", "kernels", "bench", "kernel")]
    public void A_typo_is_refused_with_exit_code_2_and_the_name_it_is_nearest(string message, string suggestion, params string[] args)
    {
        var r = Tau(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        var lines = r.Stderr.Trim().Split('\n');
        Assert.Equal(message, lines[0]);
        Assert.Equal(suggestion, lines[^1]);   // after the library's "did you mean" line; not the whole help
        Assert.InRange(lines.Length, 2, 3);
    }

    [Fact]
    public void Completion_scripts_call_back_into_tau_whose_suggest_directive_completes_from_the_parser()
    {
        var bash = Tau("completion", "bash");
        Assert.Equal(0, bash.ExitCode);
        Assert.Contains("tau \"[suggest:${COMP_POINT}]\" \"${COMP_LINE}\"", bash.Stdout);
        Assert.Contains("complete -o default -F _tau_completions tau", bash.Stdout);
        var zsh = Tau("completion", "zsh");
        Assert.Equal(0, zsh.ExitCode);
        Assert.Contains("compdef _tau tau", zsh.Stdout);

        var subcommands = Tau("[suggest:10]", "tau bench ").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Subset(subcommands.ToHashSet(), new HashSet<string> { "decode", "kernels", "sessions", "device" });
        Assert.Equal(["--max-tokens", "--min-p"], Tau("[suggest:16]", "tau generate --m").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(s => s.StartsWith("--m", StringComparison.Ordinal) && s != "--model"));

        // The script itself, in bash, with a tau on the PATH: what a user's Tab runs.
        if (OperatingSystem.IsWindows()) return;
        var bin = Path.Combine(home, "bin");
        Directory.CreateDirectory(bin);
        var tau = Path.Combine(bin, "tau");
        File.WriteAllText(tau, $"#!/bin/sh\nexec dotnet '{Path.Combine(AppContext.BaseDirectory, "tau.dll")}' \"$@\"\n");
        File.SetUnixFileMode(tau, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var script = Path.Combine(home, "tau.bash");
        File.WriteAllText(script, bash.Stdout);
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"source '{script}'; COMP_LINE='tau bench ke'; COMP_POINT=12; _tau_completions; printf '%s\\n' \"${{COMPREPLY[@]}}\"");
        start.Environment["PATH"] = $"{bin}:{Environment.GetEnvironmentVariable("PATH")}";
        start.Environment["TAU_HOME"] = home;
        using var shell = Process.Start(start)!;
        string completed = shell.StandardOutput.ReadToEnd();
        Assert.True(shell.WaitForExit(TimeSpan.FromMinutes(1)));
        Assert.Equal("kernels", completed.Trim());
    }

    [Fact]
    public void Bench_decode_json_is_the_only_thing_on_stdout()
    {
        var r = Tau("bench", "decode", "--model", SmallModel(), "--contexts", "8", "--attention", "causal", "--steps", "2", "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.Single(r.Stdout.Trim().Split('\n'));
        Assert.Equal(1, JsonDocument.Parse(r.Stdout).RootElement.GetProperty("results").GetArrayLength());
    }

    [SkippableFact]
    public async Task Ctrl_C_stops_bench_decode_with_exit_code_130()
    {
        var model = SmallModel();
        await InterruptWhileBusy(["bench", "decode", "--model", model, "--contexts", "16", "--attention", "tau-index", "--steps", "2000000"]);
    }

    [SkippableFact]
    public async Task Ctrl_C_stops_manifold_build_with_exit_code_130_and_writes_nothing()
    {
        var output = Path.Combine(home, "interrupted-manifold");
        await InterruptWhileBusy(["manifold", "build", "--from", PositiveItemsNpy(40_000, 32), "--out", output, "--centroids", "256", "--iterations", "1000000"]);
        Assert.False(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(), "an interrupted build wrote its manifold");
    }

    /// <summary>
    /// Starts tau, waits until it has used a few seconds of CPU (so it is well into the work, past starting up), sends
    /// it SIGINT as Ctrl+C does, and expects it to stop at once with exit code 130 and "tau: interrupted" on stderr.
    /// </summary>
    private async Task InterruptWhileBusy(string[] args)
    {
        using var process = Process.Start(TauStart(args))!;
        try
        {
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            TestPaths.Require(!IgnoresSigint(process), "SIGINT delivery to tau (the tests run with SIGINT ignored, as in a background job)");
            using (var busy = HangGuard())
                while (CpuSeconds(process) < 3)
                {
                    if (process.HasExited) Assert.Fail($"tau ended before it was interrupted: {await stderr}");
                    await Task.Delay(100, busy.Token);
                }
            Signal(process, "INT");
            using var hang = new CancellationTokenSource(TimeSpan.FromSeconds(30));   // at once, not at the end of the work
            await process.WaitForExitAsync(hang.Token);
            Assert.Equal(130, process.ExitCode);
            Assert.Equal("tau: interrupted", (await stderr).Trim().Split('\n')[^1]);
            await stdout;
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }
    }

    /// <summary>The user and system CPU time <paramref name="process"/> has used, from /proc (fields 14 and 15, in clock ticks of 1/100 s).</summary>
    private static double CpuSeconds(Process process)
    {
        var fields = File.ReadAllText($"/proc/{process.Id}/stat").Split(')')[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0;
    }

    /// <summary>Whether <paramref name="process"/> ignores SIGINT, as a process started from a background job inherits.</summary>
    private static bool IgnoresSigint(Process process)
    {
        var mask = File.ReadLines($"/proc/{process.Id}/status").Single(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))["SigIgn:".Length..].Trim();
        return (ulong.Parse(mask, System.Globalization.NumberStyles.HexNumber) & (1UL << (2 - 1))) != 0;
    }

    [SkippableFact]
    public async Task Ctrl_C_stops_training_with_a_checkpoint_that_generate_serves()
    {
        var output = Path.Combine(home, "interrupted");
        // No checkpoint before the end of a run it cannot reach: what is on disk after Ctrl+C is Ctrl+C's own.
        using var process = Process.Start(TauStart(TinyRun(output, steps: 100_000, checkpointEvery: 100_000)))!;
        try
        {
            await Interrupt(process, output);
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }

        var served = Json(Tau("generate", "--model", output, "--prompt", "the quick ", "--max-tokens", "6", "--temperature", "0", "--json"));
        Assert.Equal(10, served.GetProperty("stats").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(6, served.GetProperty("ids").GetArrayLength());
    }

    private static async Task Interrupt(Process process, string output)
    {
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync();
        var lines = await ReadLinesUntil(process, line => line.StartsWith("step ", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(output, "training.json")));
        TestPaths.Require(!IgnoresSigint(process), "SIGINT delivery to tau (the tests run with SIGINT ignored, as in a background job)");

        Signal(process, "INT");
        using (var hang = HangGuard())
        {
            lines.AddRange((await process.StandardOutput.ReadToEndAsync(hang.Token)).Split('\n', StringSplitOptions.RemoveEmptyEntries));
            await process.WaitForExitAsync(hang.Token);
        }
        Assert.Equal(130, process.ExitCode);
        // It stops after the step it is in, the last it printed, and saves that step.
        int step = StepOf(lines.Last(l => l.StartsWith("step ", StringComparison.Ordinal)));
        Assert.Equal([$"checkpoint saved at step {step}; continue with: tau train --resume --out {output}", "tau: interrupted"],
            (await stderr).Trim().Split('\n'));
        using var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "training.json")));
        Assert.Equal(step, state.RootElement.GetProperty("step").GetInt32());
    }

    [Fact]
    public async Task A_killed_run_resumes_to_the_same_weights_and_losses_as_an_uninterrupted_run()
    {
        const int steps = 2000;
        var whole = Path.Combine(home, "whole");
        var uninterrupted = Tau(TinyRun(whole, steps));
        Assert.True(uninterrupted.ExitCode == 0, uninterrupted.Stderr);

        var killed = Path.Combine(home, "killed");
        using (var process = Process.Start(TauStart(TinyRun(killed, steps)))!)
        {
            process.StandardInput.Close();
            // It cannot finish first: its line per step is far more than the pipe (64 KiB) and this reader's buffer
            // hold, and nothing reads them after the first checkpoint's line, so it blocks long before the end.
            await ReadLinesUntil(process, line => line.EndsWith("[checkpoint]", StringComparison.Ordinal));
            process.Kill();   // SIGKILL: no handler runs, nothing more is saved
            using var hang = HangGuard();
            await process.WaitForExitAsync(hang.Token);
            Assert.Equal(128 + 9, process.ExitCode);
        }
        int checkpoint;
        using (var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(killed, "training.json"))))
            checkpoint = state.RootElement.GetProperty("step").GetInt32();
        Assert.InRange(checkpoint, 100, steps - 100);
        Assert.Equal(0, checkpoint % 100);

        var resumed = Tau("train", "--resume", "--out", killed, "--threads", "1");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        var lines = resumed.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal($"resuming {killed} at step {checkpoint} of {steps}", lines[0]);
        Assert.Equal(checkpoint + 1, StepOf(lines.First(l => l.StartsWith("step ", StringComparison.Ordinal))));
        // The same final line (validation loss included), the same model files byte for byte, the same losses step by step.
        var wholeLines = uninterrupted.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(wholeLines[^1].Replace(whole, killed), lines[^1]);
        foreach (var file in new[] { TauModel.WeightsFile, TauModel.ConfigFile })
            Assert.Equal(File.ReadAllBytes(Path.Combine(whole, file)), File.ReadAllBytes(Path.Combine(killed, file)));
        var log = File.ReadAllLines(Path.Combine(killed, "train_log.csv")).Skip(1).Select(r => r.Split(',')).ToArray();
        var wholeLog = File.ReadAllLines(Path.Combine(whole, "train_log.csv")).Skip(1).Select(r => r.Split(',')).ToArray();
        Assert.Equal(Enumerable.Range(1, steps).Select(i => $"{i}"), log.Select(r => r[0]));
        Assert.Equal(wholeLog.Select(r => (r[1], r[2], r[3])), log.Select(r => (r[1], r[2], r[3])));   // lr, train_loss, val_loss
    }
}
