using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau bench kernels</c>: the GB/s of a one-row decode step's weight read (its products, as the forward pass runs them)
/// against a plain parallel sum over the same bytes in the same run, and what the kernel pool's fork-joins cost a step.
/// </summary>
internal static class BenchKernelsCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.PaperName);
    private static readonly Option<int> Repeats = Number("--repeats", "N", "timed runs of each figure (the median is kept)", 30);
    private static readonly Option<bool> Json = JsonOption();

    public static Command Command()
    {
        var command = new Command("kernels", "the GB/s of a decode step's weight read against a plain parallel sum of the same bytes, and the kernel pool's fork-join cost")
        {
            Model, Repeats, Json,
        };
        command.SetAction((r, cancellation) => Task.FromResult(Run(r, cancellation)));
        return command;
    }

    private static int Run(ParseResult r, CancellationToken cancellation)
    {
        int repeats = AtLeastOne(r.GetValue(Repeats), "--repeats");
        var model = LocalModel(EmbeddedOptions(), r.GetValue(Model)!, out string name);
        Progress($"kernels of {name}: {repeats} runs of the weight read, the plain sum, the batch products, the fork-joins and a decode step …");
        var f = KernelBench.Measure(model, KernelPool.Shared, repeats, cancellation);
        double ratio = f.MatMulGBps / f.SumGBps;
        if (r.GetValue(Json))
        {
            Console.WriteLine(new JsonObject
            {
                ["path"] = f.Path.ToString(), ["weight_type"] = f.WeightType.ToString(), ["threads"] = f.Threads, ["weight_bytes"] = f.WeightBytes,
                ["matmul_ms"] = Math.Round(f.MatMulMs, 4), ["matmul_gb_per_s"] = Math.Round(f.MatMulGBps, 2),
                ["sum_ms"] = Math.Round(f.SumMs, 4), ["sum_gb_per_s"] = Math.Round(f.SumGBps, 2), ["ratio"] = Math.Round(ratio, 3),
                ["fork_join_us"] = Math.Round(f.ForkJoinMicroseconds, 3), ["parked_fork_join_us"] = Math.Round(f.ParkedForkJoinMicroseconds, 3),
                ["fork_joins_per_step"] = f.JobsPerStep, ["fork_join_ms_per_step"] = Math.Round(f.ForkJoinMsPerStep, 4),
                ["step_ms"] = Math.Round(f.StepMs, 4), ["batch_rows"] = f.BatchRows, ["batch_matmul_ms"] = Math.Round(f.BatchMatMulMs, 3),
                ["batch_gflops"] = Math.Round(f.BatchGflops, 1),
            }.ToJsonString());
            return 0;
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
            kernels {f.Path} on {f.Threads} threads, {f.WeightBytes / 1e6:F1} MB of {f.WeightType} weights per decode step
            weight read of a decode step: {f.MatMulMs,8:F3} ms = {f.MatMulGBps,6:F1} GB/s
            plain parallel sum, same bytes: {f.SumMs,6:F3} ms = {f.SumGBps,6:F1} GB/s   (ratio {ratio:F2})
            the same products for {f.BatchRows} rows: {f.BatchMatMulMs,8:F3} ms = {f.BatchGflops,6:F1} GFLOP/s
            fork-join of an empty job: {f.ForkJoinMicroseconds:F2} µs with the workers awake, {f.ParkedForkJoinMicroseconds:F2} µs parked
            a decode step at 1K context: {f.StepMs:F3} ms, of which {f.JobsPerStep:F0} fork-joins cost the caller {f.ForkJoinMsPerStep:F3} ms (publish, wake, join)
            """));
        return 0;
    }
}
