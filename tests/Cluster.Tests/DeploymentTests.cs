using System.Diagnostics;
using System.Text.RegularExpressions;

namespace TauCluster.Cluster.Tests;

/// <summary>No docker engine runs here, so the deployment files are checked with real parsers instead.</summary>
public sealed partial class DeploymentTests
{
    private static string? DockerCompose() => new[] { "/usr/bin/docker-compose", "/usr/local/bin/docker-compose" }.FirstOrDefault(File.Exists);

    [SkippableFact]
    public void Compose_file_parses_to_redis_and_three_silos_with_published_ports()
    {
        var compose = DockerCompose();
        TestPaths.Require(compose is not null, "docker-compose");
        var start = new ProcessStartInfo(compose!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-f", Path.Combine(TestPaths.RepositoryRoot(), "docker", "docker-compose.yml"), "config" }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string config = process.StandardOutput.ReadToEnd();
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, errors);

        foreach (var service in new[] { "redis", "silo1", "silo2", "silo3" })
            Assert.Matches(new Regex($"^  {service}:$", RegexOptions.Multiline), config);
        for (int n = 1; n <= 3; n++)
        {
            Assert.Contains($"published: 808{n}", config);
            Assert.Contains($"published: 3000{n}", config);
            Assert.Contains($"Tau__AdvertisedAddress: silo{n}", config);
        }
        Assert.Equal(3, Regex.Matches(config, "Tau__Clustering: redis").Count);
        Assert.Equal(3, Regex.Matches(config, "Tau__Storage: redis").Count);
    }

    [SkippableFact]
    public void The_GPU_override_adds_a_silo_on_cuda_with_a_GPU_reserved()
    {
        var compose = DockerCompose();
        TestPaths.Require(compose is not null, "docker-compose");
        var start = new ProcessStartInfo(compose!) { RedirectStandardOutput = true, RedirectStandardError = true };
        var docker = Path.Combine(TestPaths.RepositoryRoot(), "docker");
        foreach (var a in new[] { "-f", Path.Combine(docker, "docker-compose.yml"), "-f", Path.Combine(docker, "docker-compose.gpu.yml"), "config" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string config = process.StandardOutput.ReadToEnd();
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, errors);

        foreach (var service in new[] { "redis", "silo1", "silo2", "silo3", "silo-gpu" })
            Assert.Matches(new Regex($"^  {service}:$", RegexOptions.Multiline), config);
        Assert.Single(Regex.Matches(config, "Tau__Device: cuda"));
        Assert.Contains("driver: nvidia", config);
        Assert.Matches(new Regex(@"capabilities:\s+- gpu"), config);
        Assert.Contains("published: 30004", config);
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
