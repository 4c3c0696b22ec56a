using System.Diagnostics;
using System.Text.Json;

namespace TauCluster.Client.Tests;

/// <summary>
/// tau as its users install it: the Client packed as a .NET tool, installed into a tool path of its own, and run from
/// there with nothing else beside it, the default model included.
/// </summary>
public sealed class ToolInstallTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "tau-tool-tests", Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    private static (int Exit, string Stdout, string Stderr) Run(string file, IEnumerable<string> args, string? home = null, string? directory = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        if (home is not null) start.Environment["TAU_HOME"] = home;
        if (directory is not null) start.WorkingDirectory = directory;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(5)), $"{file} {string.Join(' ', args)} did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void The_packed_tool_installs_into_a_tool_path_and_generates_what_tau_generates()
    {
        string packages = Path.Combine(root, "packages"), tools = Path.Combine(root, "tools");
        // The build this test runs after made the Client already: pack that build, as `dotnet pack Client` would.
        var pack = Run("dotnet", ["pack", Path.Combine(TestPaths.RepositoryRoot(), "Client"), "-c", TestPaths.Configuration, "--no-build", "--no-restore",
            "-o", packages, "-p:NuGetAudit=false"]);
        Assert.True(pack.Exit == 0, pack.Stdout + pack.Stderr);
        var package = Assert.Single(Directory.GetFiles(packages, "TauCluster.Tool.*.nupkg"));

        var install = Run("dotnet", ["tool", "install", "TauCluster.Tool", "--tool-path", tools, "--add-source", packages], directory: root);
        Assert.True(install.Exit == 0, install.Stdout + install.Stderr);
        string tau = Path.Combine(tools, "tau");
        Assert.True(File.Exists(tau), $"no tau in {tools} after installing {Path.GetFileName(package)}");

        string[] generate = ["generate", "--prompt", "And God said", "--max-tokens", "12", "--seed", "4", "--json"];
        var installed = Run(tau, generate, home: Path.Combine(root, "home-installed"));
        Assert.True(installed.Exit == 0, installed.Stderr);
        var built = Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "tau.dll"), .. generate], home: Path.Combine(root, "home-built"));
        Assert.True(built.Exit == 0, built.Stderr);
        static int[] Ids(string json) => JsonDocument.Parse(json).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(12, Ids(installed.Stdout).Length);
        Assert.Equal(Ids(built.Stdout), Ids(installed.Stdout));   // the default model travelled inside the package
    }
}
