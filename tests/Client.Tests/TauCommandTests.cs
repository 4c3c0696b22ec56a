using System.Diagnostics;
using System.Text.Json;
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
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tau.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["TAU_HOME"] = home;
        using var process = Process.Start(start)!;
        if (input is not null) process.StandardInput.Write(input);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "tau did not finish");
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
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

    private static JsonElement Json(Result r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        return JsonDocument.Parse(r.Stdout).RootElement;
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
        Assert.True(stats.GetProperty("ttft_ms").GetDouble() > 0);

        var other = Json(Tau([.. request[..^2], "8", "--json"]));
        Assert.NotEqual(ids, other.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
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
    [InlineData(2, "option '--from' is required", "manifold", "build", "--out", "/no/such/out")]
    [InlineData(2, "option '--k' has an invalid value 'many'", "manifold", "build", "--from", "x.npy", "--out", "/no/such/out", "--k", "many")]
    [InlineData(2, "--tau-mode = \"loud\" must be fixed, median, mean or percentile", "manifold", "build", "--from", "x.npy", "--out", "/no/such/out", "--tau-mode", "loud")]
    [InlineData(1, "input not found: /no/such.npy", "manifold", "build", "--from", "/no/such.npy", "--out", "/no/such/out")]
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
}
