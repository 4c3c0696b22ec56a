using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// The processes a multi-process test starts (redis-server, silos, the tau client): their output goes to the test log,
/// and whatever still runs when the test ends is killed.
/// </summary>
internal sealed class TestProcesses(ITestOutputHelper output) : IDisposable
{
    private readonly List<(Process Process, Task Drained)> started = [];

    /// <summary>
    /// Starts a process whose output goes to the test log. Its standard output also goes to <paramref name="capture"/>
    /// as it arrives, not only in whole lines (a streamed generation is one line until it ends); lock the builder to
    /// read it. With <paramref name="readyLine"/>, the task completes when the process writes a line that contains it,
    /// and fails if the process ends first.
    /// </summary>
    public (Process Process, Task Ready) Start(string file, IEnumerable<string> args, IDictionary<string, string> environment, string name,
        StringBuilder? capture = null, string? readyLine = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (k, v) in environment) start.Environment[k] = v;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (readyLine is null) ready.SetResult();
        var process = new Process { StartInfo = start };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Log($"[{name}] {e.Data}"); };
        process.Start();
        process.BeginErrorReadLine();
        var drained = Pump(process.StandardOutput, name, capture, readyLine, ready);
        lock (started) started.Add((process, drained));
        return (process, ready.Task);
    }

    /// <summary>Reads standard output until the process closes it: into the capture at once, into the log by lines.</summary>
    private async Task Pump(StreamReader stdout, string name, StringBuilder? capture, string? readyLine, TaskCompletionSource ready)
    {
        var buffer = new char[4096];
        var line = new StringBuilder();
        try
        {
            for (int n; (n = await stdout.ReadAsync(buffer)) > 0;)
            {
                if (capture is not null) lock (capture) capture.Append(buffer, 0, n);
                foreach (char c in buffer.AsSpan(0, n))
                {
                    if (c != '\n')
                    {
                        line.Append(c);
                        continue;
                    }
                    Line(line.ToString().TrimEnd('\r'));
                    line.Clear();
                }
            }
            if (line.Length > 0) Line(line.ToString());
        }
        catch (Exception e) when (e is ObjectDisposedException or IOException)
        {
            // The process was disposed while it still wrote: the test has ended.
        }
        ready.TrySetException(new InvalidOperationException($"{name} exited before it wrote '{readyLine}'"));

        void Line(string text)
        {
            if (readyLine is not null && text.Contains(readyLine, StringComparison.Ordinal)) ready.TrySetResult();
            Log($"[{name}] {text}");
        }
    }

    /// <summary>Waits, at most <paramref name="timeout"/>, until the process has exited and its output has been read; its exit code.</summary>
    public async Task<int> Exit(Process process, TimeSpan timeout)
    {
        Task drained;
        lock (started) drained = started.Single(s => s.Process == process).Drained;
        using var limit = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(limit.Token);
        await drained.WaitAsync(limit.Token);
        return process.ExitCode;
    }

    /// <summary>A line of the test log, with the time of day: what one process did can be put beside what another did.</summary>
    public void Log(string line)
    {
        try { output.WriteLine($"{DateTime.Now:HH:mm:ss.fff} {line}"); } catch (InvalidOperationException) { }   // output after the test ended
    }

    public void Dispose()
    {
        List<(Process Process, Task Drained)> all;
        lock (started) all = [.. started];
        foreach (var (p, _) in all)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(TimeSpan.FromSeconds(10));   // gone before its network namespace is deleted
            }
            catch (InvalidOperationException) { }
            p.Dispose();
        }
    }
}
