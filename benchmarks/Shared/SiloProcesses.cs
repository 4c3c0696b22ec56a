using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace TauCluster.Benchmarks;

/// <summary>Real silo processes on loopback for the end-to-end benchmarks: one localhost cluster, each silo with its HTTP port.</summary>
internal static class SiloProcesses
{
    /// <summary>Starts a silo of the cluster whose primary listens on <paramref name="primaryPort"/>; returns its process and HTTP address.</summary>
    public static (Process Process, Uri Http, int GatewayPort) Start(string name, string clusterId, int primaryPort, bool primary, IEnumerable<string> settings)
    {
        int httpPort = FreePort(), gatewayPort = FreePort();
        var start = new ProcessStartInfo("dotnet", [FindSilo(),
            $"--urls=http://127.0.0.1:{httpPort}", $"--Tau:ClusterId={clusterId}", $"--Tau:ServiceId={clusterId}",
            $"--Tau:SiloPort={(primary ? primaryPort : FreePort())}", $"--Tau:GatewayPort={gatewayPort}", $"--Tau:PrimarySiloPort={primaryPort}",
            "--Logging:LogLevel:Default=Warning", .. settings]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var silo = Process.Start(start)!;
        silo.OutputDataReceived += (_, _) => { };
        silo.ErrorDataReceived += (_, e) => { if (e.Data is { Length: > 0 }) Console.Error.WriteLine($"[{name}] {e.Data}"); };
        silo.BeginOutputReadLine();
        silo.BeginErrorReadLine();
        return (silo, new Uri($"http://127.0.0.1:{httpPort}"), gatewayPort);
    }

    public static void Stop(IEnumerable<Process> silos)
    {
        foreach (var silo in silos)
        {
            try { silo.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            silo.Dispose();
        }
    }

    public static async Task WaitHealthy(HttpClient http, Uri silo, CancellationToken cancellation)
    {
        while (true)
        {
            try
            {
                using var response = await http.GetAsync(new Uri(silo, "/v1/models"), cancellation);
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            await Task.Delay(250, cancellation);
        }
    }

    /// <summary>The sum of every sample of a Prometheus series whose line starts with <paramref name="series"/>.</summary>
    public static long Gauge(string prometheus, string series) =>
        prometheus.Split('\n').Where(l => l.StartsWith(series, StringComparison.Ordinal))
            .Select(l => (long)double.Parse(l[(series.Length + 1)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).Sum();

    public static string FindSilo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
            var silo = Path.Combine(dir.FullName, "Silo", "bin", configuration, "net10.0", "TauCluster.Silo.dll");
            if (File.Exists(silo)) return silo;
        }
        throw new FileNotFoundException("Silo/bin/<configuration>/net10.0/TauCluster.Silo.dll not found: build the solution first");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
