using System.Net;
using System.Net.Sockets;
using Xunit;

namespace TauCluster.Tests;

/// <summary>Where the tests find the repository, the shared real manifold and free ports; compiled into each test project.</summary>
internal static class TestPaths
{
    public const string RealManifoldName = "cve-minilm-384";

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "TauCluster.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("repository root not found above " + AppContext.BaseDirectory);
    }

    /// <summary>../shared/manifolds/cve-minilm-384 beside the repository, or null where it is absent.</summary>
    public static string? RealManifoldDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "manifolds", RealManifoldName);
            if (File.Exists(Path.Combine(candidate, "manifold.parquet"))) return candidate;
        }
        return null;
    }

    /// <summary>
    /// For a test that needs something this machine may lack (the real manifold, redis-server, docker-compose): where it
    /// is absent the test is skipped, and counted as skipped (it must be a [SkippableFact] or [SkippableTheory]); where
    /// CI=true it fails instead, since CI must have it.
    /// </summary>
    public static void Require(bool present, string what)
    {
        if (present) return;
        if (InCi) throw new InvalidOperationException($"{what} is missing, and CI=true requires it");
        throw new SkipException($"{what} is missing on this machine");
    }

    /// <summary>../shared/manifolds/cve-minilm-384, or a skip (a failure under CI) where it is absent.</summary>
    public static string RequireRealManifoldDirectory()
    {
        var dir = RealManifoldDirectory();
        Require(dir is not null, $"../shared/manifolds/{RealManifoldName}");
        return dir!;
    }

    /// <summary>The build configuration these tests run from (…/bin/&lt;Configuration&gt;/net10.0/).</summary>
    public static string Configuration => new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    /// <summary>
    /// A program the solution builds beside the tests, as its own build made it (same configuration): the silo or the tau
    /// client. Beside a test's own assemblies its dependencies would resolve to the test's.
    /// </summary>
    public static string BuiltAssembly(string project, string assembly)
    {
        var path = Path.Combine(RepositoryRoot(), project, "bin", Configuration, "net10.0", assembly);
        return File.Exists(path) ? path : throw new FileNotFoundException($"build the {project} project first: {path}");
    }

    /// <summary>The redis-server binary apt-get installs, or null where there is none.</summary>
    public static string? RedisServer() => new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
