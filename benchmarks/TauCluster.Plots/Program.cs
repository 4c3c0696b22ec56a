using System.Text.Json.Nodes;

// Draws BENCHMARKS.md's plot from `tau bench decode --json` output: decode ms/token against context, one line per attention.
//   dotnet run --project benchmarks/TauCluster.Plots -- bench-decode.json docs/decode-vs-context.png
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: TauCluster.Plots BENCH_DECODE.json OUT.png");
    return 2;
}
var results = JsonNode.Parse(File.ReadAllText(args[0]))!["results"]!.AsArray();
var plot = new ScottPlot.Plot();
foreach (var group in results.GroupBy(r => r!["attention"]!.GetValue<string>()))
{
    var points = group.OrderBy(r => r!["context"]!.GetValue<int>()).ToArray();
    var line = plot.Add.Scatter(
        points.Select(r => Math.Log2(r!["context"]!.GetValue<int>())).ToArray(),
        points.Select(r => r!["ms_per_token"]!.GetValue<double>()).ToArray());
    line.LegendText = group.Key;
    line.LineWidth = 2;
    line.MarkerSize = 8;
}
plot.Axes.Bottom.Label.Text = "context (tokens, log₂ scale)";
plot.Axes.Left.Label.Text = "decode ms / token";
plot.Title("Decode step vs context: 6 layers, n_embd 384, 1 head (2-core AMD EPYC)");
plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
    results.Select(r => r!["context"]!.GetValue<int>()).Distinct().Order().Select(c => (Math.Log2(c), c >= 1024 ? $"{c / 1024}K" : $"{c}")).Select(t => new ScottPlot.Tick(t.Item1, t.Item2)).ToArray());
plot.Axes.SetLimitsY(0, results.Max(r => r!["ms_per_token"]!.GetValue<double>()) * 1.1);
plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
plot.SavePng(args[1], 900, 520);
Console.WriteLine($"wrote {args[1]}");
return 0;
