using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using TauCluster.Silo;

namespace TauCluster.Http.Tests;

/// <summary>
/// The silo's configuration is checked before anything starts: a typo or a value out of range is a named error, not
/// a silently open API or a crash on the first request.
/// </summary>
public sealed class ConfigurationTests
{
    private static IConfiguration Settings((string Key, string? Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, s.Value))).Build();

    private static OptionsValidationException Refused(params (string Key, string? Value)[] settings) =>
        Assert.Throws<OptionsValidationException>(() => TauSilo.ReadOptions(Settings(settings)));

    private static (Grains.TauClusterOptions Tau, HttpApiOptions Http) Accepted(params (string Key, string? Value)[] settings) =>
        TauSilo.ReadOptions(Settings(settings));

    [Theory]
    [InlineData("Tau:Http:ApiKey", "secret", "Tau:Http:ApiKey is not a setting (did you mean Tau:Http:ApiKeys?)")]
    [InlineData("Tau:Storag", "file", "Tau:Storag is not a setting (did you mean Tau:Storage?)")]
    [InlineData("Tau:maxbach", "8", "Tau:maxbach is not a setting (did you mean Tau:MaxBatch?)")]
    [InlineData("Tau:Tls:CertificatFile", "x.pem", "Tau:Tls:CertificatFile is not a setting (did you mean Tau:Tls:CertificateFile?)")]
    [InlineData("Tau:Completely:Different", "1", "Tau:Completely is not a setting")]
    public void An_unknown_key_is_named_with_the_nearest_known_key(string key, string value, string failure)
    {
        var refused = Refused((key, value));
        Assert.Equal(failure, Assert.Single(refused.Failures));
    }

    [Theory]
    [InlineData("Tau:MaxBatch", "0", "Tau:MaxBatch = 0 must be at least 1")]
    [InlineData("Tau:CheckpointEvery", "-1", "Tau:CheckpointEvery = -1 must be at least 1")]
    [InlineData("Tau:SiloPort", "70000", "Tau:SiloPort = 70000 must be a port, 1 to 65535")]
    [InlineData("Tau:Clustering", "zookeeper", "Tau:Clustering = 'zookeeper' must be localhost or redis")]
    [InlineData("Tau:Storage", "s3", "Tau:Storage = 's3' must be memory, file or redis")]
    [InlineData("Tau:Device", "tpu", "Tau:Device: unknown device 'tpu': expected cpu, cuda, cuda:N or ilgpu-cpu")]
    [InlineData("Tau:ShutdownTimeout", "00:00:00", "Tau:ShutdownTimeout = 00:00:00 must be positive")]
    [InlineData("Tau:Http:MaxConcurrentGenerations", "0", "Tau:Http:MaxConcurrentGenerations = 0 must be at least 1")]
    [InlineData("Tau:Http:DefaultMaxTokens", "0", "Tau:Http:DefaultMaxTokens = 0 must be at least 1")]
    [InlineData("Tau:Http:MaxQueuedGenerations", "-5", "Tau:Http:MaxQueuedGenerations = -5 must not be negative")]
    [InlineData("Tau:Http:ApiKeys:0", " ", "Tau:Http:ApiKeys:0 is empty (an empty key would match nothing; remove it)")]
    [InlineData("Tau:MaxBatch", "many", "Failed to convert configuration value 'many' at 'Tau:MaxBatch' to type 'System.Int32'.")]
    public void A_value_out_of_range_is_named_by_its_key(string key, string value, string failure)
    {
        Assert.Equal(failure, Assert.Single(Refused((key, value)).Failures));
    }

    [SkippableFact]
    public void Model_and_manifold_roots_are_checked_at_start_and_every_failure_is_reported_at_once()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"tau-missing-{Guid.NewGuid():N}");
        var refused = Refused(("Tau:ModelsRoot", missing), ("Tau:ManifoldsRoot", missing), ("Tau:Models:mine", missing), ("Tau:Manifolds:cve", missing));
        Assert.Equal(
        [
            $"Tau:ModelsRoot '{missing}' is not a directory",
            $"Tau:ManifoldsRoot '{missing}' is not a directory",
            $"Tau:Models:mine = '{missing}' is not a model directory (no config.json)",
            $"Tau:Manifolds:cve = '{missing}' is not a manifold directory (no manifold.json)",
        ], refused.Failures);
        // The real manifold passes the same check.
        Accepted(("Tau:Manifolds:cve", TestPaths.RequireRealManifoldDirectory()));
    }

    [Fact]
    public void Api_keys_on_a_cluster_reachable_beyond_loopback_need_tls_or_an_explicit_opt_out()
    {
        var failure = Assert.Single(Refused(("Tau:Clustering", "redis"), ("Tau:Http:ApiKeys:0", "k")).Failures);
        Assert.Contains("Tau:AllowInsecureCluster=true", failure, StringComparison.Ordinal);
        Assert.Contains("Tau:Tls", failure, StringComparison.Ordinal);
        Assert.True(Accepted(("Tau:Clustering", "redis"), ("Tau:Http:ApiKeys:0", "k"), ("Tau:AllowInsecureCluster", "true")).Tau.AllowInsecureCluster);
        // Loopback (the development default) and a cluster without keys start as before.
        Assert.Equal(["k"], Accepted(("Tau:Http:ApiKeys:0", "k")).Http.ApiKeys);
        Assert.Equal("redis", Accepted(("Tau:Clustering", "redis")).Tau.Clustering);
    }

    [Fact]
    public void Tls_needs_all_three_files_and_names_the_missing_one()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"tau-missing-{Guid.NewGuid():N}.pem");
        Assert.Equal("Tau:Tls:KeyFile is required with TLS (certificate, key and CA)",
            Assert.Single(Refused(("Tau:Tls:CertificateFile", typeof(ConfigurationTests).Assembly.Location)).Failures));
        Assert.Equal($"Tau:Tls:CertificateFile '{missing}' does not exist",
            Assert.Single(Refused(("Tau:Tls:CertificateFile", missing), ("Tau:Tls:KeyFile", missing), ("Tau:Tls:CaFile", missing)).Failures));
    }

    [Fact]
    public void The_defaults_and_the_shipped_appsettings_are_valid()
    {
        var (tau, http) = Accepted();
        Assert.Equal("localhost", tau.Clustering);
        Assert.Equal(TimeSpan.FromSeconds(30), tau.ShutdownTimeout);
        Assert.Empty(http.ApiKeys);
        var shipped = new ConfigurationBuilder().AddJsonFile(Path.Combine(TestPaths.RepositoryRoot(), "Silo", "appsettings.json")).Build();
        Assert.Equal(256, TauSilo.ReadOptions(shipped).Http.DefaultMaxTokens);
    }

    [Fact]
    public async Task The_silo_process_exits_with_one_line_naming_the_bad_keys_and_no_stack_trace()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "TauCluster.Silo.dll"));
        start.Environment["Tau__Http__ApiKey"] = "secret";
        start.Environment["Tau__Http__MaxConcurrentGenerations"] = "0";
        start.Environment["TAU_HOME"] = Path.Combine(Path.GetTempPath(), $"tau-config-{Guid.NewGuid():N}");
        using var silo = Process.Start(start)!;
        var stderr = silo.StandardError.ReadToEndAsync();
        var stdout = silo.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await silo.WaitForExitAsync(timeout.Token);
        Assert.Equal(1, silo.ExitCode);
        Assert.Equal("", (await stdout).Trim());
        var line = Assert.Single((await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("TauCluster.Silo: invalid configuration: Tau:Http:ApiKey is not a setting (did you mean Tau:Http:ApiKeys?); "
            + "Tau:Http:MaxConcurrentGenerations = 0 must be at least 1", line);
    }
}
