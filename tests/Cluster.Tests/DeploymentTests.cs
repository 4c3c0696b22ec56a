using System.Diagnostics;
using System.Text.RegularExpressions;

namespace TauCluster.Cluster.Tests;

/// <summary>No docker engine runs here, so the deployment files are checked with real parsers instead.</summary>
public sealed partial class DeploymentTests
{
    private static string? DockerCompose() => new[] { "/usr/bin/docker-compose", "/usr/local/bin/docker-compose" }.FirstOrDefault(File.Exists);

    /// <summary>docker-compose config over the given files of docker/, with the Redis password set unless told otherwise.</summary>
    private static (int Exit, string Config, string Errors) Config(bool withPassword, params string[] files)
    {
        var compose = DockerCompose();
        TestPaths.Require(compose is not null, "docker-compose");
        var start = new ProcessStartInfo(compose!) { RedirectStandardOutput = true, RedirectStandardError = true };
        var docker = Path.Combine(TestPaths.RepositoryRoot(), "docker");
        foreach (var file in files) { start.ArgumentList.Add("-f"); start.ArgumentList.Add(Path.Combine(docker, file)); }
        start.ArgumentList.Add("config");
        if (withPassword) start.Environment["TAU_REDIS_PASSWORD"] = "a-test-password";
        else start.Environment.Remove("TAU_REDIS_PASSWORD");
        using var process = Process.Start(start)!;
        var errors = process.StandardError.ReadToEndAsync();
        string config = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, config, errors.Result);
    }

    private static string Parsed(params string[] files)
    {
        var (exit, config, errors) = Config(withPassword: true, files);
        Assert.True(exit == 0, errors);
        return config;
    }

    /// <summary>One service's block of the parsed file (its lines indented under it).</summary>
    private static string Service(string config, string name) =>
        Regex.Match(config, $@"^  {Regex.Escape(name)}:\n((?:    .*\n|      .*\n)*)", RegexOptions.Multiline) is { Success: true } m ? m.Groups[1].Value
            : throw new Xunit.Sdk.XunitException($"no service {name}");

    [SkippableFact]
    public void Compose_runs_redis_with_a_password_on_an_internal_network_and_publishes_only_http_on_loopback()
    {
        var config = Parsed("docker-compose.yml");
        var redis = Service(config, "redis");
        Assert.Contains("--requirepass", redis);
        Assert.DoesNotContain("ports:", redis);
        Assert.Matches(new Regex(@"networks:\s+cluster: (null|\{\})\s+volumes:"), redis);   // the internal network only
        Assert.Matches(new Regex(@"^  cluster:\n    internal: true$", RegexOptions.Multiline), config);
        for (int n = 1; n <= 3; n++)
        {
            var silo = Service(config, $"silo{n}");
            Assert.Contains($"- 127.0.0.1:808{n}:8080/tcp", silo);
            Assert.DoesNotContain("30000", silo.Replace("Tau__GatewayPort: '30000'", ""));   // no gateway published without TLS
            Assert.Contains($"Tau__AdvertisedAddress: silo{n}", silo);
            Assert.Contains("Tau__Redis: redis:6379,password=a-test-password", silo);
            Assert.Contains("/readyz", silo);
        }
        Assert.Equal(3, Regex.Matches(config, "Tau__Clustering: redis").Count);
        Assert.Equal(3, Regex.Matches(config, "Tau__Storage: redis").Count);
    }

    [SkippableFact]
    public void Compose_refuses_to_start_redis_without_a_password()
    {
        var (exit, _, errors) = Config(withPassword: false, "docker-compose.yml");
        Assert.NotEqual(0, exit);
        Assert.Contains("set TAU_REDIS_PASSWORD", errors, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void The_TLS_override_gives_each_silo_its_certificate_and_publishes_the_gateways()
    {
        var config = Parsed("docker-compose.yml", "docker-compose.tls.yml");
        for (int n = 1; n <= 3; n++)
        {
            var silo = Service(config, $"silo{n}");
            Assert.Contains($"Tau__Tls__CertificateFile: /certs/silo{n}.crt", silo);
            Assert.Contains($"Tau__Tls__KeyFile: /certs/silo{n}.key", silo);
            Assert.Contains("Tau__Tls__CaFile: /certs/ca.crt", silo);
            Assert.Matches(new Regex($@"published: 3000{n}\s+target: 30000"), silo);
            Assert.Matches(new Regex(@"docker/certs:/certs:ro"), silo);
        }
        Assert.DoesNotContain("ports:", Service(config, "redis"));
    }

    [SkippableFact]
    public void The_GPU_override_adds_a_silo_on_cuda_with_a_GPU_reserved()
    {
        var config = Parsed("docker-compose.yml", "docker-compose.gpu.yml");
        foreach (var service in new[] { "redis", "silo1", "silo2", "silo3", "silo-gpu" })
            Assert.Matches(new Regex($"^  {service}:$", RegexOptions.Multiline), config);
        var gpu = Service(config, "silo-gpu");
        Assert.Single(Regex.Matches(config, "Tau__Device: cuda"));
        Assert.Contains("driver: nvidia", gpu);
        Assert.Matches(new Regex(@"capabilities:\s+- gpu"), gpu);
        Assert.Contains("- 127.0.0.1:8084:8080/tcp", gpu);
        Assert.Contains("Tau__Redis: redis:6379,password=a-test-password", gpu);
    }

    [Fact]
    public void Dockerfile_copies_every_project_the_silo_builds_from()
    {
        var root = TestPaths.RepositoryRoot();
        string dockerfile = File.ReadAllText(Path.Combine(root, "docker", "Dockerfile"));
        var pending = new Stack<string>([Path.Combine(root, "Silo", "TauCluster.Silo.csproj")]);
        var seen = new HashSet<string>();
        while (pending.TryPop(out var project))
        {
            var folder = Path.GetFileName(Path.GetDirectoryName(project)!);
            if (!seen.Add(folder)) continue;
            Assert.Contains($"COPY {folder}/ {folder}/", dockerfile);
            foreach (Match m in OutsideContent().Matches(File.ReadAllText(project)))   // files a project ships from outside its folder
            {
                var content = Path.GetRelativePath(root, Path.GetFullPath(Path.Combine(Path.GetDirectoryName(project)!, m.Groups[1].Value.Replace('\\', '/')))).Replace('\\', '/');
                Assert.Contains($"COPY {content}/ {content}/", dockerfile);
            }
            foreach (Match m in ProjectReference().Matches(File.ReadAllText(project)))
                pending.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(project)!, m.Groups[1].Value.Replace('\\', '/'))));
        }
        Assert.Equal(new HashSet<string> { "Silo", "Grains", "Grains.Interfaces", "Engine", "Contracts" }, seen);
    }

    [GeneratedRegex("<ProjectReference Include=\"([^\"]+)\"")]
    private static partial Regex ProjectReference();

    [GeneratedRegex("<None Include=\"(\\.\\.[^\"*]+?)\\\\\\*\\*")]
    private static partial Regex OutsideContent();
}
